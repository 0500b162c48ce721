"""Loaders for the layouts users already have on disk.

- :func:`load_imagefolder`: ``root/<class>/*`` or ``root/<domain>/<class>/*`` (DomainBed, PACS, ...)
- :func:`load_wilds`: WILDS-style ``metadata.csv`` plus image files (Waterbirds, ...)
- :func:`load_eurosat`: EuroSAT RGB (jpg) or MS (13-band GeoTIFF) class folders
- :func:`load_ssb_splits`: Semantic Shift Benchmark split pickles, read without running code

All decoded image sets go through the tensor cache (``cache=False`` skips it).
"""

from __future__ import annotations

import fnmatch
import os
import pickle
import warnings
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from harness.data.cache import cached
from harness.data.dataset import ArrayDataset
from harness.data.decode import IMAGE_EXTS, Size, decode_images, decode_images_skipping, read_tiffs
from harness.data.source import FileImages
from harness.data.userfolder import read_view
from harness.errors import DataError, DataMissing

PathLike = str | os.PathLike[str]

# Sentinel-2 band order of EuroSAT MS and of the synthetic_ms set
S2_BANDS = ["B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B10", "B11", "B12"]
S2_SCALE = 10000.0  # Sentinel-2 L1C digital numbers are reflectance x 10000


def _subdirs(path: Path) -> list[Path]:
    return sorted(p for p in path.iterdir() if p.is_dir() and not p.name.startswith("."))


def _files(path: Path, exts: Sequence[str]) -> list[Path]:
    """Files under ``path`` (recursively) with one of ``exts``, sorted; os.walk is ~10x faster than rglob."""
    exts = tuple(exts)
    found = []
    for dirpath, dirnames, filenames in os.walk(path):
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        found += [os.path.join(dirpath, f) for f in filenames if f.lower().endswith(exts) and not f.startswith(".")]
    return [Path(f) for f in sorted(found)]


def image_dataset(
    name: str,
    root: Path,
    files: list[Path],
    y: list[int],
    classes: list[str],
    *,
    size: Size,
    mode: str = "RGB",
    cache: bool = True,
    params: dict[str, Any] | None = None,
    domain: list[int] | None = None,
    domain_names: list[str] | None = None,
    group: list[int] | None = None,
    group_names: list[str] | None = None,
    meta: dict[str, Any] | None = None,
    skip_corrupt: bool = False,
    lazy: bool = False,
) -> ArrayDataset:
    """Decode ``files`` (through the cache) into an :class:`ArrayDataset` with the given labels.

    With ``lazy`` nothing is decoded up front: ``x`` is a :class:`~harness.data.source.FileImages` that decodes
    on access, for sets too large to hold decoded; protocols then stream it through DataLoader workers.
    ``size`` is required (every sample must come out the same shape) and ``skip_corrupt`` is not available.

    An undecodable file raises a :class:`DataError` naming it. With ``skip_corrupt`` such files are
    dropped instead, with their labels, and listed (relative to ``root``) in ``meta["skipped_files"]``
    with ``meta["skipped_count"]``; tensors in ``meta`` are per-sample (as load_wilds's split codes)
    and lose the same rows.
    """
    if not files:
        raise DataError(f"no image files ({', '.join(IMAGE_EXTS)}) found under {root}")
    strip = len(str(root)) + 1  # cuts root/ off a path
    if lazy:
        return _lazy_dataset(name, root, files, y, classes, size, mode, domain, domain_names, group, group_names,
                             meta, skip_corrupt)

    def build() -> ArrayDataset:
        m = {"source": str(root), "synthetic": False, "tier": "user", "size": size, "mode": mode}
        m["files"] = [str(f)[strip:] for f in files]  # sample i came from files[i], relative to root
        m.update(meta or {})
        keep = None  # rows that decoded, when some did not
        if not skip_corrupt:
            x = decode_images(files, size, mode)
        else:
            x, failed = decode_images_skipping(files, size, mode)
            keep = torch.ones(len(files), dtype=torch.bool)
            keep[failed] = False
            _check_classes_survive(y, keep, classes, files)
            m = {k: v[keep] if isinstance(v, torch.Tensor) else v for k, v in m.items()}
            m["files"] = [f for f, k in zip(m["files"], keep.tolist()) if k]
            m["skipped_files"] = [str(files[i])[strip:] for i in failed]
            m["skipped_count"] = len(failed)
        return ArrayDataset(
            x,
            _as_long(y, keep),
            classes,
            name,
            _as_long(domain, keep),
            domain_names,
            _as_long(group, keep),
            group_names,
            m,
        )

    # everything that shapes the result beyond the file listing goes into the key
    plain_meta = {k: v for k, v in (meta or {}).items() if not isinstance(v, torch.Tensor)}
    key = {"size": size, "mode": mode, "names": [classes, domain_names, group_names], "meta": plain_meta}
    key.update(params or {})
    if skip_corrupt:  # only when on, so entries built before the option existed stay valid
        key["skip_corrupt"] = True
    return cached(name, key, [root], build, enabled=cache)


