"""Real datasets under ``$HARNESS_DATA`` (layouts in ``docs``/the shared data README).

Every loader takes ``root=`` to override ``$HARNESS_DATA`` and raises :class:`DataMissing`
(with the fix) when its folder is absent.
"""

from __future__ import annotations

import bz2
import os
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from harness.data.dataset import ArrayDataset, to_float
from harness.data.decode import IMAGE_EXTS, read_idx, resize
from harness.data.embedded import DIGIT_CLASSES
from harness.data.layouts import _files, _subdirs, image_dataset, load_eurosat, load_imagefolder, load_wilds
from harness.data.paths import real_path
from harness.data.registry import count_files, idx_count, load, register_dataset
from harness.errors import DataError, DataMissing, UsageError

Root = str | Path | None


def _real_meta(path: Path, **extra: object) -> dict[str, object]:
    return {"source": str(path), "synthetic": False, "tier": "real", **extra}


@register_dataset(
    "pacs",
    tier="real",
    rel="PACS",
    counter=lambda p: count_files(p, IMAGE_EXTS),
    description="PACS domain generalisation: 4 domains x 7 classes, 9,991 images (real); domain = style",
)
def pacs(size: int = 96, root: Root = None, cache: bool = True, skip_corrupt: bool = False) -> ArrayDataset:
    """PACS/<domain>/<class>/*.jpg. Domains (sorted): art_painting, cartoon, photo, sketch.
    ``size`` resizes at decode time (96 = the shared copy's native size; the original is 227).
    ``skip_corrupt`` drops undecodable images and lists them in ``meta["skipped_files"]``."""
    path = real_path("pacs", "PACS", root)
    meta = _real_meta(path)
    return load_imagefolder(
        path, domain_level=True, size=size, name="pacs", cache=cache, meta=meta, skip_corrupt=skip_corrupt
    )


_NUMBER = re.compile(r"(\d+)\.[A-Za-z]+$")


