"""The real downsized datasets under $HARNESS_DATA (skipped when absent, failing in CI).

Standard transform checked here: pixels scaled to [0, 1] at load time, then per-channel
mean/std normalisation (``normalize(x, *channel_stats(x))``).
"""

from __future__ import annotations

import contextlib
from pathlib import Path

import PIL.Image
import pytest
import torch

import harness.data as data
from harness.data.cli import main as data_cli
from harness.errors import DataMissing

pytestmark = pytest.mark.realdata

PACS_DOMAINS = ["art_painting", "cartoon", "photo", "sketch"]
PACS_CLASSES = ["dog", "elephant", "giraffe", "guitar", "horse", "house", "person"]
RSSCN7_CLASSES = ["aGrass", "bField", "cIndustry", "dRiverLake", "eForest", "fResident", "gParking"]


@pytest.fixture()
def real(real_data_root: Path, cache_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("HARNESS_DATA", str(real_data_root))
    return real_data_root


def assert_plausible_stats(ds: data.ArrayDataset) -> None:
    x = data.dataset.to_float(ds.x)
    assert torch.isfinite(x).all() and x.min() >= 0 and x.max() <= 1
    mean, std = data.channel_stats(ds)
    assert ((mean > 0) & (mean < 1)).all(), mean
    assert (std > 0.05).all(), std
    zm, zs = data.channel_stats(data.normalize(ds.x, mean, std))
    assert zm.abs().max() < 1e-3 and (zs - 1).abs().max() < 1e-3


@contextlib.contextmanager
def no_image_decoding():
    """Any attempt to open an image file inside the block fails the test."""
    def refuse(*args, **kwargs):
        raise AssertionError(f"an image was decoded: {args[:1]}")

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(PIL.Image, "open", refuse)
        yield


def test_pacs(real: Path, cache_dir: Path) -> None:
    ds = data.load("pacs", size=32)
    assert len(ds) == 9991 and tuple(ds.x.shape[1:]) == (3, 32, 32)
    assert ds.domain_names == PACS_DOMAINS and ds.classes == PACS_CLASSES
    assert ds.domain.bincount().tolist() == [2048, 2344, 1670, 3929]
    for d in range(4):  # every domain has every class
        assert set(ds.y[ds.domain == d].tolist()) == set(range(7))
    assert ds.meta["tier"] == "real" and ds.meta["synthetic"] is False and ds.meta["source"] == str(real / "PACS")
    assert_plausible_stats(ds)
    with no_image_decoding():  # a warm load is served from the cache (its speed: benchmarks/bench_data.py)
        warm = data.load("pacs", size=32)
    assert warm.fingerprint == ds.fingerprint and torch.equal(warm.x, ds.x)
    assert len(list((cache_dir / "datasets").glob("pacs-*.safetensors"))) == 1


def test_rsscn7(real: Path) -> None:
    ds = data.load("rsscn7", size=32)
    assert len(ds) == 2800 and ds.classes == RSSCN7_CLASSES and tuple(ds.x.shape[1:]) == (3, 32, 32)
    assert ds.domain_names == ["scale1", "scale2", "scale3", "scale4"]
    counts = torch.zeros(7, 4, dtype=torch.long)
    counts.index_put_((ds.y, ds.domain), torch.ones(len(ds), dtype=torch.long), accumulate=True)
    assert (counts == 100).all()  # 4 scales of 100 per class
    assert_plausible_stats(ds)


def test_usps(real: Path) -> None:
    ds = data.load("usps")
    assert len(ds) == 9298 and tuple(ds.x.shape[1:]) == (1, 16, 16)
    assert {k: len(v) for k, v in ds.splits().items()} == {"train": 7291, "test": 2007}
    assert len(data.load("usps", split="train")) == 7291 and len(data.load("usps", split="test")) == 2007
    assert set(ds.y.tolist()) == set(range(10))
    assert_plausible_stats(ds)


def test_mnist(real: Path) -> None:
    ds = data.load("mnist")
    assert len(ds) == 10000 and tuple(ds.x.shape[1:]) == (1, 28, 28)
    assert ds.y.bincount().tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
    assert_plausible_stats(ds)
    with pytest.raises(DataMissing):  # the shared copy holds only the test set
        data.load("mnist", split="train")


def test_digits_multi(real: Path) -> None:
    ds = data.load("digits_multi")
    assert ds.domain_names == ["mnist", "usps", "digits"] and tuple(ds.x.shape[1:]) == (1, 16, 16)
    assert ds.domain.bincount().tolist() == [10000, 9298, 1797] and ds.meta["tier"] == "real"
    assert_plausible_stats(ds)


def test_dataset_info_and_cli_list(real: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with no_image_decoding():  # counts files, decodes nothing
        rows = {r.name: r for r in data.dataset_info()}
    assert {n: rows[n].count for n in ("pacs", "rsscn7", "usps", "mnist")} == {
        "pacs": 9991,
        "rsscn7": 2800,
        "usps": 9298,
        "mnist": 10000,
    }
    assert all(rows[n].found and rows[n].tier == "real" for n in ("pacs", "rsscn7", "usps", "mnist"))
    assert rows["digits_multi"].count == 10000 + 9298 + 1797
    assert data_cli(["list"]) == 0
    out = capsys.readouterr().out
    assert str(real / "PACS") in out and "9991" in out