def _lazy_dataset(name: str, root: Path, files: list[Path], y: list[int], classes: list[str], size: Size, mode: str,
                  domain: list[int] | None, domain_names: list[str] | None, group: list[int] | None,
                  group_names: list[str] | None, meta: dict[str, Any] | None, skip_corrupt: bool) -> ArrayDataset:
    if size is None or skip_corrupt:
        raise DataError(f"{name}: lazy loading needs size=N (samples must share a shape) and no skip_corrupt "
                        "(files are decoded later, during training)")
    strip = len(str(root)) + 1
    m = {"source": str(root), "synthetic": False, "tier": "user", "size": size, "mode": mode, "lazy": True,
         "files": [str(f)[strip:] for f in files], **(meta or {})}
    return ArrayDataset(FileImages(files, size, mode), _as_long(y, None), classes, name, _as_long(domain, None),
                        domain_names, _as_long(group, None), group_names, m)


def _check_classes_survive(y: list[int], keep: torch.Tensor, classes: list[str], files: list[Path]) -> None:
    """Skipping must not empty a class: a class all of whose images are corrupt is an error, not 0 samples."""
    labels = torch.tensor(y, dtype=torch.long)
    before = torch.bincount(labels, minlength=len(classes))
    after = torch.bincount(labels[keep], minlength=len(classes))
    lost = next((c for c in range(len(classes)) if before[c] > 0 and after[c] == 0), None)
    if lost is not None:
        example = next(f for f, label in zip(files, y) if label == lost)
        raise DataError(
            f"every image of class {classes[lost]!r} failed to decode (e.g. {example}); "
            "fix or remove its files, or exclude the class"
        )


def _as_long(v: list[int] | None, keep: torch.Tensor | None = None) -> torch.Tensor | None:
    """``v`` as an int64 tensor, only the rows ``keep`` marks when given."""
    if v is None:
        return None
    t = torch.tensor(v, dtype=torch.long)
    return t if keep is None else t[keep]


def _require_dir(path: PathLike, name: str, layout: str) -> Path:
    root = Path(path)
    if not root.is_dir():
        raise DataMissing(name, str(root), f"expected the layout {layout}")
    return root


