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


# top-level folders of the datasets the harness knows, to tell a wrong HARNESS_DATA from one missing set
KNOWN_FOLDERS = ("PACS", "RSSCN7", "USPS", "MNIST", "CIFAR-10", "CUB_200_2011", "SSB_splits", "EuroSAT", "EuroSAT_MS",
                 "waterbirds")


def check_data_root(base: Path, from_env: bool) -> None:
    """A clear error when the data folder itself is wrong: a file, unreadable, or holding nothing known."""
    what = f"HARNESS_DATA={base}" if from_env else f"root={base}"
    if base.exists() and not base.is_dir():
        raise DataError(f"{what} is a file, not a folder; point it at the folder that holds PACS/, RSSCN7/, ...")
    if base.is_dir():
        try:
            entries = {p.name for p in base.iterdir()}
        except OSError as err:
            raise DataError(f"{what} cannot be read ({err.strerror}); check its permissions") from None
        if from_env and not entries & set(KNOWN_FOLDERS):
            raise DataMissing("datasets", str(base), f"{what} holds none of the folders the harness knows "
                              f"({', '.join(KNOWN_FOLDERS)}); is it the right folder?")


def real_path(name: str, rel: str, root: str | os.PathLike[str] | None = None) -> Path:
    """``<root or $HARNESS_DATA>/<rel>`` if it exists, else :class:`DataMissing` with the fix."""
    base = Path(root) if root is not None else data_root()
    if base is None:
        raise DataMissing(name, "$HARNESS_DATA (unset)", fix_hint(name, rel))
    path = base / rel
    try:
        exists = path.exists()
    except OSError:
        exists = False
    if not exists:
        check_data_root(base, from_env=root is None)
        raise DataMissing(name, str(path), fix_hint(name, rel))
    return path
