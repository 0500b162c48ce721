"""Users' layouts on fixtures the tests build themselves, and errors that name the bad file."""

from __future__ import annotations

import bz2
import gzip
import os
import pickle
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import harness.data as data
from harness.errors import DataError, DataMissing

RNG = np.random.default_rng(0)


def write_image(path: Path, size: tuple[int, int] = (12, 10), colour: int = 0) -> None:
    """A small random RGB image; JPEG or PNG from the suffix."""
    path.parent.mkdir(parents=True, exist_ok=True)
    arr = RNG.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    arr[..., colour % 3] = 255  # a class-specific channel, so classes differ
    Image.fromarray(arr).save(path)


@pytest.fixture(autouse=True)
def _private(cache_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HARNESS_DATA", raising=False)


# ImageFolder -----------------------------------------------------------------------------------


def test_imagefolder_class_level(tmp_path: Path) -> None:
    for c, n in (("cat", 3), ("dog", 2)):
        for i in range(n):
            write_image(tmp_path / "pets" / c / f"{i}.{'png' if i % 2 else 'jpg'}", colour=len(c) + i)
    (tmp_path / "pets" / "cat" / "notes.txt").write_text("not an image")
    ds = data.load_imagefolder(tmp_path / "pets")
    assert ds.classes == ["cat", "dog"] and ds.y.tolist() == [0, 0, 0, 1, 1]
    assert tuple(ds.x.shape) == (5, 3, 10, 12) and ds.x.dtype == torch.uint8  # images stay uint8
    assert ds.domain is None and ds.meta["files"][0] == "cat/0.jpg" and ds.meta["tier"] == "user"
    png = np.asarray(Image.open(tmp_path / "pets" / "cat" / "1.png"))
    assert np.array_equal(ds.x[1].permute(1, 2, 0).numpy(), png)  # lossless PNG decodes exactly
    grey = data.load_imagefolder(tmp_path / "pets", size=4, mode="L")
    assert tuple(grey.x.shape) == (5, 1, 4, 4)


def test_imagefolder_domain_level(tmp_path: Path) -> None:
    for d in ("photo", "sketch"):
        for c in ("a", "b", "c"):
            if d == "sketch" and c == "c":
                continue  # a class missing from one domain still gets its global index
            write_image(tmp_path / d / c / "x.jpg", size=(20, 20))
    ds = data.load_imagefolder(tmp_path, domain_level=True, size=8, name="toy")
    assert ds.name == "toy" and ds.classes == ["a", "b", "c"] and ds.domain_names == ["photo", "sketch"]
    assert ds.domain.tolist() == [0, 0, 0, 1, 1] and ds.y.tolist() == [0, 1, 2, 0, 1]
    assert tuple(ds.x.shape) == (5, 3, 8, 8)


def test_imagefolder_mixed_sizes_need_size(tmp_path: Path) -> None:
    write_image(tmp_path / "a" / "0.png", size=(8, 8))
    write_image(tmp_path / "a" / "1.png", size=(9, 8))
    with pytest.raises(DataError, match=r"1\.png.*pass size=N"):
        data.load_imagefolder(tmp_path)
    assert data.load_imagefolder(tmp_path, size=(6, 5)).x.shape[-2:] == (6, 5)


def test_imagefolder_missing_and_empty(tmp_path: Path) -> None:
    with pytest.raises(DataMissing) as info:
        data.load_imagefolder(tmp_path / "nowhere")
    assert "root/<class>/" in info.value.hint
    (tmp_path / "empty" / "a").mkdir(parents=True)
    with pytest.raises(DataError, match="no image files"):
        data.load_imagefolder(tmp_path / "empty")


@pytest.mark.parametrize("damage", ["garbage", "truncated"])
def test_corrupt_image_names_the_file(tmp_path: Path, damage: str) -> None:
    for i in range(4):
        write_image(tmp_path / "a" / f"{i}.jpg", size=(32, 32))
    bad = tmp_path / "a" / "2.jpg"
    raw = bad.read_bytes()
    bad.write_bytes(b"this is not a jpeg" if damage == "garbage" else raw[: len(raw) // 2])
    with pytest.raises(DataError, match=r"cannot decode image .*a/2\.jpg"):
        data.load_imagefolder(tmp_path, cache=False)


# WILDS -------------------------------------------------------------------------------------------


def make_wilds(root: Path, n: int = 12) -> list[tuple[str, int, int, int]]:
    rows = []
    for i in range(n):
        y, place, split = i % 2, (i // 2) % 2, i % 3
        rel = f"{i:03d}.Bird/img_{i}.jpg"
        write_image(root / rel, size=(14 + i % 3, 10), colour=y)  # sizes differ, as in Waterbirds
        rows.append((rel, y, split, place))
    lines = ["img_id,img_filename,y,split,place,place_filename"]
    lines += [f"{i},{rel},{y},{s},{p},/x/{i}.jpg" for i, (rel, y, s, p) in enumerate(rows)]
    (root / "metadata.csv").write_text("\n".join(lines) + "\n")
    return rows


def test_wilds_waterbirds_layout(tmp_path: Path) -> None:
    rows = make_wilds(tmp_path / "waterbirds" / "waterbird_complete95_forest2water2")
    ds = data.load_wilds(tmp_path / "waterbirds", size=8, classes=["landbird", "waterbird"])  # parent folder works
    y = torch.tensor([r[1] for r in rows])
    place = torch.tensor([r[3] for r in rows])
    assert torch.equal(ds.y, y) and torch.equal(ds.group, y * 2 + place) and torch.equal(ds.domain, place)
    assert ds.group_names == ["y0_place0", "y0_place1", "y1_place0", "y1_place1"]
    assert ds.domain_names == ["place0", "place1"] and ds.classes == ["landbird", "waterbird"]
    splits = ds.splits()
    assert list(splits) == ["train", "val", "test"] and [len(s) for s in splits.values()] == [4, 4, 4]
    assert torch.equal(splits["val"].y, y[1::3])
    with pytest.raises(DataError, match="pass size=N"):
        data.load_wilds(tmp_path / "waterbirds")


def test_wilds_string_attributes_and_errors(tmp_path: Path) -> None:
    root = tmp_path / "w"
    make_wilds(root, n=4)
    csv = root / "metadata.csv"
    text = csv.read_text()
    csv.write_text(text.replace(",place,", ",background,"))
    with pytest.raises(DataError, match=r"metadata\.csv lacks column\(s\) \['place'\]"):
        data.load_wilds(root, size=8)
    ds = data.load_wilds(root, size=8, group_cols=("background", "split"))
    assert len(ds.domain_names) == 2 * 3 and ds.group.max() < 2 * 6
    csv.write_text(text.replace("img_2.jpg", "missing.jpg"))
    with pytest.raises(DataError, match=r"missing\.jpg"):
        data.load_wilds(root, size=8)


def test_wilds_names_are_part_of_the_cache_key(tmp_path: Path) -> None:
    make_wilds(tmp_path / "w", n=4)
    plain = data.load_wilds(tmp_path / "w", size=4)
    named = data.load_wilds(tmp_path / "w", size=4, classes=["landbird", "waterbird"])
    assert plain.classes == ["0", "1"] and named.classes == ["landbird", "waterbird"]


# EuroSAT -----------------------------------------------------------------------------------------


def test_eurosat_rgb_layouts(tmp_path: Path) -> None:
    for root in (tmp_path / "zip" / "2750", tmp_path / "flat"):
        for c in ("AnnualCrop", "Forest", "SeaLake"):
            for i in range(2):
                write_image(root / c / f"{c}_{i + 1}.jpg", size=(64, 64))
    a = data.load_eurosat(tmp_path / "zip")
    b = data.load_eurosat(tmp_path / "flat", size=32)
    assert a.classes == b.classes == ["AnnualCrop", "Forest", "SeaLake"]
    assert tuple(a.x.shape) == (6, 3, 64, 64) and tuple(b.x.shape) == (6, 3, 32, 32)
    assert a.meta["bands"] == ["B04", "B03", "B02"] and a.name == "eurosat"


def test_eurosat_ms_geotiff(tmp_path: Path) -> None:
    import tifffile

    root = tmp_path / "EuroSATallBands" / "ds" / "images" / "remote_sensing" / "otherDatasets" / "sentinel_2" / "tif"
    arrays = {}
    for c in ("Forest", "River"):
        for i in range(2):
            a = RNG.integers(0, 12000, (64, 64, 13), dtype=np.uint16)  # EuroSAT stores H x W x 13 DNs
            (root / c).mkdir(parents=True, exist_ok=True)
            tifffile.imwrite(root / c / f"{c}_{i + 1}.tif", a)
            arrays[(c, i)] = a
    ds = data.load_eurosat(tmp_path / "EuroSATallBands", bands="ms")
    assert tuple(ds.x.shape) == (4, 13, 64, 64) and ds.classes == ["Forest", "River"] and ds.name == "eurosat_ms"
    expect = np.clip(np.moveaxis(arrays[("Forest", 0)], -1, 0) / 10000.0, 0, 1)
    assert np.allclose(ds.x[0].numpy(), expect, atol=1e-6)
    assert ds.meta["bands"][-1] == "B12" and data.check_bands(ds, 13) == 13
    with pytest.raises(DataError, match="eurosat_ms has 13 bands but the model expects 3"):
        data.check_bands(ds, 3)
    assert tuple(data.load_eurosat(tmp_path / "EuroSATallBands", bands="ms", size=16).x.shape) == (4, 13, 16, 16)
    tifffile.imwrite(root / "River" / "River_3.tif", RNG.integers(0, 10, (64, 64, 4), dtype=np.uint16))
    with pytest.raises(DataError, match=r"River_3\.tif .*expected 13 bands"):
        data.load_eurosat(tmp_path / "EuroSATallBands", bands="ms")


def test_eurosat_missing(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataMissing):
        data.load_eurosat(tmp_path / "empty")
    with pytest.raises(DataMissing):
        data.load_eurosat(tmp_path / "absent", bands="ms")


# SSB split pickles -------------------------------------------------------------------------------

SPLITS = {"known_classes": [1, 5, 9], "unknown_classes": {"Easy": [2, 3], "Medium": [4], "Hard": [6, 7, 8]}}


@pytest.mark.parametrize("protocol", range(pickle.HIGHEST_PROTOCOL + 1))
def test_ssb_splits_plain_pickles(tmp_path: Path, protocol: int) -> None:
    (tmp_path / "cub_osr_splits.pkl").write_bytes(pickle.dumps(SPLITS, protocol=protocol))
    names = {"known_classes": ["n01", "n02"], "unknown_classes": {"Easy": ["n03"], "Hard": ["n04"]}}
    (tmp_path / "imagenet_osr_splits_winter21.pkl").write_bytes(pickle.dumps(names, protocol=protocol))
    out = data.load_ssb_splits(tmp_path)
    assert set(out) == {"cub", "imagenet_winter21"}
    assert out["cub"].known_classes == [1, 5, 9] and out["cub"].unknown_classes["Hard"] == [6, 7, 8]
    assert data.load_ssb_splits(tmp_path / "cub_osr_splits.pkl")["cub"] == out["cub"]


class _Exploit:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (os.system, (f"touch {self.marker}",))


def test_ssb_malicious_pickle_is_never_executed(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    payload = {"known_classes": [1], "unknown_classes": {"Easy": [_Exploit(marker)]}}
    bad = tmp_path / "cub_osr_splits.pkl"
    for protocol in (0, 2, pickle.HIGHEST_PROTOCOL):
        bad.write_bytes(pickle.dumps(payload, protocol=protocol))
        with pytest.raises(DataError, match=r"refusing to load .*cub_osr_splits\.pkl: it references the global"):
            data.load_ssb_splits(bad)
        assert not marker.exists()
    bad.write_bytes(pickle.dumps({"known_classes": np.arange(3), "unknown_classes": {}}))  # numpy: also a global
    with pytest.raises(DataError, match="numpy"):
        data.load_ssb_splits(bad)


def test_ssb_bad_files(tmp_path: Path) -> None:
    bad = tmp_path / "x_osr_splits.pkl"
    bad.write_bytes(pickle.dumps([1, 2, 3]))
    with pytest.raises(DataError, match="known_classes"):
        data.load_ssb_splits(bad)
    bad.write_bytes(b"\x80\x04garbage")
    with pytest.raises(DataError, match=r"x_osr_splits\.pkl"):
        data.load_ssb_splits(bad)
    with pytest.raises(DataMissing):
        data.load_ssb_splits(tmp_path / "absent")


# real-set loaders on small fixtures (no $HARNESS_DATA needed) ---------------------------------------


def idx_bytes(arr: np.ndarray) -> bytes:
    return bytes([0, 0, 8, arr.ndim]) + struct.pack(f">{arr.ndim}I", *arr.shape) + arr.astype(np.uint8).tobytes()


def make_mnist(root: Path, n: int = 7) -> tuple[np.ndarray, np.ndarray]:
    images = RNG.integers(0, 256, (n, 28, 28), dtype=np.uint8)
    labels = RNG.integers(0, 10, n, dtype=np.uint8)
    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True)
    (raw / "t10k-images-idx3-ubyte.gz").write_bytes(gzip.compress(idx_bytes(images)))
    (raw / "t10k-labels-idx1-ubyte.gz").write_bytes(gzip.compress(idx_bytes(labels)))
    return images, labels


def test_mnist_idx_fixture(tmp_path: Path) -> None:
    images, labels = make_mnist(tmp_path)
    ds = data.load("mnist", root=tmp_path)
    assert torch.equal(ds.y, torch.from_numpy(labels).long())
    assert np.array_equal(ds.x[:, 0].numpy(), images)
    assert ds.meta["split_names"] == ["train", "test"] and ds.meta["split"].tolist() == [1] * 7
    with pytest.raises(DataMissing, match="train-images"):
        data.load("mnist", root=tmp_path, split="train")


def test_mnist_truncated_and_bad_files(tmp_path: Path) -> None:
    make_mnist(tmp_path)
    f = tmp_path / "MNIST" / "raw" / "t10k-images-idx3-ubyte.gz"
    good = f.read_bytes()
    f.write_bytes(good[: len(good) // 2])  # a cut download: the gzip stream ends early
    with pytest.raises(DataError, match=r"t10k-images-idx3-ubyte\.gz.*corrupt or truncated"):
        data.load("mnist", root=tmp_path)
    payload = gzip.decompress(good)
    f.write_bytes(gzip.compress(payload[:-100]))  # valid gzip, short payload
    with pytest.raises(DataError, match=r"t10k-images-idx3-ubyte\.gz is truncated"):
        data.load("mnist", root=tmp_path)
    f.write_bytes(gzip.compress(b"\x00\x00\x0d\x03" + payload[4:]))  # float dtype code: not ours
    with pytest.raises(DataError, match="bad magic"):
        data.load("mnist", root=tmp_path)
    f.write_bytes(good)
    labels = tmp_path / "MNIST" / "raw" / "t10k-labels-idx1-ubyte.gz"
    labels.write_bytes(gzip.compress(idx_bytes(np.zeros(3, np.uint8))))
    with pytest.raises(DataError, match="holds 3 labels"):
        data.load("mnist", root=tmp_path)


def test_usps_h5_and_libsvm_fixtures(tmp_path: Path) -> None:
    import h5py

    (tmp_path / "USPS").mkdir()
    x_tr, x_te = RNG.random((5, 256), dtype=np.float32), RNG.random((3, 256), dtype=np.float32)
    with h5py.File(tmp_path / "USPS" / "usps.h5", "w") as f:
        for name, x in (("train", x_tr), ("test", x_te)):
            f.create_group(name).create_dataset("data", data=x)
            f[name].create_dataset("target", data=np.arange(len(x), dtype=np.int32))
    ds = data.load("usps", root=tmp_path)
    assert tuple(ds.x.shape) == (8, 1, 16, 16) and ds.meta["split"].tolist() == [0] * 5 + [1] * 3
    assert [len(s) for s in ds.splits().values()] == [5, 3]
    assert np.allclose(data.load("usps", root=tmp_path, split="test").x.reshape(3, -1).numpy(), x_te)

    lib = tmp_path / "lib" / "USPS"
    lib.mkdir(parents=True)
    for fname, n in (("usps.bz2", 4), ("usps.t.bz2", 2)):
        lines = [
            f"{k % 10 + 1} " + " ".join(f"{i + 1}:{v:.4f}" for i, v in enumerate(np.linspace(-1, 1, 256)))
            for k in range(n)
        ]
        (lib / fname).write_bytes(bz2.compress(("\n".join(lines) + "\n").encode()))
    ds = data.load("usps", root=tmp_path / "lib")
    assert len(ds) == 6 and ds.y.tolist() == [0, 1, 2, 3, 0, 1]
    assert ds.x.min() == 0 and ds.x.max() == 1


def test_usps_inconsistent_h5(tmp_path: Path) -> None:
    import h5py

    (tmp_path / "USPS").mkdir()
    with h5py.File(tmp_path / "USPS" / "usps.h5", "w") as f:
        for name in ("train", "test"):
            f.create_group(name).create_dataset("data", data=np.zeros((4, 255), np.float32))
            f[name].create_dataset("target", data=np.zeros(4, np.int32))
    with pytest.raises(DataError, match=r"usps\.h5: train/data has shape \(4, 255\)"):
        data.load("usps", root=tmp_path)


def test_rsscn7_scale_from_file_number(tmp_path: Path) -> None:
    for c, letter in (("aGrass", "a"), ("bField", "b")):
        for number in (1, 100, 101, 250, 301, 400):
            write_image(tmp_path / "RSSCN7" / c / f"{letter}{number:03d}.jpg", size=(24, 24))
    ds = data.load("rsscn7", root=tmp_path, size=8)
    assert ds.classes == ["aGrass", "bField"] and ds.domain_names == ["scale1", "scale2", "scale3", "scale4"]
    assert ds.domain.tolist() == [0, 0, 1, 2, 3, 3] * 2 and tuple(ds.x.shape) == (12, 3, 8, 8)
    write_image(tmp_path / "RSSCN7" / "aGrass" / "a999.jpg", size=(24, 24))
    with pytest.raises(DataError, match=r"a999\.jpg has no number 1-400"):
        data.load("rsscn7", root=tmp_path, size=8)


def test_pacs_fixture_and_info(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for d in ("art_painting", "sketch"):
        for c in ("dog", "house"):
            write_image(tmp_path / "PACS" / d / c / "pic_001.jpg", size=(96, 96))
    ds = data.load("pacs", root=tmp_path, size=32)
    assert ds.domain_names == ["art_painting", "sketch"] and ds.classes == ["dog", "house"]
    assert ds.meta["tier"] == "real" and ds.meta["source"] == str(tmp_path / "PACS")
    monkeypatch.setenv("HARNESS_DATA", str(tmp_path))
    rows = {r.name: r for r in data.dataset_info()}
    assert rows["pacs"].found and rows["pacs"].count == 4 and rows["usps"].found is False
    assert rows["pacs"].path == str(tmp_path / "PACS")
    assert data.dataset_info(check=False)[0].count in (None, 569)  # embedded counts are constants
    assert {r.name: r.count for r in data.dataset_info(check=False)}["pacs"] is None
