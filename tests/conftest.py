"""Shared fixtures for the harness's own tests."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch._dynamo  # noqa: F401  (imported once here: pytester's in-process runs would otherwise register it twice)

DEFAULT_SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


def _strict() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes") or os.environ.get("HARNESS_STRICT_DATA") == "1"


@pytest.fixture(scope="session")
def real_data_root() -> Path:
    """The real downsized datasets (``$HARNESS_DATA``, else ../shared/data beside the repo).

    Skips with the reason when absent; in CI (``CI=true``) absence is a failure.
    """
    root = Path(os.environ.get("HARNESS_DATA") or DEFAULT_SHARED)
    if not root.is_dir():
        msg = f"real datasets not found at {root}: set HARNESS_DATA to the folder holding PACS/, RSSCN7/, USPS/, MNIST/"
        if _strict():
            pytest.fail(msg + " (CI runs strict)")
        pytest.skip(msg)
    return root


@pytest.fixture()
def cache_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty, private $HARNESS_CACHE for one test."""
    path = tmp_path / "cache"
    monkeypatch.setenv("HARNESS_CACHE", str(path))
    return path


pytest_plugins = ["pytester"]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Suite runs in a child pytest (``pytester``) are the slow lane: ``make test-fast`` leaves them out, ``make test``
    and CI run everything. Tests that start a process another way carry ``@pytest.mark.slow`` themselves."""
    for item in items:
        if "pytester" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.slow)
