"""``--dataset KIND:PATH[,option...]``: a user's folder, checked and made into what the suites read.

Kinds: ``imagefolder`` (the imagefolder suite, and the open-set suite with its default split), ``openset``,
``eurosat``, ``eurosat_ms``; any other kind is handed on unchanged (a third-party suite's). Options follow the
path, comma-separated:

* ``exclude=PATTERN`` (repeatable): leave out the class folders whose name matches (``fnmatch``; ``exclude=_*``);
* ``name=NAME``: the case's name part (``imagefolder-NAME-<6 hex>``) instead of the folder's own name;
* ``skip_corrupt``: files that fail to decode are dropped and listed in the record (``run.data.skipped_files``)
  instead of failing the case;
* ``known=N|FILE``, ``seed=S``: the ``openset`` kind's own (handed on).

Before any image is decoded (only folder names and file names are read) the folder is checked:

* a **wrapper** (a folder whose only subfolder holds the class folders, as ``Images/<class>/...``) is unwrapped,
  and the case keeps the name of the folder the user named;
* **one class**, a class folder **without images** and a class **too small** for the suite's split are errors that
  name the folder and the option that fixes it;
* an ``exclude`` pattern that matches no class folder is an error (a typo would otherwise keep the clutter).

When options are given, a wrapper was unwrapped or class folders are symbolic links, the suites get a **view**
instead of the folder: ``$HARNESS_CACHE/views/<key>/<name>/<class>/...``, one symbolic link per image file (nothing
is copied) plus ``.harness-view.json`` (the source folder, the value given, the classes left out, whether to skip
corrupt files). A case's fingerprint lists the view's files through the links (names, sizes, modification times of
the user's files), so a record made from other files is stale; :func:`harness.data.layouts.load_imagefolder`
reads ``skip_corrupt`` from the view. A plain folder is handed on as given, so its case keeps its name.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from filelock import FileLock

from harness.data.decode import IMAGE_EXTS
from harness.data.paths import cache_root
from harness.errors import UsageError

KINDS = ("imagefolder", "openset", "eurosat", "eurosat_ms")
OPTIONS = ("exclude", "name", "skip_corrupt")
PASSED_ON = {"openset": ("known", "seed")}  # a kind's own options, handed on to its suite as they are
EXTS = {"eurosat": (".jpg", ".jpeg", ".png"), "eurosat_ms": (".tif", ".tiff")}
# the fewest images a class needs: the imagefolder suite's train/val/test split (its value is read by the open-set
# suite too, whose train/test split needs 2); EuroSAT folders go to probes with their own split
MIN_PER_CLASS = {"imagefolder": 3, "openset": 2, "eurosat": 1, "eurosat_ms": 1}
MAX_WRAPPERS = 8
VIEW_FILE = ".harness-view.json"
_NAME = re.compile(r"^[A-Za-z0-9_-]+$")


@dataclass(frozen=True)
class DatasetValue:
    """One parsed ``--dataset`` value."""

    raw: str
    kind: str
    path: Path  # as given, expanded
    exclude: tuple[str, ...] = ()
    name: str | None = None
    skip_corrupt: bool = False
    passed_on: tuple[str, ...] = ()  # "known=6", "seed=1"

    @property
    def has_options(self) -> bool:
        return bool(self.exclude or self.name or self.skip_corrupt)


@dataclass
class ClassFolder:
    name: str
    path: Path
    images: int
    linked: bool  # the folder, or a folder inside it, is a symbolic link


@dataclass
class FolderPlan:
    """What the checks found: the folder holding the class folders, the classes kept and what was left out."""

    source: Path  # the folder the user named, resolved
    root: Path  # the folder whose subfolders are the classes (``source`` unless wrappers were unwrapped)
    classes: list[ClassFolder] = field(default_factory=list)
    excluded: list[str] = field(default_factory=list)
    unwrapped: list[str] = field(default_factory=list)  # wrapper folder names, outermost first

    @property
    def linked(self) -> bool:
        return any(c.linked for c in self.classes)


def parse(value: str) -> DatasetValue | None:
    """``KIND:PATH[,option...]`` -> its parts; None for a kind this module does not know (handed on as given).

    A path may hold commas: the longest comma-separated prefix that is a folder is the path, the rest options.
    """
    kind, sep, rest = value.partition(":")
    if not sep or kind not in KINDS:
        return None
    parts = rest.split(",")
    cut = next((i for i in range(len(parts), 0, -1) if Path(",".join(parts[:i])).expanduser().is_dir()), None)
    if cut is None:
        shown = parts[0] if len(parts) > 1 and all(_looks_like_option(p) for p in parts[1:]) else rest
        raise UsageError(f"--dataset {value!r}: {shown} is not a folder")
    path = Path(",".join(parts[:cut])).expanduser()
    exclude: list[str] = []
    name, skip, passed = None, False, []
    for option in parts[cut:]:
        key, has_value, arg = option.partition("=")
        key = key.strip()
        if key in PASSED_ON.get(kind, ()):
            passed.append(option)
        elif key == "exclude" and arg:
            exclude.append(arg)
        elif key == "name" and arg:
            if not _NAME.match(arg):
                raise UsageError(f"--dataset {value!r}: name={arg!r} may hold only letters, digits, '-' and '_'")
            name = arg
        elif key == "skip_corrupt" and arg.lower() in ("", "1", "true", "yes", "on", "0", "false", "no", "off"):
            skip = arg.lower() in ("", "1", "true", "yes", "on")
        else:
            known = [*OPTIONS, *PASSED_ON.get(kind, ())]
            raise UsageError(f"--dataset {value!r}: unknown option {option!r}; {kind}: takes "
                             + ", ".join(f"{k}=..." if k != "skip_corrupt" else k for k in known)
                             + " (e.g. imagefolder:PATH,exclude=clutter,name=pets,skip_corrupt)")
    return DatasetValue(value, kind, path, tuple(exclude), name, skip, tuple(passed))


def _looks_like_option(text: str) -> bool:
    return bool(re.match(r"^[A-Za-z_]+(=.*)?$", text))


def _walk(top: Path) -> Iterator[tuple[str, list[str], list[str], bool]]:
    """``os.walk`` following symbolic links, each real folder once (a link loop ends), hidden entries skipped;
    yields (dirpath, dirnames, filenames, whether dirpath is or lies under a link)."""
    seen: set[str] = set()
    linked_under: list[str] = []
    for dirpath, dirnames, filenames in os.walk(top, followlinks=True):
        real = os.path.realpath(dirpath)
        if real in seen:
            dirnames[:] = []
            continue
        seen.add(real)
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        is_link = os.path.islink(dirpath) or any(dirpath.startswith(p + os.sep) for p in linked_under)
        if os.path.islink(dirpath):
            linked_under.append(dirpath)
        yield dirpath, dirnames, sorted(f for f in filenames if not f.startswith(".")), is_link


def image_files(folder: Path, exts: tuple[str, ...] = IMAGE_EXTS) -> list[Path]:
    """Image files under ``folder`` by extension (none opened), following symbolic links, sorted."""
    return [Path(d, f) for d, _, files, _ in _walk(folder) for f in files if f.lower().endswith(exts)]


def _subdirs(path: Path) -> list[Path]:
    return sorted(p for p in path.iterdir() if p.is_dir() and not p.name.startswith("."))


def _holds_images(path: Path, exts: tuple[str, ...]) -> bool:
    return any(f.lower().endswith(exts) for _, _, files, _ in _walk(path) for f in files)


def _direct_images(path: Path, exts: tuple[str, ...]) -> int:
    return sum(1 for p in path.iterdir() if p.is_file() and p.name.lower().endswith(exts))


def _option_hint(value: DatasetValue, extra: str) -> str:
    sep = "," if value.raw else ""
    return f"{value.raw}{sep}{extra}"


def check_folder(value: DatasetValue) -> FolderPlan:
    """The folder-level checks (module docstring), reading names only; the plan, or a UsageError saying the fix."""
    exts = EXTS.get(value.kind, IMAGE_EXTS)
    source = value.path.resolve()
    plan = FolderPlan(source, source)

    used: set[str] = set()

    def excluded(name: str) -> bool:
        hits = {pat for pat in value.exclude if fnmatch.fnmatchcase(name, pat)}
        used.update(hits)
        return bool(hits)

    for _ in range(MAX_WRAPPERS):  # Images/<class>/..., ds/images/.../tif/<class>/...: one folder holding the classes
        subs = _subdirs(plan.root)
        dirs = [d for d in subs if not excluded(d.name)]
        if len(dirs) == 1 and not _direct_images(plan.root, exts) and not _direct_images(dirs[0], exts) \
                and any(_holds_images(s, exts) for s in _subdirs(dirs[0])):
            plan.excluded += [d.name for d in subs if d not in dirs]  # a clutter folder beside the wrapper
            plan.unwrapped.append(dirs[0].name)
            plan.root = dirs[0]
            continue
        break
    found = _subdirs(plan.root)
    plan.excluded += [d.name for d in found if excluded(d.name)]
    unused = [pat for pat in value.exclude if pat not in used]
    if unused:
        names = ", ".join(d.name for d in found) or "none"
        raise UsageError(f"--dataset {value.raw!r}: exclude={unused[0]!r} matches no class folder of {plan.root} "
                         f"(class folders: {names})")
    for d in found:
        if d.name in plan.excluded:
            continue
        files, linked = 0, False
        for _, _, filenames, is_link in _walk(d):
            files += sum(1 for f in filenames if f.lower().endswith(exts))
            linked = linked or is_link
        plan.classes.append(ClassFolder(d.name, d, files, linked))
    _check_classes(value, plan, exts)
    return plan


def _check_classes(value: DatasetValue, plan: FolderPlan, exts: tuple[str, ...]) -> None:
    where = f"--dataset {value.raw!r}"
    kinds = ", ".join(exts)
    if not plan.classes:
        loose = _direct_images(plan.root, exts)
        raise UsageError(f"{where}: {plan.root} holds no class folders" + (
            f" ({loose} images lie in it directly): put each class's images in a subfolder named after the class"
            if loose else f": expected {plan.root}/<class>/ folders of images ({kinds})"))
    empty = [c.name for c in plan.classes if c.images == 0]
    if empty:
        raise UsageError(f"{where}: class folder(s) {', '.join(empty)} of {plan.root} hold no image files ({kinds}); "
                         f"leave them out with {_option_hint(value, ','.join(f'exclude={n}' for n in empty))}")
    if len(plan.classes) == 1:
        (only,) = plan.classes
        inner = [d.name for d in _subdirs(only.path) if _holds_images(d, exts)]
        hint = (f"; its subfolders {', '.join(inner[:5])} hold images: if they are the classes, pass "
                f"{value.kind}:{only.path}" if inner else
                "; a classification case needs a folder with one subfolder per class")
        raise UsageError(f"{where}: {plan.root} has one class folder ({only.name}, {only.images} images){hint}")
    need = MIN_PER_CLASS[value.kind]
    tiny = [c for c in plan.classes if c.images < need]
    if tiny:
        listed = ", ".join(f"{c.name} ({c.images} image{'s' * (c.images != 1)})" for c in tiny)
        raise UsageError(f"{where}: class folder(s) {listed} of {plan.root} are too small: the {value.kind} split "
                         f"needs at least {need} images per class; add images, or leave them out with "
                         f"{_option_hint(value, ','.join(f'exclude={c.name}' for c in tiny))}")


def views_root() -> Path:
    return cache_root() / "views"


def view_manifest(value: DatasetValue, plan: FolderPlan) -> dict[str, Any]:
    return {"source": str(plan.source), "root": str(plan.root), "value": value.raw, "kind": value.kind,
            "classes": [c.name for c in plan.classes], "excluded": plan.excluded, "unwrapped": plan.unwrapped,
            "skip_corrupt": value.skip_corrupt}


def make_view(value: DatasetValue, plan: FolderPlan) -> Path:
    """The view folder of a value (module docstring), brought in line with the user's files; its path."""
    name = value.name or plan.source.name or "root"
    manifest = view_manifest(value, plan)
    key_of = {k: manifest[k] for k in ("source", "root", "excluded", "skip_corrupt")}
    exts = EXTS.get(value.kind, IMAGE_EXTS)
    key = hashlib.sha256(json.dumps({**key_of, "name": name, "exts": exts}, sort_keys=True).encode())
    folder = views_root() / key.hexdigest()[:12]
    view = folder / name
    want: dict[str, str] = {}
    for c in plan.classes:
        for f in image_files(c.path, exts):
            want[os.path.join(c.name, os.path.relpath(f, c.path))] = os.path.abspath(f)
    folder.mkdir(parents=True, exist_ok=True)
    with FileLock(str(folder.with_name(f".{folder.name}.lock"))):  # pytest-xdist workers prepare it at once
        _sync_links(view, want)
        text = json.dumps(manifest, indent=2, sort_keys=True) + "\n"
        target = view / VIEW_FILE
        if not target.is_file() or target.read_text(encoding="utf-8") != text:  # unchanged: its mtime stays
            target.write_text(text, encoding="utf-8")
    return view


