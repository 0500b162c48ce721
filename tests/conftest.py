"""Shared fixtures for the harness's own tests."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
import torch._dynamo  # noqa: F401  (imported once here: pytester's in-process runs would otherwise register it twice)

from harness.core.digest import REPO
from harness.core.registry import create_method
from harness.running.runner import run_case
from harness.suites import losses

DEFAULT_SHARED = REPO.parent / "shared" / "data"


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


@pytest.fixture()
def run_suite(tmp_path: Path) -> Callable[..., subprocess.CompletedProcess]:
    """Runs suites in a child pytest as a user does (``run_suite(["suites/test_x.py", "--method=m"], env)``), with
    records under ``tmp_path/results``; read them with :func:`tests.factories.suite_records`."""

    def run(args: list[str], env_extra: dict[str, str] | None = None,
            timeout: int = 1500) -> subprocess.CompletedProcess:
        env = dict(os.environ, **(env_extra or {}))
        cmd = [sys.executable, "-m", "pytest", *args, f"--results-dir={tmp_path / 'results'}", "-q", "-p",
               "no:cacheprovider", "--benchmark-disable", "-rs"]
        return subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)

    return run


@pytest.fixture(scope="module")
def made(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real smoke record (bce on breast_cancer-noise0, seeds 0 and 1) for the tests of verify, currency,
    re-stamping and forgeries; copy it before changing it. Made once per module, next to the re-executions that
    compare with it: a test elsewhere in the session may leave process-wide torch settings changed."""
    results = tmp_path_factory.mktemp("made") / "results"
    spec = next(s for s in losses.case_specs("smoke") if s.case == "breast_cancer-noise0")
    run_case(spec, create_method("bce"), [0, 1], torch.device("cpu"), results)
    return results


pytest_plugins = ["pytester"]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Suite runs in a child pytest (``pytester``, ``run_suite``) are the slow lane: ``make test-fast`` leaves them
    out, ``make test`` and CI run everything. Tests that start a process another way carry ``@pytest.mark.slow``
    themselves."""
    for item in items:
        if {"pytester", "run_suite"} & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)
