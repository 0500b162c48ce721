"""Where data and decoded caches live: ``$HARNESS_DATA`` and ``$HARNESS_CACHE``."""

from __future__ import annotations

import os
from pathlib import Path

from harness.errors import DataError, DataMissing


def data_root() -> Path | None:
    """The real-data folder from ``$HARNESS_DATA``, or None when unset."""
    value = os.environ.get("HARNESS_DATA", "").strip()
    return Path(value).expanduser() if value else None


def cache_root() -> Path:
    """Decoded-tensor cache: ``$HARNESS_CACHE``, default ``~/.cache/harness``.

    Refuses a cache inside the data folder: data folders may be read-only (CI's is)
    and must stay byte-identical to what their users downloaded.
    """
    value = os.environ.get("HARNESS_CACHE", "").strip()
    root = Path(value).expanduser() if value else Path.home() / ".cache" / "harness"
    data = data_root()
    if data is not None:
        r, d = root.resolve(), data.resolve()
        if r == d or d in r.parents:
            raise DataError(
                f"HARNESS_CACHE ({root}) is inside HARNESS_DATA ({data}); the data folder must stay untouched "
                "(it may be read-only). Point HARNESS_CACHE somewhere else, e.g. ~/.cache/harness."
            )
    return root


def fix_hint(name: str, rel: str) -> str:
    """How to make a missing real dataset appear (shown in skips and errors)."""
    return (
        f"set HARNESS_DATA to the folder that holds {rel} "
        f"(or pass root=...), or run `python -m harness data fetch {name}`"
    )


def real_path(name: str, rel: str, root: str | os.PathLike[str] | None = None) -> Path:
    """``<root or $HARNESS_DATA>/<rel>`` if it exists, else :class:`DataMissing` with the fix."""
    base = Path(root) if root is not None else data_root()
    if base is None:
        raise DataMissing(name, "$HARNESS_DATA (unset)", fix_hint(name, rel))
    path = base / rel
    if not path.exists():
        raise DataMissing(name, str(path), fix_hint(name, rel))
    return path
