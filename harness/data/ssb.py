"""Semantic Shift Benchmark class splits (Vaze et al., ICLR 2022) read from the SSB's json files and applied to
whatever classes a dataset has on disk.

The SSB repository (github.com/sgvaze/SSB) ships ``splits/{cub,aircraft,scars,imagenet}_ssb_splits.json``:
``{"known_classes": [...], "unknown_classes": {"Easy": [...], "Medium": [...], "Hard": [...]}}`` with 0-based
class ids (CUB's 1-200 minus one), plus ``known_unknown_pairs`` that this module does not need. "Hard" unknown
classes are the ones semantically closest to a known class.

A partial copy (the shared CUB holds classes 001-050) keeps the split's known and unknown classes that are present
and records the rest as missing, so the same code gives the full SSB case on the full dataset.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from harness.data.layouts import SSBSplit
from harness.data.paths import real_path
from harness.errors import DataError, DataMissing

# where the json files sit under $HARNESS_DATA/SSB_splits (the SSB repository's own layout), then flat
SEARCH = ("SSB/splits", "splits", ".")


def read_ssb_json(path: str | Path) -> SSBSplit:
    """One ``<name>_ssb_splits.json`` as an :class:`SSBSplit`; a malformed or self-contradicting file is a DataError."""
    path = Path(path)
    try:
        obj = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DataMissing("ssb_splits", str(path), "expected the SSB split files (github.com/sgvaze/SSB)") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise DataError(f"{path} is not valid json: {e}") from None
    known = obj.get("known_classes") if isinstance(obj, dict) else None
    unknown = obj.get("unknown_classes") if isinstance(obj, dict) else None
    if not isinstance(known, list) or not isinstance(unknown, dict) or \
            not all(isinstance(v, list) for v in unknown.values()):
        raise DataError(f"{path}: expected 'known_classes' (a list) and 'unknown_classes' (a dict of lists)")
    seen: dict[object, str] = {c: "known" for c in known}
    if len(seen) != len(known):
        raise DataError(f"{path}: 'known_classes' lists a class twice")
    for level, classes in unknown.items():
        for c in classes:
            if c in seen:
                raise DataError(f"{path}: class {c!r} is both {seen[c]} and unknown {level!r}")
            seen[c] = f"unknown {level!r}"
    name = path.name.removesuffix(".json").removesuffix("_ssb_splits")
    return SSBSplit(name, list(known), {str(k): list(v) for k, v in unknown.items()}, str(path))


def find_ssb_split(name: str, root: str | Path | None = None) -> SSBSplit:
    """The SSB split ``name`` ("cub", "aircraft", "scars", "imagenet") under ``<root or $HARNESS_DATA>/SSB_splits``."""
    base = real_path("ssb_splits", "SSB_splits", root)
    for sub in SEARCH:
        candidate = base / sub / f"{name}_ssb_splits.json"
        if candidate.is_file():
            return read_ssb_json(candidate)
    raise DataMissing("ssb_splits", str(base / SEARCH[0] / f"{name}_ssb_splits.json"),
                      "expected the SSB repository's splits/*.json files (github.com/sgvaze/SSB)")


@dataclass(frozen=True)
class AppliedSplit:
    """An SSB split restricted to the classes present: what a case trains on and tests against."""

    known: list[int]
    unknown: dict[str, list[int]]  # difficulty -> present unknown classes, in the split file's order
    missing_known: int
    missing_unknown: dict[str, int]

    def describe(self) -> dict:
        return {"known": self.known, "unknown": self.unknown, "missing_known": self.missing_known,
                "missing_unknown": self.missing_unknown}


def apply_ssb_split(split: SSBSplit, present: Iterable[int]) -> AppliedSplit:
    """Keep the split's classes that are ``present`` (in the file's order). Needs at least two known classes and one
    unknown class on disk, else a DataError that says what was found."""
    have = set(present)
    known = [c for c in split.known_classes if c in have]
    unknown = {level: [c for c in classes if c in have] for level, classes in split.unknown_classes.items()}
    if len(known) < 2 or not any(unknown.values()):
        raise DataError(f"SSB split {split.name} ({split.source}) leaves {len(known)} known and "
                        f"{sum(map(len, unknown.values()))} unknown classes among the {len(have)} classes on disk; "
                        "an open-set case needs at least 2 known and 1 unknown")
    return AppliedSplit(known, unknown, len(split.known_classes) - len(known),
                        {level: len(split.unknown_classes[level]) - len(unknown[level]) for level in unknown})


def split_digest(split: SSBSplit) -> str:
    """sha256 (16 hex) of the split's class lists, independent of the file's formatting."""
    blob = json.dumps({"known": split.known_classes, "unknown": split.unknown_classes}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]
