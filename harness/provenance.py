"""What code made a record: digests of the method, the protocol and the suite.

A record's task ``fingerprint`` says *what* was run (case parameters, budget,
suite version). Its ``code`` field says *with which code*, as three digests
(:func:`code_digest`) of source files and the files they import:

* ``method``: the files of every class in the method's MRO up to
  :class:`harness.method.Method`;
* ``protocol``: the protocol function's module;
* ``suite``: the suite's module (cases, metrics, findings) and the module of
  the case's builder when that lives elsewhere;

each followed through its imports inside ``baselines/`` and ``harness/``,
transitively (:func:`import_closure`): ``baselines/dg/udim.py`` imports
``baselines/dg/sam.py``, so editing ``sam.py`` makes udim's records stale.
The data layer (``harness/data/``) is not followed: what it loads is in each
record's ``data_fingerprint`` and its code is the unit tests' job.

A file is hashed as its normalised syntax tree (``ast.dump`` with docstrings
removed, no line numbers), so an edit to comments, docstrings or layout stales
nothing; any other edit makes the records of every part whose files include it
stale: ``leaderboard --check`` lists them and ``python -m harness regenerate
--stale`` re-runs them.
"""

from __future__ import annotations

import ast
import hashlib
import importlib
import inspect
import sys
from collections.abc import Iterable
from functools import cache
from pathlib import Path
from typing import Any

CODE_PARTS = ("method", "protocol", "suite")
REPO = Path(__file__).resolve().parent.parent
FOLLOWED = ("harness", "baselines")  # top-level packages whose imports the fingerprint follows
NOT_FOLLOWED = ("harness.data",)  # covered by the record's data_fingerprint instead


def _file(obj: object) -> Path | None:
    try:
        found = inspect.getsourcefile(obj)  # type: ignore[arg-type]
    except TypeError:  # builtins
        return None
    return Path(found) if found else None


def _class_file(klass: type) -> Path | None:
    """A class's source file; for a module loaded from a path outside ``sys.modules`` (``--method-module``),
    the file its functions were compiled from."""
    path = _file(klass) if klass.__module__ in sys.modules else None
    if path is None:
        code = next((v.__code__ for v in vars(klass).values() if hasattr(v, "__code__")), None)
        path = Path(code.co_filename) if code is not None else None
    return path


def _strip_docstrings(tree: ast.AST) -> ast.AST:
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) \
                    and isinstance(body[0].value.value, str):
                node.body = body[1:] or [ast.Pass()]
    return tree


@cache
def _normalised(source: bytes) -> bytes:
    """The syntax tree of a Python source without docstrings, comments or positions; the raw bytes when it does
    not parse (a broken file still changes the digest)."""
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError):
        return source
    return ast.dump(_strip_docstrings(tree)).encode()


def file_digest(path: Path) -> str:
    """sha256 of one file as :func:`code_digest` sees it (normalised syntax for ``.py`` files)."""
    data = path.read_bytes() if path.is_file() else b"<no source>"
    return hashlib.sha256(_normalised(data) if path.suffix == ".py" else data).hexdigest()


def _label(path: Path, root: Path) -> str:
    try:
        return path.resolve().relative_to(root.resolve()).as_posix()
    except ValueError:
        return path.name


def code_digest(files: Iterable[Path], root: Path = REPO) -> str:
    """sha256 (16 hex) over files (path relative to ``root`` and :func:`file_digest`), order-independent."""
    h = hashlib.sha256()
    for label, path in sorted({_label(p, root): p for p in files}.items()):
        h.update(label.encode() + b"\0" + file_digest(path).encode() + b"\n")
    return h.hexdigest()[:16]


def _module_file(name: str, root: Path) -> Path | None:
    """The file of module ``name`` under ``root`` (``a/b.py`` or ``a/b/__init__.py``), if any."""
    base = root.joinpath(*name.split("."))
    for path in (base.with_suffix(".py"), base / "__init__.py"):
        if path.is_file():
            return path
    return None


def _followed(name: str) -> bool:
    top = name.partition(".")[0]
    return top in FOLLOWED and not any(name == n or name.startswith(n + ".") for n in NOT_FOLLOWED)


