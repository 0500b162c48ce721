"""Git questions asked of the records: which commit to compare with, what changed since, what HEAD is, and what
a file held at each commit that changed it.

Shared by the gate (:mod:`harness.checks.gate`), verify (:mod:`harness.checks.verify`) and the history report
(:mod:`harness.reporting.history`); every helper answers ``None`` (or nothing) outside a git checkout instead of
raising, and the callers say what that means for them.
"""

from __future__ import annotations

import fnmatch
import hashlib
import subprocess
from pathlib import Path

from harness.core.digest import REPO
from harness.errors import UsageError


def git(repo: Path, *args: str) -> str | None:
    """``git <args>`` in ``repo``: its stripped stdout, or None when git fails or is absent."""
    try:
        out = subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def head(repo: Path = REPO) -> str:
    """HEAD's commit, or "" outside a git checkout."""
    return git(repo, "rev-parse", "HEAD") or ""


def resolve_base(ref: str, repo: Path = REPO) -> str | None:
    """The commit to diff against; None when there is none (not a git checkout, or a single commit)."""
    if git(repo, "rev-parse", "--git-dir") is None:
        return None
    if ref != "auto":
        found = git(repo, "rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}")
        if found is None:
            raise UsageError(f"--base {ref!r} is not a commit in {repo}")
        return found
    current = git(repo, "rev-parse", "--verify", "--quiet", "HEAD^{commit}")
    if git(repo, "rev-parse", "--verify", "--quiet", "origin/main") is not None:
        base = git(repo, "merge-base", "HEAD", "origin/main")
        if base is not None and base != current:  # a branch: everything it adds to main
            return base
    # a clone of main itself (CI's case: HEAD is origin/main): the last commit, not an empty diff
    return git(repo, "rev-parse", "--verify", "--quiet", "HEAD~1^{commit}")


def changed_files(base: str, repo: Path = REPO) -> list[str]:
    """Paths (relative to the repository) that differ from ``base`` in the working tree, plus untracked files."""
    diff = git(repo, "diff", "--name-only", base) or ""
    untracked = git(repo, "ls-files", "--others", "--exclude-standard") or ""
    return sorted({line for line in (diff + "\n" + untracked).splitlines() if line.strip()})


def blob_id(data: bytes) -> str:
    """The git object id of a file's bytes (what ``git hash-object`` prints)."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def tree_blobs(repo: Path, commit: str, folder: Path) -> dict[str, str]:
    """``{path relative to folder: git object id}`` of every file under ``folder`` at ``commit`` (empty when git
    cannot say)."""
    try:
        rel = Path(folder).resolve().relative_to(Path(repo).resolve()).as_posix()
    except ValueError:
        return {}
    listing = git(repo, "ls-tree", "-r", "--full-tree", commit, "--", rel) or ""
    blobs = {}
    for line in listing.splitlines():
        meta, _, path = line.partition("\t")
        parts = meta.split()
        if len(parts) == 3 and parts[1] == "blob":
            blobs[path[len(rel) + 1:]] = parts[2]
    return blobs


def file_versions(folder: str, pattern: str, repo: Path = REPO) -> list[tuple[str, str, dict[str, bytes]]]:
    """(commit, ISO date, {path: bytes}) for every commit that changed a file under ``folder`` whose path matches
    ``pattern`` (fnmatch), oldest first, with the content of every matching file at that commit; empty outside a
    checkout. Each distinct blob is read once, all through one ``git cat-file --batch``."""
    log = git(repo, "log", "--reverse", "--format=%H %cI", "--", folder)
    versions, previous = [], None
    for line in (log or "").splitlines():
        commit, date = line.split(" ", 1)
        listing = (git(repo, "ls-tree", "-r", commit, "--", folder) or "").splitlines()
        blobs = {name: meta.split()[2] for meta, name in (row.split("\t", 1) for row in listing)
                 if fnmatch.fnmatch(name, pattern)}
        if blobs and blobs != previous:
            versions.append((commit, date, blobs))
            previous = blobs
    wanted = sorted({blob for _, _, blobs in versions for blob in blobs.values()})
    if not wanted:
        return []
    try:
        raw = subprocess.run(["git", "cat-file", "--batch"], cwd=repo, input="\n".join(wanted).encode() + b"\n",
                             capture_output=True, timeout=300, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    content, at = {}, 0
    for blob in wanted:  # "<sha> blob <size>\n<bytes>\n" per object, in the order asked
        header_end = raw.index(b"\n", at)
        size = int(raw[at:header_end].split()[2])
        content[blob] = raw[header_end + 1:header_end + 1 + size]
        at = header_end + 1 + size + 1
    return [(commit, date, {name: content[blob] for name, blob in blobs.items()}) for commit, date, blobs in versions]
