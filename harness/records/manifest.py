"""The verified state of ``results/``: ``results/.verified.json``, committed beside the records.

For every record and evidence file under ``results/`` it holds the file's sha256 and the commit at which
``python -m harness verify --changed --update-manifest`` verified it (plus, for a re-executed record, the step and
reference times re-measured then: the leaderboard marks those times as re-measured); for every record deliberately
deleted, the reason (``removed``). ``verify --changed`` compares the working tree with it, not with git history,
so a change is looked at however many commits follow it (:mod:`harness.checks.verify`).

What counts as changed is decided against the base commit (``verify --base``, the merge-base with origin/main, else
HEAD~1): a file whose bytes the base commit already held is no change, whatever the manifest says of it; an entry
for any other file must be the base commit's manifest entry too, or the record is verified again. A base commit
with no manifest at all is the state before manifests existed: its records are where the manifest starts. Deleting
the manifest itself is refused.

Only regular files count: a symlink or any other kind of entry under ``results/`` is refused (it could point at a
file verify never reads), as is a path outside ``results/``.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
from pathlib import Path
from typing import Any

from harness.errors import RecordError

MANIFEST_NAME = ".verified.json"
MANIFEST_VERSION = 1
RECORD_SUFFIXES = (".json", ".npz")


def manifest_path(results_dir: Path) -> Path:
    return Path(results_dir) / MANIFEST_NAME


def empty_manifest() -> dict[str, Any]:
    return {"version": MANIFEST_VERSION, "files": {}, "removed": {}}


def read_manifest(results_dir: Path) -> dict[str, Any]:
    """The committed manifest, or an empty one when there is none yet (every record is then new)."""
    return parse_manifest(manifest_path(results_dir).read_text(encoding="utf-8")) \
        if manifest_path(results_dir).is_file() else empty_manifest()


def parse_manifest(text: str | None) -> dict[str, Any]:
    """A manifest from its JSON text (None: none, so empty); a malformed one is a RecordError."""
    if not text:
        return empty_manifest()
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        raise RecordError(f"{MANIFEST_NAME}: not valid JSON ({err})") from None
    if not isinstance(data, dict) or data.get("version") != MANIFEST_VERSION \
            or not isinstance(data.get("files"), dict) or not isinstance(data.get("removed"), dict):
        raise RecordError(f"{MANIFEST_NAME}: not a version {MANIFEST_VERSION} manifest (files, removed)")
    return data


def write_manifest(results_dir: Path, manifest: dict[str, Any]) -> Path:
    path = manifest_path(results_dir)
    ordered = {**manifest, "files": dict(sorted(manifest["files"].items())),
               "removed": dict(sorted(manifest["removed"].items()))}
    path.write_text(json.dumps(ordered, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    return path


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def scan_results(results_dir: Path) -> tuple[dict[str, str], list[str]]:
    """(sha256 of every record and evidence file under ``results_dir`` by its relative POSIX path, one line per
    entry refused). Symlinks (to files or folders) and non-regular files are refused, never followed; hidden files
    (lock files, the manifest) are not records."""
    root = Path(results_dir)
    digests, refused = {}, []
    for folder, dirs, files in os.walk(root):
        for name in sorted(dirs + files):
            path = Path(folder) / name
            rel = path.relative_to(root).as_posix()
            mode = path.lstat().st_mode
            if stat.S_ISLNK(mode):
                refused.append(f"{path}: a symlink under results/ (to {os.readlink(path)}): records must be regular "
                               "files in the repository")
            elif stat.S_ISDIR(mode) or name.startswith("."):
                continue
            elif not stat.S_ISREG(mode):
                refused.append(f"{path}: not a regular file: records must be regular files")
            elif path.suffix in RECORD_SUFFIXES:
                digests[rel] = file_sha256(path)
        dirs[:] = [d for d in dirs if not (Path(folder) / d).is_symlink()]  # never walk into a linked folder
    return digests, refused