@register_dataset(
    "rsscn7",
    tier="real",
    rel="RSSCN7",
    counter=lambda p: count_files(p, IMAGE_EXTS),
    description="RSSCN7 aerial scenes: 7 classes x 400 (real); domain = ground scale 1-4 from file number",
)
def rsscn7(size: int | None = 64, root: Root = None, cache: bool = True, skip_corrupt: bool = False) -> ArrayDataset:
    """RSSCN7/<class>/<letter><NNN>.jpg. Files 001-100 are scale 1, 101-200 scale 2, ... 301-400
    scale 4 (each coarser than the one before). Default ``size=64`` keeps decoding and training fast;
    ``size=None`` keeps the native 256 px. ``skip_corrupt`` drops undecodable images (``meta["skipped_files"]``)."""
    path = real_path("rsscn7", "RSSCN7", root)
    classes = [d.name for d in _subdirs(path)]
    files, y, scale = [], [], []
    for i, d in enumerate(_subdirs(path)):
        for f in _files(d, IMAGE_EXTS):
            m = _NUMBER.search(f.name)
            number = int(m.group(1)) if m else 0
            if not 1 <= number <= 400:
                raise DataError(f"RSSCN7 file {f} has no number 1-400 in its name; cannot tell its scale")
            files.append(f)
            y.append(i)
            scale.append((number - 1) // 100)
    return image_dataset(
        "rsscn7",
        path,
        files,
        y,
        classes,
        size=size,
        cache=cache,
        params={"layout": "rsscn7"},
        domain=scale,
        domain_names=[f"scale{s}" for s in range(1, 5)],
        meta=_real_meta(path),
        skip_corrupt=skip_corrupt,
    )


def _usps_count(path: Path) -> int | None:
    h5 = path / "usps.h5"
    if not h5.is_file():
        return None
    import h5py

    with h5py.File(h5, "r") as f:
        return sum(len(f[s]["target"]) for s in ("train", "test"))


def _read_libsvm(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """torchvision's raw USPS files: ``label idx:value ...`` lines, labels 1..10, values in [-1, 1]."""
    xs, ys = [], []
    try:
        with bz2.open(path, "rt") as f:
            for line in f:
                label, *pairs = line.split()
                row = np.zeros(256, np.float32)
                for p in pairs:
                    i, v = p.split(":")
                    row[int(i) - 1] = float(v)
                xs.append((row + 1) / 2)
                ys.append(int(float(label)) - 1)
    except (OSError, EOFError, ValueError, IndexError) as e:
        raise DataError(f"cannot parse USPS file {path}: {e}") from e
    return np.stack(xs), np.asarray(ys)


def _read_usps(path: Path, part: str) -> tuple[np.ndarray, np.ndarray]:
    h5 = path / "usps.h5"
    if h5.is_file():
        import h5py

        try:
            with h5py.File(h5, "r") as f:
                x, y = np.asarray(f[part]["data"], np.float32), np.asarray(f[part]["target"])
        except (OSError, KeyError) as e:
            raise DataError(f"cannot read group {part!r} of {h5}: {e}") from e
        if x.ndim != 2 or x.shape[1] != 256 or len(x) != len(y):
            raise DataError(f"{h5}: {part}/data has shape {x.shape} and {part}/target {y.shape}; expected N x 256, N")
        return x, y
    raw = path / ("usps.bz2" if part == "train" else "usps.t.bz2")
    if raw.is_file():
        return _read_libsvm(raw)
    raise DataMissing("usps", str(h5), "expected USPS/usps.h5 (or torchvision's usps.bz2 + usps.t.bz2)")


@register_dataset(
    "usps",
    tier="real",
    rel="USPS",
    counter=_usps_count,
    description="USPS handwritten digits: 7,291 train + 2,007 test, 16x16 grey (real)",
)
def usps(split: str = "all", root: Root = None) -> ArrayDataset:
    """USPS/usps.h5 (groups train/test with data N x 256 in [0, 1] and target) or the libsvm
    ``usps.bz2``/``usps.t.bz2`` pair. ``split="all"`` returns train then test, with
    ``meta["split"]`` = 0 (train) / 1 (test) per sample, so ``ds.splits()`` gives both."""
    if split not in ("train", "test", "all"):
        raise UsageError(f"usps: split must be 'train', 'test' or 'all', got {split!r}")
    path = real_path("usps", "USPS", root)
    parts = ["train", "test"] if split == "all" else [split]
    arrays = [_read_usps(path, p) for p in parts]
    x = torch.from_numpy(np.concatenate([a for a, _ in arrays])).reshape(-1, 1, 16, 16).clamp_(0, 1)
    y = torch.from_numpy(np.concatenate([b for _, b in arrays]).astype(np.int64))
    codes = torch.cat([torch.full((len(b),), ["train", "test"].index(p)) for p, (_, b) in zip(parts, arrays)])
    meta = _real_meta(path, split=codes, split_names=["train", "test"])
    return ArrayDataset(x, y, DIGIT_CLASSES, "usps", meta=meta)


def _mnist_file(raw: Path, stem: str) -> Path:
    for candidate in (raw / stem, raw / f"{stem}.gz"):
        if candidate.is_file():
            return candidate
    hint = "expected MNIST/raw/<file>-idx?-ubyte(.gz) (torchvision's layout)"
    raise DataMissing("mnist", str(raw / f"{stem}.gz"), hint)


def _mnist_count(path: Path) -> int | None:
    f = path / "raw" / "t10k-labels-idx1-ubyte.gz"
    return idx_count(f) if f.is_file() else None


@register_dataset(
    "mnist",
    tier="real",
    rel="MNIST",
    counter=_mnist_count,
    description="MNIST (torchvision raw idx layout): the 10,000-image test set, 28x28 grey (real)",
)
def mnist(split: str = "test", root: Root = None) -> ArrayDataset:
    """MNIST/raw/{t10k,train}-{images-idx3,labels-idx1}-ubyte[.gz]. The shared copy has only the test
    set; ``split="train"``/``"all"`` need the training files too (``meta["split"]``: 0 train, 1 test)."""
    if split not in ("train", "test", "all"):
        raise UsageError(f"mnist: split must be 'train', 'test' or 'all', got {split!r}")
    raw = real_path("mnist", "MNIST", root) / "raw"
    parts = ["train", "test"] if split == "all" else [split]
    xs, ys = [], []
    for p in parts:
        prefix = "train" if p == "train" else "t10k"
        img_file = _mnist_file(raw, f"{prefix}-images-idx3-ubyte")
        lbl_file = _mnist_file(raw, f"{prefix}-labels-idx1-ubyte")
        images, labels = read_idx(img_file, 3), read_idx(lbl_file, 1)
        if len(images) != len(labels) or images.shape[1:] != (28, 28):
            raise DataError(f"{img_file} holds {images.shape} images but {lbl_file} holds {len(labels)} labels")
        xs.append(torch.from_numpy(images.copy()))
        ys.append(torch.from_numpy(labels.astype(np.int64)))
    codes = torch.cat([torch.full((len(b),), ["train", "test"].index(p)) for p, b in zip(parts, ys)])
    x = torch.cat(xs).unsqueeze(1)  # uint8
    meta = _real_meta(raw, split=codes, split_names=["train", "test"])
    return ArrayDataset(x, torch.cat(ys), DIGIT_CLASSES, "mnist", meta=meta)


def _digits_multi_count(mnist_dir: Path) -> int | None:
    parts = (_mnist_count(mnist_dir), _usps_count(mnist_dir.parent / "USPS"))
    return None if None in parts else sum(parts) + 1797  # + sklearn digits


@register_dataset(
    "digits_multi",
    tier="real",
    rel="MNIST",
    counter=_digits_multi_count,
    description="digit domains at one resolution: MNIST test + USPS + sklearn digits, domain = source "
    "(sources=('mnist5k','digits') works offline)",
)
def digits_multi(
    sources: Sequence[str] = ("mnist", "usps", "digits"), size: int = 16, root: Root = None
) -> ArrayDataset:
    """Each source resized (bilinear, antialiased) to ``size`` x ``size``, 1 channel; ``domain`` indexes
    ``sources``. A missing real source raises :class:`DataMissing` (suites fall back to the embedded pair)."""
    allowed = ("mnist", "usps", "digits", "mnist5k")
    xs, ys, ds, tiers = [], [], [], []
    for d, src in enumerate(sources):
        if src not in allowed:
            raise UsageError(f"digits_multi: unknown source {src!r}; choose from {allowed}")
        part = load(src, root=root) if src in ("mnist", "usps") else load(src)
        xs.append(resize(to_float(part.x), size))
        ys.append(part.y)
        ds.append(torch.full((len(part),), d, dtype=torch.long))
        tiers.append(part.meta.get("tier"))
    real = "real" in tiers
    meta = {
        "source": str(real_path("digits_multi", "", root)) if real else "embedded",
        "synthetic": False,
        "tier": "real" if real else "embedded",
        "sources": list(sources),
    }
    x, y, domain = torch.cat(xs), torch.cat(ys), torch.cat(ds)
    return ArrayDataset(x, y, DIGIT_CLASSES, "digits_multi", domain, list(sources), meta=meta)


CIFAR10_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


@register_dataset(
    "cifar10",
    tier="real",
    rel="CIFAR-10",
    counter=lambda p: count_files(p, IMAGE_EXTS),
    description="CIFAR-10 in the per-class image layout {train,test}/<class>/*.jpg, 32x32 RGB (real); "
    "meta['split']: 0 train, 1 test",
)
def cifar10(root: Root = None, cache: bool = True) -> ArrayDataset:
    """CIFAR-10/{train,test}/<class>/*.{jpg,png}: both parts in one set, ``meta["split"]`` = 0 (train) / 1 (test),
    classes in CIFAR's label order (airplane = 0 ... truck = 9). The shared copy holds 1,000 train images per class
    (files 0000-0999) and the full 10,000-image test set; the full 50,000 train images load the same way."""
    path = real_path("cifar10", "CIFAR-10", root)
    files, y, split = [], [], []
    for code, part in enumerate(("train", "test")):
        if not (path / part).is_dir():
            raise DataMissing("cifar10", str(path / part), "expected CIFAR-10/{train,test}/<class>/ image folders")
        for i, c in enumerate(CIFAR10_CLASSES):
            found = _files(path / part / c, IMAGE_EXTS) if (path / part / c).is_dir() else []
            if not found:
                raise DataError(f"CIFAR-10 class folder {path / part / c} is missing or holds no images")
            files += found
            y += [i] * len(found)
            split += [code] * len(found)
    return image_dataset("cifar10", path, files, y, CIFAR10_CLASSES, size=None, cache=cache,
                         params={"layout": "cifar10-folders"},
                         meta=_real_meta(path, split=torch.tensor(split), split_names=["train", "test"]))


# Users' full datasets in their own layouts, found under $HARNESS_DATA when present --------------


@register_dataset(
    "eurosat",
    tier="user",
    rel="EuroSAT",
    counter=lambda p: count_files(p, (".jpg", ".jpeg")),
    description="EuroSAT RGB (Sentinel-2, 64x64 jpg, 10 classes, 27,000 images) in its archive layout",
)
def eurosat(size: int | None = None, root: Root = None, cache: bool = True) -> ArrayDataset:
    return load_eurosat(real_path("eurosat", "EuroSAT", root), "rgb", size, cache=cache)


@register_dataset(
    "eurosat_ms",
    tier="user",
    rel="EuroSAT_MS",
    counter=lambda p: count_files(p, (".tif", ".tiff")),
    description="EuroSAT MS (13-band Sentinel-2 GeoTIFF, 64x64, 10 classes) in its archive layout",
)
def eurosat_ms(size: int | None = None, root: Root = None, cache: bool = True) -> ArrayDataset:
    return load_eurosat(real_path("eurosat_ms", "EuroSAT_MS", root), "ms", size, cache=cache)


@register_dataset(
    "waterbirds",
    tier="user",
    rel="waterbirds",
    counter=lambda p: count_files(p, IMAGE_EXTS),
    description="Waterbirds (WILDS layout: metadata.csv + images); group = y*2 + place, meta['split']",
)
def waterbirds(size: int = 64, root: Root = None, cache: bool = True, skip_corrupt: bool = False) -> ArrayDataset:
    path = real_path("waterbirds", "waterbirds", root)
    classes = ["landbird", "waterbird"]
    return load_wilds(path, size, classes=classes, name="waterbirds", cache=cache, skip_corrupt=skip_corrupt)


def _cub_table(path: Path, columns: int) -> dict[int, list[str]]:
    """A CUB metadata file (``<image or class id> <value>...`` per line) as id -> values; bad lines name the file."""
    if not path.is_file():
        raise DataMissing("cub", str(path), "expected the CUB_200_2011 metadata files beside images/")
    rows: dict[int, list[str]] = {}
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        parts = line.split()
        if len(parts) != columns or not parts[0].isdigit():
            raise DataError(f"{path}, line {n}: expected {columns} fields starting with an id, got {line!r}")
        rows[int(parts[0])] = parts[1:]
    return rows


@register_dataset(
    "cub",
    tier="real",
    rel="CUB_200_2011",
    counter=lambda p: count_files(p / "images", IMAGE_EXTS),
    description="Caltech-UCSD Birds-200-2011 in its original layout: the images present on disk (the shared copy "
    "holds classes 001-050); meta['split']: 0 train, 1 test (train_test_split.txt)",
)
def cub(size: int = 64, root: Root = None, cache: bool = True) -> ArrayDataset:
    """CUB_200_2011/{images.txt, image_class_labels.txt, train_test_split.txt, classes.txt, images/<NNN.Name>/*.jpg}.

    Labels are 0-based class ids (CUB's 1-200 minus one, the convention of the SSB split files) and ``classes``
    lists all classes of ``classes.txt``, present or not. Images listed in ``images.txt`` but absent from disk are
    left out, so a partial copy loads what it has: ``meta["classes_present"]`` (0-based ids with at least one image),
    ``meta["images_listed"]`` and ``meta["images_present"]`` say what was there. ``meta["split"]`` is the official
    train (0) / test (1) split per sample. Images are squashed to ``size`` x ``size`` (as the SSB code resizes).
    """
    path = real_path("cub", "CUB_200_2011", root)
    images, labels = _cub_table(path / "images.txt", 2), _cub_table(path / "image_class_labels.txt", 2)
    is_train, class_rows = _cub_table(path / "train_test_split.txt", 2), _cub_table(path / "classes.txt", 2)
    classes = [class_rows[i][0] for i in sorted(class_rows)]
    if sorted(class_rows) != list(range(1, len(classes) + 1)):
        raise DataError(f"{path / 'classes.txt'}: class ids must run 1..{len(classes)}")
    on_disk = {os.path.relpath(f, path / "images").replace(os.sep, "/") for f in _files(path / "images", IMAGE_EXTS)}
    files, y, split = [], [], []
    for image_id, (rel,) in sorted(images.items()):
        if rel not in on_disk:
            continue
        if image_id not in labels or image_id not in is_train:
            raise DataError(f"{path}: image {image_id} ({rel}) has no class label or train/test entry")
        label = int(labels[image_id][0]) - 1
        if not 0 <= label < len(classes):
            raise DataError(f"{path / 'image_class_labels.txt'}: image {image_id} has class {label + 1}, "
                            f"outside 1..{len(classes)}")
        files.append(path / "images" / rel)
        y.append(label)
        split.append(0 if is_train[image_id][0] == "1" else 1)
    if not files:
        raise DataError(f"none of the {len(images)} images listed in {path / 'images.txt'} is under {path / 'images'}")
    meta = _real_meta(path, split=torch.tensor(split), split_names=["train", "test"],
                      classes_present=sorted(set(y)), images_listed=len(images), images_present=len(files))
    return image_dataset("cub", path, files, y, classes, size=size, cache=cache, params={"layout": "cub"}, meta=meta)