def load_imagefolder(
    path: PathLike,
    domain_level: bool = False,
    size: Size = None,
    *,
    mode: str = "RGB",
    name: str | None = None,
    cache: bool = True,
    meta: dict[str, Any] | None = None,
    exclude: Sequence[str] = (),
    skip_corrupt: bool = False,
    lazy: bool = False,
) -> ArrayDataset:
    """``root/<class>/*`` (or ``root/<domain>/<class>/*`` with ``domain_level``) -> labelled images.

    Classes (and domains) are the sorted folder names; images nested deeper inside a class
    folder count for that class. ``size`` resizes at decode time (required when sizes differ);
    ``mode`` is a PIL mode ("RGB", "L").
    ``exclude`` drops class folders by name or fnmatch pattern (``("BACKGROUND_Google",)``, ``("_*",)``);
    the names dropped are in ``meta["excluded_classes"]``, and a pattern that matches nothing warns.
    A class (or domain) without images is an error; ``skip_corrupt`` drops undecodable images
    (see :func:`image_dataset`) instead of raising on the first. ``lazy`` decodes nothing up front (for sets
    too large to hold decoded; they stream through DataLoader workers).

    A view folder that ``--dataset KIND:PATH,options`` made (:mod:`harness.data.userfolder`) carries its options:
    its ``skip_corrupt`` applies, and ``meta["user_folder"]`` says which folder and value it stands for.
    """
    layout = "root/<domain>/<class>/*.jpg" if domain_level else "root/<class>/*.jpg"
    name = name or Path(path).name.lower()
    root = _require_dir(path, name, layout)
    view = read_view(root)
    skip_corrupt = skip_corrupt or bool(view.get("skip_corrupt"))
    exclude = [exclude] if isinstance(exclude, str) else list(exclude)  # one name is not a list of letters
    domain_dirs = _subdirs(root) if domain_level else [root]
    class_dirs = {d: _subdirs(d) for d in domain_dirs}
    names = {c.name for dirs in class_dirs.values() for c in dirs}
    excluded = sorted(n for n in names if any(fnmatch.fnmatchcase(n, pat) for pat in exclude))
    for pat in exclude:
        if not any(fnmatch.fnmatchcase(n, pat) for n in names):
            warnings.warn(f"{name}: exclude={pat!r} matches no class folder under {root}", stacklevel=2)
    classes = sorted(names - set(excluded))
    index = {c: i for i, c in enumerate(classes)}
    files, y, dom = [], [], []
    for di, d in enumerate(domain_dirs):
        for c in class_dirs[d]:
            if c.name in index:
                found = _files(c, IMAGE_EXTS)
                files += found
                y += [index[c.name]] * len(found)
                dom += [di] * len(found)
    _check_not_empty(root, classes, y, dom, domain_dirs if domain_level else None, exclude)
    extra: dict[str, Any] = {"excluded_classes": excluded} if exclude else {}
    if view:
        extra["user_folder"] = {k: view[k] for k in ("source", "value", "excluded", "unwrapped") if k in view}
    return image_dataset(
        name,
        root,
        files,
        y,
        classes,
        size=size,
        mode=mode,
        cache=cache,
        params={"layout": "imagefolder", "domain_level": domain_level, **({"exclude": exclude} if exclude else {})},
        domain=dom if domain_level else None,
        domain_names=[d.name for d in domain_dirs] if domain_level else None,
        meta={**(meta or {}), **extra},
        skip_corrupt=skip_corrupt,
        lazy=lazy,
    )


def _check_not_empty(
    root: Path, classes: list[str], y: list[int], dom: list[int], domain_dirs: list[Path] | None, exclude: list[str]
) -> None:
    """A class or domain folder without images would become a label with no samples: name it and say the fix."""
    exts = ", ".join(IMAGE_EXTS)
    has_class, has_domain = set(y), set(dom)
    for i, c in enumerate(classes):
        if i not in has_class:
            where = [d / c for d in (domain_dirs or [root]) if (d / c).is_dir()]
            shown = ", ".join(map(str, where))
            raise DataError(
                f"class folder {shown} holds no image files ({exts}); "
                f"remove it, or leave it out: exclude={(*exclude, c)!r} in Python, ,exclude={c} after the path "
                "of a --dataset value"
            )
    for i, d in enumerate(domain_dirs or []):
        if i not in has_domain:
            raise DataError(f"domain folder {d} holds no image files ({exts}) in any class folder; remove it")


def _codes(values: Any, column: str, where: Path) -> tuple[list[int], list[str]]:
    """Integer codes and value names for a metadata column: ints are used as they are, other values sorted."""
    import pandas as pd

    if pd.api.types.is_integer_dtype(values):
        if (values < 0).any():
            raise DataError(f"{where}: column {column!r} has negative values")
        n = int(values.max()) + 1 if len(values) else 0
        return values.astype(int).tolist(), [str(v) for v in range(n)]
    codes, uniques = pd.factorize(values, sort=True)
    return codes.tolist(), [str(u) for u in uniques]