def _module_level_imports(body: list[ast.stmt]) -> list[ast.Import | ast.ImportFrom]:
    """Imports run when the module loads: its body and module-level ``try``/``if`` blocks, not function bodies
    (lazy imports there reach the harness's machinery, not the computation) nor ``if TYPE_CHECKING:``."""
    found: list[ast.Import | ast.ImportFrom] = []
    for node in body:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            found.append(node)
        elif isinstance(node, ast.If):
            if "TYPE_CHECKING" not in ast.unparse(node.test):
                found += _module_level_imports(node.body)
            found += _module_level_imports(node.orelse)
        elif isinstance(node, ast.Try):
            for block in (node.body, node.orelse, node.finalbody, *(h.body for h in node.handlers)):
                found += _module_level_imports(block)
    return found


def imported_files(path: Path, root: Path = REPO) -> list[Path]:
    """Files under ``root`` of the followed modules that ``path`` imports when it loads (read with ast)."""
    try:
        tree = ast.parse(path.read_bytes())
    except (OSError, SyntaxError, ValueError):
        return []
    try:
        parts = list(path.resolve().relative_to(root.resolve()).with_suffix("").parts)
    except ValueError:
        parts = []  # outside the repository: only absolute imports resolve
    package = parts[:-1] if parts and parts[-1] != "__init__" else parts[:-1]
    names: list[str] = []
    for node in _module_level_imports(tree.body):
        if isinstance(node, ast.Import):
            names += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                if not parts or node.level - 1 > len(package):
                    continue
                stem = package[:len(package) - node.level + 1]
                base = ".".join([*stem, *([node.module] if node.module else [])])
            else:
                base = node.module or ""
            for alias in node.names:  # ``from a import b``: the submodule a.b when it is one, else a itself
                sub = f"{base}.{alias.name}"
                names.append(sub if _module_file(sub, root) is not None else base)
    found: list[Path] = []
    for name in names:
        if not _followed(name):
            continue
        file = _module_file(name, root)
        if file is not None and file not in found:
            found.append(file)
    return found


def import_closure(files: Iterable[Path], root: Path = REPO) -> tuple[Path, ...]:
    """``files`` and every followed file they import, transitively, sorted."""
    todo = [Path(p) for p in files]
    seen: set[Path] = set()
    while todo:
        path = todo.pop()
        key = path.resolve()
        if key in seen:
            continue
        seen.add(key)
        todo += imported_files(path, root)
    return tuple(sorted(seen))


def method_roots(cls: type) -> list[Path]:
    """Source files of the method class and its bases (``object`` and torch bases excluded)."""
    files: list[Path] = []
    for klass in cls.__mro__:
        if klass.__module__ in ("builtins",) or klass.__module__.startswith("torch"):
            continue
        path = _class_file(klass)
        if path is not None and path not in files:
            files.append(path)
    return files


def method_files(cls: type) -> tuple[Path, ...]:
    """The files the method digest covers: its classes' files and what they import."""
    return import_closure(method_roots(cls))


@cache
def protocol_files(protocol: str) -> tuple[Path, ...]:
    """The protocol function's module and the followed modules it imports, transitively, sorted."""
    from harness.protocols import get_protocol

    path = _file(sys.modules.get(get_protocol(protocol).__module__) or importlib.import_module(
        get_protocol(protocol).__module__))
    return import_closure([path] if path is not None else [])


def suite_roots(spec: Any) -> list[Path]:
    """The suite module of a case spec (when registered) and the module its builder lives in."""
    from harness.suites import get_suite, is_suite

    modules = [get_suite(spec.suite)] if is_suite(spec.suite) else []
    modules.append(sys.modules.get(spec.build.__module__))
    files: list[Path] = []
    for module in modules:
        path = _file(module) if module is not None else None
        if path is not None and path not in files:
            files.append(path)
    return files


def suite_files(spec: Any) -> tuple[Path, ...]:
    return import_closure(suite_roots(spec))


def code_files(method_cls: type, spec: Any) -> dict[str, tuple[Path, ...]]:
    """The files each digest covers; a suite built in memory (no file) covers none."""
    return {"method": method_files(method_cls), "protocol": protocol_files(spec.protocol),
            "suite": suite_files(spec)}


def code_versions(method_cls: type, spec: Any) -> dict[str, str]:
    """``{"method": digest, "protocol": digest, "suite": digest}`` for a record of ``spec`` run by ``method_cls``."""
    return {part: code_digest(files) for part, files in code_files(method_cls, spec).items()}


def stale_parts(record: dict, current: dict[str, str]) -> list[str]:
    """Names of the code parts that differ from ``current``; every part when the record has no ``code`` (or one
    in a form this version does not read)."""
    recorded = record.get("code")
    if not isinstance(recorded, dict):
        recorded = {}
    return [part for part in CODE_PARTS if recorded.get(part) != current.get(part)]
