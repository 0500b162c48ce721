"""The four data-layer defects a new user met (issue 8, section 8), each on a fixture tree built here.

Every test here fails on the code before the fix: 16-bit greyscale decoded all white, an empty class
folder became a class with no samples, one corrupt image left no way to load the rest, and clutter
classes could not be excluded.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import harness.data as data
import harness.data.layouts as layouts
from harness.data.decode import decode_images
from harness.errors import DataError

RNG = np.random.default_rng(8)


@pytest.fixture(autouse=True)
def _private(cache_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HARNESS_DATA", raising=False)


def write_rgb(path: Path, colour: int = 0, size: int = 6) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    arr = RNG.integers(0, 256, (size, size, 3), dtype=np.uint8)
    arr[..., colour % 3] = 255
    Image.fromarray(arr).save(path)


def write_corrupt(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\xff\xd8\xff\xe0 this is not a JPEG")


def write_grey16(path: Path, values: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(values.astype(np.uint16)).save(path)


GRADIENT = (np.arange(8 * 8).reshape(8, 8) * 1000 + 1000).astype(np.uint16)  # 1000 .. 64000, mean 0.492 of 65535


# 1. 16-bit greyscale ---------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["L", "RGB"])
def test_grey16_png_is_scaled_by_bit_depth(tmp_path: Path, mode: str) -> None:
    write_grey16(tmp_path / "scans" / "a" / "0.png", GRADIENT)
    write_grey16(tmp_path / "scans" / "b" / "0.png", GRADIENT // 4)
    assert Image.open(tmp_path / "scans" / "a" / "0.png").mode in ("I;16", "I")  # the case in question
    ds = data.load_imagefolder(tmp_path / "scans", mode=mode)
    expected = np.rint(GRADIENT / 257)  # uint8 levels
    channels = 1 if mode == "L" else 3
    assert tuple(ds.x.shape) == (2, channels, 8, 8)
    for c in range(channels):  # grey replicated into each channel
        assert np.array_equal(ds.x[0, c].numpy(), expected)
    x = ds.x.float() / 255
    assert abs(x[0].mean().item() - GRADIENT.mean() / 65535) < 0.005  # the old code gave 1.000
    assert abs(x[1].mean().item() - (GRADIENT // 4).mean() / 65535) < 0.005


def test_grey16_matches_its_8bit_twin_after_resize(tmp_path: Path) -> None:
    eight = RNG.integers(0, 256, (16, 16), dtype=np.uint8)
    Image.fromarray(eight).save(tmp_path / "eight.png")
    write_grey16(tmp_path / "sixteen.png", eight.astype(np.uint16) * 257)  # the same picture at 16 bits
    for size in (None, 5):
        x = decode_images([tmp_path / "eight.png", tmp_path / "sixteen.png"], size=size, mode="L")
        assert x.dtype == torch.uint8
        assert (x[0].int() - x[1].int()).abs().max() <= 1  # 8-bit path rounds after PIL's own resize


def test_grey16_tiff_and_float_tiff(tmp_path: Path) -> None:
    write_grey16(tmp_path / "big_endian.tif", GRADIENT)
    Image.fromarray((GRADIENT / 65535).astype(np.float32)).save(tmp_path / "unit.tif")
    x = decode_images([tmp_path / "big_endian.tif", tmp_path / "unit.tif"], mode="L")
    expected = np.rint(GRADIENT / 257)
    assert np.abs(x[:, 0].numpy().astype(float) - expected).max() <= 1  # the old code gave 255s and 0/1s


def test_unscalable_depths_name_the_file(tmp_path: Path) -> None:
    Image.fromarray((GRADIENT * 3.0).astype(np.float32)).save(tmp_path / "hdr.tif")
    Image.fromarray(GRADIENT.astype(np.int32) * 1000).save(tmp_path / "int32.tif")
    with pytest.raises(DataError, match=r"hdr\.tif: float pixels span \[3000, 192000\]"):
        decode_images([tmp_path / "hdr.tif"])
    with pytest.raises(DataError, match=r"int32\.tif: 32-bit integer greyscale"):
        decode_images([tmp_path / "int32.tif"], mode="L")


# 2. empty class folders ----------------------------------------------------------------------------


def test_empty_class_folder_is_an_error_naming_it(tmp_path: Path) -> None:
    write_rgb(tmp_path / "pets" / "cat" / "0.png")
    (tmp_path / "pets" / "dog").mkdir()
    (tmp_path / "pets" / "dog" / "readme.txt").write_text("images to come")  # no image is still empty
    with pytest.raises(DataError) as info:
        data.load_imagefolder(tmp_path / "pets")
    msg = str(info.value)
    assert str(tmp_path / "pets" / "dog") in msg and "no image files" in msg and "exclude=('dog',)" in msg
    ds = data.load_imagefolder(tmp_path / "pets", exclude=["dog"])  # the fix the message gives
    assert ds.classes == ["cat"] and ds.meta["excluded_classes"] == ["dog"]


def test_empty_class_and_domain_at_domain_level(tmp_path: Path) -> None:
    for d in ("photo", "sketch"):
        write_rgb(tmp_path / "dg" / d / "a" / "0.png")
        (tmp_path / "dg" / d / "b").mkdir()
    with pytest.raises(DataError, match=r"class folder .*photo/b, .*sketch/b holds no image files"):
        data.load_imagefolder(tmp_path / "dg", domain_level=True)
    write_rgb(tmp_path / "dg" / "photo" / "b" / "0.png")  # b empty in one domain only: a class with images
    ds = data.load_imagefolder(tmp_path / "dg", domain_level=True)
    assert ds.classes == ["a", "b"] and ds.y.tolist() == [0, 1, 0]
    (tmp_path / "dg" / "quickdraw" / "a").mkdir(parents=True)
    with pytest.raises(DataError, match=r"domain folder .*quickdraw holds no image files"):
        data.load_imagefolder(tmp_path / "dg", domain_level=True)


# 3. corrupt images ---------------------------------------------------------------------------------


def make_pets(root: Path) -> Path:
    for c, n in (("cat", 3), ("dog", 2)):
        for i in range(n):
            write_rgb(root / c / f"{i}.png", colour=i)
    write_corrupt(root / "cat" / "1b.jpg")
    (root / "dog" / "2.png").write_bytes((root / "dog" / "0.png").read_bytes()[:60])  # truncated mid-stream
    return root


def test_corrupt_image_raises_by_default_naming_it(tmp_path: Path) -> None:
    root = make_pets(tmp_path / "pets")
    with pytest.raises(DataError, match=r"cannot decode image .*cat/1b\.jpg"):
        data.load_imagefolder(root)


def test_skip_corrupt_drops_counts_and_lists(tmp_path: Path) -> None:
    root = make_pets(tmp_path / "pets")
    ds = data.load_imagefolder(root, skip_corrupt=True)
    assert ds.meta["skipped_files"] == ["cat/1b.jpg", "dog/2.png"] and ds.meta["skipped_count"] == 2
    assert ds.meta["files"] == ["cat/0.png", "cat/1.png", "cat/2.png", "dog/0.png", "dog/1.png"]
    assert ds.y.tolist() == [0, 0, 0, 1, 1] and len(ds.x) == 5
    clean = np.asarray(Image.open(root / "dog" / "1.png"))
    assert np.array_equal(ds.x[4].permute(1, 2, 0).numpy(), clean)  # rows stay aligned with files


def test_skip_corrupt_keeps_domains_aligned(tmp_path: Path) -> None:
    for d in ("art", "photo"):
        for c in ("a", "b"):
            write_rgb(tmp_path / "dg" / d / c / "0.png")
    write_corrupt(tmp_path / "dg" / "art" / "b" / "bad.jpg")
    ds = data.load_imagefolder(tmp_path / "dg", domain_level=True, skip_corrupt=True)
    assert ds.meta["skipped_files"] == ["art/b/bad.jpg"]
    assert ds.y.tolist() == [0, 1, 0, 1] and ds.domain.tolist() == [0, 0, 1, 1]


def test_skip_list_survives_a_warm_cache_and_the_option_is_in_the_key(
    tmp_path: Path, cache_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[int] = []
    real = layouts.decode_images_skipping

    def counting(files: list[Path], *args: object) -> tuple[torch.Tensor, list[int]]:
        calls.append(len(files))
        return real(files, *args)

    monkeypatch.setattr(layouts, "decode_images_skipping", counting)
    root = make_pets(tmp_path / "pets")
    cold = data.load_imagefolder(root, skip_corrupt=True)
    warm = data.load_imagefolder(root, skip_corrupt=True)
    assert calls == [7] and len(list((cache_dir / "datasets").glob("*.safetensors"))) == 1
    assert warm.meta == cold.meta and warm.meta["skipped_files"] == ["cat/1b.jpg", "dog/2.png"]
    assert torch.equal(warm.x, cold.x) and torch.equal(warm.y, cold.y)
    with pytest.raises(DataError, match=r"cat/1b\.jpg"):  # the skipping entry never answers a strict load
        data.load_imagefolder(root)


def test_skip_corrupt_on_a_clean_set_changes_nothing_but_meta(tmp_path: Path) -> None:
    root = tmp_path / "pets"
    for i in range(3):
        write_rgb(root / f"c{i % 2}" / f"{i}.png")
    strict, lenient = data.load_imagefolder(root), data.load_imagefolder(root, skip_corrupt=True)
    assert strict.fingerprint == lenient.fingerprint and "skipped_count" not in strict.meta
    assert lenient.meta["skipped_count"] == 0 and lenient.meta["skipped_files"] == []


def test_skip_corrupt_never_empties_a_class_or_the_set(tmp_path: Path) -> None:
    write_rgb(tmp_path / "pets" / "cat" / "0.png")
    write_corrupt(tmp_path / "pets" / "dog" / "0.jpg")
    with pytest.raises(DataError, match=r"every image of class 'dog' failed to decode \(e\.g\. .*dog/0\.jpg\)"):
        data.load_imagefolder(tmp_path / "pets", skip_corrupt=True)
    write_corrupt(tmp_path / "junk" / "a" / "0.jpg")
    with pytest.raises(DataError, match=r"none of the 1 image files could be decoded; .*a/0\.jpg"):
        data.load_imagefolder(tmp_path / "junk", skip_corrupt=True)


def test_skip_corrupt_filters_wilds_split_codes(tmp_path: Path) -> None:
    root = tmp_path / "birds"
    lines = ["img_filename,y,split,place"]
    for i in range(6):
        write_rgb(root / f"{i}.png", colour=i)
        lines.append(f"{i}.png,{i % 2},{i % 3},{(i // 2) % 2}")
    write_corrupt(root / "3.png")
    (root / "metadata.csv").write_text("\n".join(lines) + "\n")
    ds = data.load_wilds(root, skip_corrupt=True)
    assert ds.meta["skipped_files"] == ["3.png"]
    assert ds.y.tolist() == [0, 1, 0, 0, 1] and ds.meta["split"].tolist() == [0, 1, 2, 1, 2]
    assert ds.domain.tolist() == [0, 0, 1, 0, 0]


def test_registered_pacs_passes_skip_corrupt_through(tmp_path: Path) -> None:
    for d in ("art_painting", "photo"):
        for c in ("dog", "horse"):
            write_rgb(tmp_path / "PACS" / d / c / "0.png", size=96)
    write_corrupt(tmp_path / "PACS" / "photo" / "dog" / "9.jpg")
    with pytest.raises(DataError, match=r"photo/dog/9\.jpg"):
        data.load("pacs", root=tmp_path)
    ds = data.load("pacs", root=tmp_path, skip_corrupt=True)
    assert ds.meta["skipped_files"] == ["photo/dog/9.jpg"] and len(ds) == 4 and ds.meta["tier"] == "real"


# 4. excluding clutter classes ----------------------------------------------------------------------


def make_caltech(root: Path) -> Path:
    for i, c in enumerate(("BACKGROUND_Google", "Faces", "Faces_easy", "airplanes")):
        write_rgb(root / c / "image_0001.jpg", colour=i)
    return root


def test_exclude_by_name_and_pattern(tmp_path: Path) -> None:
    root = make_caltech(tmp_path / "caltech")
    full = data.load_imagefolder(root)
    assert "BACKGROUND_Google" in full.classes and "excluded_classes" not in full.meta
    ds = data.load_imagefolder(root, exclude=("BACKGROUND_Google",))
    assert ds.classes == ["Faces", "Faces_easy", "airplanes"] and ds.y.tolist() == [0, 1, 2]
    assert ds.meta["excluded_classes"] == ["BACKGROUND_Google"]
    assert all(not f.startswith("BACKGROUND") for f in ds.meta["files"])
    pattern = data.load_imagefolder(root, exclude=["BACK*", "*_easy"])
    assert pattern.classes == ["Faces", "airplanes"]
    assert pattern.meta["excluded_classes"] == ["BACKGROUND_Google", "Faces_easy"]
    assert data.load_imagefolder(root, exclude="BACKGROUND_Google").classes == ds.classes  # one bare name


def test_exclude_is_in_the_cache_key(tmp_path: Path, cache_dir: Path) -> None:
    root = make_caltech(tmp_path / "caltech")
    assert data.load_imagefolder(root).num_classes == 4
    assert data.load_imagefolder(root, exclude=["BACK*"]).num_classes == 3
    assert data.load_imagefolder(root, exclude=["*_easy"]).classes == ["BACKGROUND_Google", "Faces", "airplanes"]
    assert len(list((cache_dir / "datasets").glob("*.safetensors"))) == 3


def test_exclude_matching_nothing_warns(tmp_path: Path) -> None:
    root = make_caltech(tmp_path / "caltech")
    with pytest.warns(UserWarning, match=r"exclude='Background_Google' matches no class folder"):
        ds = data.load_imagefolder(root, exclude=["BACKGROUND_Google", "Background_Google"])  # case matters
    assert ds.meta["excluded_classes"] == ["BACKGROUND_Google"]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        data.load_imagefolder(root, exclude=["BACK*"])