def _sync_links(view: Path, want: dict[str, str]) -> None:
    """Make ``view`` hold exactly one link per entry of ``want`` (relative path -> target) and nothing else."""
    view.mkdir(parents=True, exist_ok=True)
    for dirpath, dirnames, filenames in os.walk(view, topdown=False):
        for f in filenames:
            full = os.path.join(dirpath, f)
            rel = os.path.relpath(full, view)
            if rel == VIEW_FILE:
                continue
            if not os.path.islink(full) or os.readlink(full) != want.get(rel):
                os.unlink(full)
        for d in dirnames:
            full = os.path.join(dirpath, d)
            if os.path.islink(full):
                os.unlink(full)
            elif not os.listdir(full):
                os.rmdir(full)
    for rel, target in want.items():
        link = view / rel
        if not os.path.islink(link):
            link.parent.mkdir(parents=True, exist_ok=True)
            os.symlink(target, link)


def read_view(root: Path) -> dict[str, Any]:
    """The manifest of a view folder (empty for any other folder)."""
    path = Path(root) / VIEW_FILE
    if not path.is_file():
        return {}
    try:
        found = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return found if isinstance(found, dict) else {}


@dataclass(frozen=True)
class Prepared:
    value: str  # what the suites read
    notes: tuple[str, ...] = ()