def load_wilds(
    path: PathLike,
    size: Size = None,
    *,
    label_col: str = "y",
    split_col: str = "split",
    group_cols: Sequence[str] = ("place",),
    file_col: str = "img_filename",
    classes: Sequence[str] | None = None,
    split_names: Sequence[str] = ("train", "val", "test"),
    mode: str = "RGB",
    name: str | None = None,
    cache: bool = True,
    skip_corrupt: bool = False,
) -> ArrayDataset:
    """WILDS-style folder: ``metadata.csv`` (one row per image) plus the image files it names.

    Defaults match Waterbirds (``img_filename, y, split, place``). ``path`` may be the folder
    holding ``metadata.csv`` or its parent (as the WILDS tarball unpacks).
    Conventions: ``domain`` = the group attribute(s) combined (mixed radix over ``group_cols``),
    ``group = y * n_attr + attr`` with names like ``"y1_place0"``; ``meta["split"]`` holds the split
    code per sample (0 train, 1 val, 2 test) and ``meta["split_names"]`` the names, so
    ``ds.splits()`` returns ``{"train": Split, "val": Split, "test": Split}``.
    ``skip_corrupt`` drops undecodable images, as in :func:`image_dataset`.
    """
    import pandas as pd

    name = name or "wilds"
    root = _require_dir(path, name, "root/metadata.csv plus the image files it lists")
    csv = root / "metadata.csv"
    if not csv.is_file():
        below = sorted(root.glob("*/metadata.csv"))
        if not below:
            raise DataMissing(name, str(csv), "expected a WILDS folder with metadata.csv")
        csv, root = below[0], below[0].parent
    try:
        df = pd.read_csv(csv)
    except Exception as e:
        raise DataError(f"cannot read {csv}: {e}") from e
    missing = [c for c in (file_col, label_col, split_col, *group_cols) if c not in df.columns]
    if missing:
        raise DataError(f"{csv} lacks column(s) {missing}; it has {list(df.columns)}")
    files = [root / f for f in df[file_col]]
    absent = next((f for f in files if not f.is_file()), None)
    if absent is not None:
        raise DataError(f"{csv} lists {absent.relative_to(root)} but {absent} does not exist")

    y, label_names = _codes(df[label_col], label_col, csv)
    classes = list(classes) if classes is not None else label_names
    split, _ = _codes(df[split_col], split_col, csv)
    attr, attr_names = [0] * len(df), [""]
    for col in group_cols:  # mixed radix: attr = (a0 * n1 + a1) * n2 + a2 ...
        codes, values = _codes(df[col], col, csv)
        names = [f"{col}{v}" if v.isdigit() else f"{col}_{v}" for v in values]
        attr = [a * len(names) + c for a, c in zip(attr, codes)]
        attr_names = [f"{a}_{n}" if a else n for a in attr_names for n in names]
    grouped = bool(group_cols)
    n_attr = len(attr_names)
    return image_dataset(
        name,
        root,
        files,
        y,
        classes,
        size=size,
        mode=mode,
        cache=cache,
        params={"layout": "wilds", "cols": [label_col, split_col, *group_cols, file_col]},
        domain=attr if grouped else None,
        domain_names=attr_names if grouped else None,
        group=[yi * n_attr + a for yi, a in zip(y, attr)] if grouped else None,
        group_names=[f"y{yi}_{a}" for yi in range(len(classes)) for a in attr_names] if grouped else None,
        meta={
            "split": torch.tensor(split, dtype=torch.long),
            "split_names": list(split_names),
            "group_cols": list(group_cols),
        },
        skip_corrupt=skip_corrupt,
    )


def _find_class_root(root: Path, exts: tuple[str, ...], max_depth: int = 7) -> Path | None:
    """First folder (breadth-first) whose subfolders hold files with ``exts``: skips 2750/, ds/images/... wrappers."""
    queue = deque([(root, 0)])
    while queue:
        d, depth = queue.popleft()
        subs = _subdirs(d)
        for s in subs:
            if any(e.is_file() and e.name.lower().endswith(exts) for e in os.scandir(s)):
                return d
        if depth < max_depth:
            queue.extend((s, depth + 1) for s in subs)
    return None


def load_eurosat(
    path: PathLike,
    bands: str = "rgb",
    size: Size = None,
    *,
    name: str | None = None,
    cache: bool = True,
) -> ArrayDataset:
    """EuroSAT: ``bands="rgb"`` reads ``<Class>/*.jpg`` (as in ``2750/``), ``"ms"`` reads 13-band ``<Class>/*.tif``.

    Wrapper folders of the official archives (``2750/``, ``EuroSAT_RGB/``,
    ``ds/images/remote_sensing/otherDatasets/sentinel_2/tif/``) are found automatically.
    MS values are Sentinel-2 digital numbers divided by 10000 (reflectance) and clipped to [0, 1];
    ``meta["bands"]`` lists the band names in channel order.
    """
    if bands not in ("rgb", "ms"):
        raise ValueError(f"bands must be 'rgb' or 'ms', got {bands!r}")
    name = name or ("eurosat" if bands == "rgb" else "eurosat_ms")
    exts = (".jpg", ".jpeg", ".png") if bands == "rgb" else (".tif", ".tiff")
    root = _require_dir(path, name, f"<Class>/*{exts[0]} (e.g. 2750/AnnualCrop/AnnualCrop_1{exts[0]})")
    class_root = _find_class_root(root, exts)
    if class_root is None:
        raise DataMissing(name, str(root), f"no <Class>/*{exts[0]} folders found below it")
    classes = [c.name for c in _subdirs(class_root)]
    files, y = [], []
    for i, c in enumerate(_subdirs(class_root)):
        found = _files(c, exts)
        files += found
        y += [i] * len(found)
    if bands == "rgb":
        meta = {"bands": ["B04", "B03", "B02"]}
        return image_dataset(
            name, class_root, files, y, classes, size=size, cache=cache, params={"layout": "eurosat_rgb"}, meta=meta
        )

    def build() -> ArrayDataset:
        meta = {
            "source": str(class_root),
            "synthetic": False,
            "tier": "user",
            "size": size,
            "bands": S2_BANDS,
            "reflectance_scale": S2_SCALE,
        }
        x = read_tiffs(files, bands=len(S2_BANDS), scale=S2_SCALE, size=size)
        return ArrayDataset(x, torch.tensor(y), classes, name, meta=meta)

    return cached(name, {"size": size, "layout": "eurosat_ms"}, [class_root], build, enabled=cache)


