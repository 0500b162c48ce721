"""Decode once: datasets cached as safetensors files under :func:`cache_root`.

The key is a hash of the loader's parameters plus the source file listing
(relative paths, sizes, mtimes), so editing, adding or removing a file rebuilds
the entry. Files are safetensors (no pickle: a cache file can't run code), written
to a temp file and moved into place with ``os.replace`` so a crash never leaves a
half-written entry. Each file records a checksum of its tensors and the dataset's
content fingerprint; a file that fails to parse or verify is deleted and rebuilt.

Loaders build images as uint8; the cache stores them as built and they stay uint8
in memory (4x smaller than float32, and no conversion on a warm load). Protocols
convert per batch on the device (``harness.data.dataset.to_float``).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import secrets
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import save_file
from torch import Tensor

from harness.data.dataset import ArrayDataset, tensor_digest
from harness.data.paths import cache_root

FORMAT = "2"  # bump when the stored layout, a loader's decoding or the fingerprint definition changes (2: uint8 kept)
_FIELDS = ("x", "y", "domain", "group")


def source_listing(sources: Sequence[str | os.PathLike[str]]) -> list[tuple[str, int, int]]:
    """(relative path, size, mtime_ns) of every file under the sources, sorted, symbolic links to folders
    followed; no file is opened."""
    rows: list[tuple[str, int, int]] = []
    for src in map(Path, sources):
        if src.is_file():
            st = src.stat()
            rows.append((src.name, st.st_size, st.st_mtime_ns))
            continue
        skip = len(str(src.parent).rstrip("/")) + 1  # cheaper than os.path.relpath per file
        seen: set[str] = set()  # symbolic links to folders are followed (their files are the data), each folder once
        for dirpath, dirnames, filenames in os.walk(src, followlinks=True):
            real = os.path.realpath(dirpath)
            if real in seen:
                dirnames[:] = []
                continue
            seen.add(real)
            dirnames.sort()
            for fname in sorted(filenames):
                full = os.path.join(dirpath, fname)
                st = os.stat(full)
                rows.append((full[skip:], st.st_size, st.st_mtime_ns))
    return rows


def _hash(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()


def finalize(ds: ArrayDataset) -> ArrayDataset:
    """Labels -> int64 and default meta, in place; images keep their dtype (uint8 stays uint8). Returns ``ds``."""
    if ds.y.dtype != torch.long:
        ds.y = ds.y.long()
    ds.meta.setdefault("synthetic", False)
    return ds


def _pack(ds: ArrayDataset) -> tuple[dict[str, Tensor], dict[str, Any]]:
    tensors = {k: getattr(ds, k).contiguous() for k in _FIELDS if getattr(ds, k) is not None}
    meta = {}
    for k, v in ds.meta.items():
        if isinstance(v, Tensor):
            tensors[f"meta.{k}"] = v.contiguous()
        else:
            meta[k] = v
    header = {
        "name": ds.name,
        "classes": ds.classes,
        "domain_names": ds.domain_names,
        "group_names": ds.group_names,
        "meta": meta,
    }
    return tensors, header


def _read(path: Path) -> ArrayDataset:
    with safe_open(str(path), framework="pt") as f:
        md = f.metadata() or {}
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    if md.get("format") != FORMAT:
        raise ValueError(f"cache format {md.get('format')!r}, expected {FORMAT!r}")
    keys = sorted(tensors)
    if json.loads(md["keys"]) != keys or md["checksum"] != tensor_digest(*(tensors[k] for k in keys)):
        raise ValueError("checksum mismatch")
    header = json.loads(md["header"])
    meta = header["meta"]
    meta.update({k[5:]: v for k, v in tensors.items() if k.startswith("meta.")})
    ds = ArrayDataset(
        x=tensors["x"],
        y=tensors["y"],
        classes=header["classes"],
        name=header["name"],
        domain=tensors.get("domain"),
        domain_names=header["domain_names"],
        group=tensors.get("group"),
        group_names=header["group_names"],
        meta=meta,
    )
    finalize(ds)
    ds._fingerprint = md["fingerprint"]
    return ds


def _write(path: Path, tensors: dict[str, Tensor], header: dict[str, Any], fingerprint: str) -> None:
    keys = sorted(tensors)
    md = {
        "format": FORMAT,
        "keys": json.dumps(keys),
        "checksum": tensor_digest(*(tensors[k] for k in keys)),
        "fingerprint": fingerprint,
        "header": json.dumps(header),
    }
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        save_file(tensors, str(tmp), metadata=md)
        os.replace(tmp, path)
    except Exception as e:  # a read-only or full cache disk costs speed, not correctness
        warnings.warn(f"could not write dataset cache {path}: {e}", stacklevel=3)
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)


def cached(
    name: str,
    params: dict[str, Any],
    sources: Sequence[str | os.PathLike[str]],
    build: Callable[[], ArrayDataset],
    *,
    enabled: bool = True,
) -> ArrayDataset:
    """Return ``build()`` finalized, from the cache when an entry for (params, source listing) exists."""
    if not enabled:
        return finalize(build())
    # the source folders' own location is a parameter too, so two copies never evict each other's entries
    where = [str(Path(s).resolve()) for s in sources]
    phash = _hash({"name": name, "params": params, "format": FORMAT, "sources": where})[:16]
    lhash = _hash(source_listing(sources))[:16]
    folder = cache_root() / "datasets"
    path = folder / f"{name}-{phash}-{lhash}.safetensors"
    if path.exists():
        try:
            return _read(path)
        except Exception as e:  # any unreadable entry is rebuilt, never fatal
            warnings.warn(f"dataset cache {path} is corrupt ({e}); rebuilding it", stacklevel=2)
            with contextlib.suppress(OSError):
                path.unlink(missing_ok=True)
    raw = build()
    tensors, header = _pack(raw)  # keeps the uint8 tensors before finalize swaps in floats
    header = json.loads(json.dumps(header, default=str))
    # cold and warm loads must return identical meta, so tuples become lists here too
    raw.meta = {**header["meta"], **{k[5:]: v for k, v in tensors.items() if k.startswith("meta.")}}
    ds = finalize(raw)
    _write(path, tensors, header, ds.fingerprint)
    for stale in folder.glob(f"{name}-{phash}-*.safetensors"):  # older listings of the same source
        if stale != path:
            with contextlib.suppress(OSError):
                stale.unlink(missing_ok=True)
    return ds