def prepare(value: str) -> Prepared:
    """Check a ``--dataset`` value's folder and hand the suites the value they read: the value as given for a plain
    folder, else ``KIND:VIEW[,known=...]`` (module docstring). Raises UsageError with the fix."""
    parsed = parse(value)
    if parsed is None:
        return Prepared(value)
    plan = check_folder(parsed)
    notes = []
    if plan.unwrapped:
        notes.append(f"--dataset {value}: the classes are in {plan.root} (unwrapped {'/'.join(plan.unwrapped)}/); "
                     f"{len(plan.classes)} classes: {', '.join(c.name for c in plan.classes[:12])}"
                     + (", ..." if len(plan.classes) > 12 else ""))
    if plan.excluded:
        notes.append(f"--dataset {value}: left out {', '.join(plan.excluded)}")
    if not (parsed.has_options or plan.unwrapped or plan.linked):
        return Prepared(value, tuple(notes))
    view = make_view(parsed, plan)
    return Prepared(",".join([f"{parsed.kind}:{view}", *parsed.passed_on]), tuple(notes))


def prepare_all(values: list[str]) -> tuple[list[str], list[str]]:
    """:func:`prepare` for every value: (the values the suites read, the notes to show)."""
    out, notes = [], []
    for value in values:
        done = prepare(value)
        out.append(done.value)
        notes += done.notes
    return out, notes
