"""The decoded-tensor cache: hits, invalidation, corruption, read-only places, atomic writes."""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import harness.data as data
import harness.data.layouts as layouts
from harness.errors import DataError


def make_folder(root: Path, n: int = 6) -> Path:
    rng = np.random.default_rng(1)
    for i in range(n):
        path = root / f"c{i % 2}" / f"{i}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (9, 9, 3), dtype=np.uint8)).save(path)
    return root


@pytest.fixture()
def decodes(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Counts calls of the image decoder, to tell cache hits from rebuilds."""
    calls: list[int] = []
    real = layouts.decode_images

    def counting(files: list[Path], *args: object, **kwargs: object) -> torch.Tensor:
        calls.append(len(files))
        return real(files, *args, **kwargs)

    monkeypatch.setattr(layouts, "decode_images", counting)
    return calls


def entries(cache_dir: Path) -> list[Path]:
    return sorted((cache_dir / "datasets").glob("*"))


def test_second_load_is_a_cache_hit(tmp_path: Path, cache_dir: Path, decodes: list[int]) -> None:
    root = make_folder(tmp_path / "imgs")
    cold = data.load_imagefolder(root)
    warm = data.load_imagefolder(root)
    assert decodes == [6]
    assert torch.equal(cold.x, warm.x) and torch.equal(cold.y, warm.y) and cold.classes == warm.classes
    assert warm.meta == cold.meta and warm.x.dtype == torch.uint8  # uint8 in the cache and in memory
    assert warm._fingerprint == cold.fingerprint == data.tensor_digest(warm.x, warm.y, None, None)
    (entry,) = entries(cache_dir)
    assert entry.suffix == ".safetensors" and entry.read_bytes()[8:9] == b"{"  # safetensors header, no pickle
    data.load_imagefolder(root, size=4)  # other parameters: another entry
    assert decodes == [6, 6] and len(entries(cache_dir)) == 2
    data.load_imagefolder(root, cache=False)
    assert decodes == [6, 6, 6] and len(entries(cache_dir)) == 2


def test_changed_listing_rebuilds_and_drops_stale_entry(tmp_path: Path, cache_dir: Path, decodes: list[int]) -> None:
    root = make_folder(tmp_path / "imgs")
    data.load_imagefolder(root)
    old = entries(cache_dir)
    make_folder(root, n=8)  # two more files, and rewritten ones
    ds = data.load_imagefolder(root)
    assert len(ds) == 8 and decodes == [6, 8]
    assert len(entries(cache_dir)) == 1 and entries(cache_dir) != old
    later = time.time() + 5
    os.utime(root / "c0" / "0.png", (later, later))  # same size, new mtime: rebuilt
    data.load_imagefolder(root)
    assert decodes == [6, 8, 8]


@pytest.mark.parametrize("damage", ["truncate", "flip", "garbage", "empty"])
def test_corrupt_cache_is_rebuilt(tmp_path: Path, cache_dir: Path, decodes: list[int], damage: str) -> None:
    root = make_folder(tmp_path / "imgs")
    good = data.load_imagefolder(root)
    (entry,) = entries(cache_dir)
    raw = bytearray(entry.read_bytes())
    if damage == "truncate":
        raw = raw[: len(raw) - 50]
    elif damage == "flip":
        raw[-20] ^= 0xFF  # one byte of pixel data: only the checksum notices
    elif damage == "garbage":
        raw = bytearray(b"\x10\x00\x00\x00\x00\x00\x00\x00not json at all!")
    else:
        raw = bytearray()
    entry.write_bytes(bytes(raw))
    with pytest.warns(UserWarning, match="is corrupt"):
        again = data.load_imagefolder(root)
    assert decodes == [6, 6] and torch.equal(again.x, good.x)
    assert data.load_imagefolder(root).fingerprint == good.fingerprint and decodes == [6, 6]  # rewritten


def test_unwritable_cache_warns_and_still_loads(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("a file where the cache folder should be")
    monkeypatch.setenv("HARNESS_CACHE", str(blocker / "cache"))  # mkdir fails even as root
    root = make_folder(tmp_path / "imgs")
    with pytest.warns(UserWarning, match="could not write dataset cache"):
        ds = data.load_imagefolder(root)
    assert len(ds) == 6


def test_data_folder_is_never_written(tmp_path: Path, cache_dir: Path) -> None:
    root = make_folder(tmp_path / "imgs")
    before = sorted((p, p.stat().st_mtime_ns) for p in tmp_path.joinpath("imgs").rglob("*"))
    data.load_imagefolder(root)
    data.load_imagefolder(root)
    after = sorted((p, p.stat().st_mtime_ns) for p in tmp_path.joinpath("imgs").rglob("*"))
    assert before == after and not list(cache_dir.rglob("*.tmp"))  # and the atomic write left no temp file


def test_cache_root_rules(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HARNESS_CACHE", raising=False)
    monkeypatch.delenv("HARNESS_DATA", raising=False)
    assert data.cache_root() == Path.home() / ".cache" / "harness" and data.data_root() is None
    monkeypatch.setenv("HARNESS_DATA", str(tmp_path / "data"))
    assert data.data_root() == tmp_path / "data"
    monkeypatch.setenv("HARNESS_CACHE", str(tmp_path / "data" / "cache"))
    with pytest.raises(DataError, match="inside HARNESS_DATA"):
        data.cache_root()


def test_cached_keeps_tensor_meta_and_names(tmp_path: Path, cache_dir: Path) -> None:
    def build() -> data.ArrayDataset:
        x = torch.arange(2 * 3 * 2 * 2, dtype=torch.uint8).reshape(2, 3, 2, 2)
        meta = {"split": torch.tensor([0, 1]), "split_names": ("a", "b"), "source": "here"}
        return data.ArrayDataset(
            x,
            torch.tensor([1, 0]),
            ["p", "q"],
            "toy",
            torch.tensor([0, 0]),
            ["d"],
            torch.tensor([2, 1]),
            ["g0", "g1", "g2"],
            meta,
        )

    (tmp_path / "src").write_text("x")
    cold = data.cached("toy", {"k": 1}, [tmp_path / "src"], build)
    warm = data.cached("toy", {"k": 1}, [tmp_path / "src"], lambda: pytest.fail("should hit the cache"))
    for ds in (cold, warm):
        assert ds.x.dtype == torch.uint8 and ds.x.max() == 23
        assert ds.meta["split_names"] == ["a", "b"] and torch.equal(ds.meta["split"], torch.tensor([0, 1]))
        assert ds.group_names == ["g0", "g1", "g2"] and ds.domain_names == ["d"]
    assert set(warm.splits()) == {"a", "b"} and warm.fingerprint == cold.fingerprint
