"""Cold (decode every JPEG) versus warm (read the tensor cache) loads of PACS.

Run: ``pytest benchmarks/bench_data.py``. Needs PACS under ``$HARNESS_DATA`` (else ../shared/data
beside the repo); skips otherwise. Each test gets a private, empty ``$HARNESS_CACHE``.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest

from harness.data import data_root, load

pytestmark = pytest.mark.realdata
ROOT = data_root() or Path(__file__).resolve().parents[2] / "shared" / "data"


@pytest.fixture()
def pacs_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    if not (ROOT / "PACS").is_dir():
        pytest.skip(f"PACS not found under {ROOT}: set HARNESS_DATA to the folder holding PACS/")
    monkeypatch.setenv("HARNESS_DATA", str(ROOT))
    monkeypatch.setenv("HARNESS_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


@pytest.mark.parametrize("size", [32, 96])
def test_pacs_cold(benchmark: Any, pacs_cache: Path, size: int) -> None:
    benchmark.group = f"pacs size={size}"

    def empty_cache() -> tuple[tuple[str], dict[str, int]]:
        shutil.rmtree(pacs_cache, ignore_errors=True)
        return ("pacs",), {"size": size}

    ds = benchmark.pedantic(load, setup=empty_cache, rounds=2, iterations=1)
    assert len(ds) == 9991


@pytest.mark.parametrize("size", [32, 96])
def test_pacs_warm(benchmark: Any, pacs_cache: Path, size: int) -> None:
    benchmark.group = f"pacs size={size}"
    load("pacs", size=size)  # fill the cache
    ds = benchmark.pedantic(load, args=("pacs",), kwargs={"size": size}, rounds=5, iterations=1)
    assert len(ds) == 9991