# Semantic Shift Benchmark split files -----------------------------------------------------------


@dataclass(frozen=True)
class SSBSplit:
    """One SSB split file: the known (closed-set) classes and the unknown ones by difficulty."""

    name: str  # "cub", "scars", "aircraft", "imagenet_winter21", ...
    known_classes: list[Any]
    unknown_classes: dict[str, list[Any]]  # "Easy" / "Medium" / "Hard" -> classes
    source: str


class _ForbiddenPickle(pickle.UnpicklingError):
    """The pickle asks for something that could run code (a global or a persistent id)."""


class _PlainUnpickler(pickle.Unpickler):
    """Unpickler that refuses every global: only the opcodes for lists, dicts, tuples, sets,
    strings, bytes, numbers, bools and None remain, none of which can call anything."""

    def find_class(self, module: str, name: str) -> Any:
        raise _ForbiddenPickle(f"it references the global {module}.{name}")

    def persistent_load(self, pid: Any) -> Any:
        raise _ForbiddenPickle("it uses a persistent id")


def read_plain_pickle(path: PathLike) -> Any:
    """Unpickle a file that may only hold plain containers, strings and numbers; anything else is a DataError."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            return _PlainUnpickler(f).load()
    except _ForbiddenPickle as e:
        raise DataError(
            f"refusing to load {path}: {e}. Split files may hold only plain lists, dicts, strings and numbers; "
            "a global in a pickle can run arbitrary code, so it was not loaded"
        ) from e
    except (EOFError, pickle.UnpicklingError) as e:
        if isinstance(e, EOFError) or "truncated" in str(e) or "ran out of input" in str(e).lower():
            raise DataError(f"{path} is truncated or empty ({e}); download the split file again") from e
        raise DataError(f"{path} is not a readable pickle file ({e}); download the split file again") from e
    except (ValueError, TypeError, IndexError, KeyError, AttributeError, OverflowError) as e:
        raise DataError(f"{path} is not a readable pickle file: {e!r}") from e


def load_ssb_splits(path: PathLike) -> dict[str, SSBSplit]:
    """Read SSB ``*_osr_splits*.pkl`` files (one file or a folder of them), keyed by dataset name.

    Each file must be ``{"known_classes": [...], "unknown_classes": {"Easy": [...], ...}}``.
    Nothing in the file is ever executed: see :class:`_PlainUnpickler`.
    """
    path = Path(path)
    if path.is_dir():
        files = sorted(path.glob("*.pkl"))
    elif path.is_file():
        files = [path]
    else:
        files = []
    if not files:
        hint = "expected the SSB split files (*_osr_splits.pkl) from github.com/sgvaze/SSB"
        raise DataMissing("ssb_splits", str(path), hint)
    out = {}
    for f in files:
        obj = read_plain_pickle(f)
        known = obj.get("known_classes") if isinstance(obj, dict) else None
        unknown = obj.get("unknown_classes") if isinstance(obj, dict) else None
        if not isinstance(known, (list, tuple)) or not isinstance(unknown, dict):
            raise DataError(f"{f}: expected a dict with 'known_classes' (list) and 'unknown_classes' (dict)")
        name = f.stem.replace("_osr_splits", "")
        out[name] = SSBSplit(name, list(known), {str(k): list(v) for k, v in unknown.items()}, str(f))
    return out
