"""Git questions the checks ask: which commit to compare with, what changed since, what HEAD is.

Shared by the gate (:mod:`harness.checks.gate`) and verify (:mod:`harness.checks.verify`); every helper answers
``None`` (or nothing) outside a git checkout instead of raising, and the callers say what that means for them.
"""

from __future__ import annotations

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
