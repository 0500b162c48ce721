"""The dataset registry: ``@register_dataset`` loaders, ``load(name)``, cheap ``dataset_info()``."""

from __future__ import annotations

import difflib
import gzip
import inspect
import os
import struct
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.data.dataset import ArrayDataset
from harness.data.paths import data_root
from harness.errors import UsageError

TIERS = ("embedded", "real", "user")


@dataclass(frozen=True)
class DatasetInfo:
    name: str
    tier: str  # embedded | real | user
    found: bool
    path: str
    count: int | None  # samples (real sets: files counted without decoding); None = not counted
    synthetic: bool
    description: str


@dataclass
class _Entry:
    name: str
    fn: Callable[..., ArrayDataset]
    tier: str
    description: str
    synthetic: bool
    rel: str | None  # path under $HARNESS_DATA (real and user tiers)
    count: int | None  # fixed size of embedded sets with default arguments
    counter: Callable[[Path], int | None] | None  # cheap sample count for real sets


_DATASETS: dict[str, _Entry] = {}


def register_dataset(
    name: str,
    *,
    tier: str,
    description: str,
    synthetic: bool = False,
    rel: str | None = None,
    count: int | None = None,
    counter: Callable[[Path], int | None] | None = None,
) -> Callable[[Callable[..., ArrayDataset]], Callable[..., ArrayDataset]]:
    """Function decorator: ``@register_dataset("pacs", tier="real", rel="PACS", ...)``."""
    if tier not in TIERS:
        raise ValueError(f"tier must be one of {TIERS}, got {tier!r}")
    if synthetic and "SYNTHETIC" not in description:
        description = f"SYNTHETIC: {description}"  # every listing must say so

    def wrap(fn: Callable[..., ArrayDataset]) -> Callable[..., ArrayDataset]:
        _DATASETS[name] = _Entry(name, fn, tier, description, synthetic, rel, count, counter)
        return fn

    return wrap


def dataset_names() -> list[str]:
    return sorted(_DATASETS)


def _entry(name: str) -> _Entry:
    if name not in _DATASETS:
        close = difflib.get_close_matches(name, _DATASETS, n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise UsageError(f"unknown dataset {name!r}{hint} (known: {', '.join(dataset_names())})")
    return _DATASETS[name]


def load(name: str, **kwargs: Any) -> ArrayDataset:
    """Load a registered dataset by name; kwargs go to its loader (e.g. ``size=32``, ``seed=1``, ``root=...``)."""
    entry = _entry(name)
    sig = inspect.signature(entry.fn)
    try:
        sig.bind(**kwargs)
    except TypeError as e:
        raise UsageError(f"dataset {name!r}: {e}; accepted arguments: {', '.join(sig.parameters)}") from e
    ds = entry.fn(**kwargs)
    ds.meta.setdefault("tier", entry.tier)
    ds.meta.setdefault("synthetic", entry.synthetic)
    return ds


def dataset_info(check: bool = True) -> list[DatasetInfo]:
    """One row per registered dataset. Never decodes anything.

    Real and user sets are looked up under ``$HARNESS_DATA``; with ``check`` their samples
    are counted from directory listings or file headers, without ``check`` only existence is tested.
    """
    root = data_root()
    rows = []
    for e in (_DATASETS[n] for n in dataset_names()):
        if e.tier == "embedded":
            rows.append(DatasetInfo(e.name, e.tier, True, "embedded", e.count, e.synthetic, e.description))
            continue
        path = root / e.rel if root is not None and e.rel else None
        try:
            found = path is not None and path.exists()
        except OSError:  # an unreadable HARNESS_DATA lists as missing; loading says why
            found = False
        count = None
        if check and found and e.counter is not None:
            try:
                count = e.counter(path)
            except Exception:  # a listing must never crash on a broken file; load() names it
                count = None
        shown = str(path) if path is not None else f"$HARNESS_DATA/{e.rel} (HARNESS_DATA unset)"
        rows.append(DatasetInfo(e.name, e.tier, found, shown, count, e.synthetic, e.description))
    return rows


# cheap counters for dataset_info ---------------------------------------------------------------


def count_files(path: Path, exts: tuple[str, ...]) -> int:
    """Files with the given extensions under ``path`` (directory entries only, nothing opened)."""
    n = 0
    for _, _, files in os.walk(path):
        n += sum(1 for f in files if f.lower().endswith(exts) and not f.startswith("."))
    return n


def idx_count(path: Path) -> int:
    """Number of items in an idx(.gz) file, from its 8-byte header."""
    with gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb") as f:
        return struct.unpack(">I", f.read(8)[4:8])[0]
