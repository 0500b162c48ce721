"""The one code digest: what code a record, a stored model or a cached output depends on.

A digest covers the *import closure* of some source files: the files themselves and every module of the
repository's ``harness`` and ``baselines`` packages they import, transitively, wherever the import
stands (module level or inside a function), together with the ``__init__.py`` of every package on the way
(Python runs it on import). Only ``if TYPE_CHECKING:`` blocks are left out: they never run.

A file is hashed as its normalised syntax tree (``ast.dump`` without docstrings, comments or positions), so
an edit to comments, docstrings or layout changes no digest; any other edit changes the digest of every
closure that holds the file. The data layer (``harness/data``) is not followed: what it loads is
fingerprinted by content in each record's ``data_fingerprint`` and in each data-cache key.

Reports (``harness/reporting``) are never imported by measured code (an import-linter contract), so they are in
no closure: rewording a finding stales nothing.
"""

from __future__ import annotations

import ast
import hashlib
import inspect
import sys
from collections.abc import Iterable
from functools import cache
from pathlib import Path
from types import ModuleType

REPO = Path(__file__).resolve().parents[2]
FOLLOWED = ("harness", "baselines")  # top-level packages whose imports a closure follows
NOT_FOLLOWED = ("harness.data",)  # fingerprinted by content instead


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
    """sha256 of one file as a digest sees it (normalised syntax for ``.py`` files)."""
    data = path.read_bytes() if path.is_file() else b"<no source>"
    return hashlib.sha256(_normalised(data) if path.suffix == ".py" else data).hexdigest()


def _label(path: Path, root: Path) -> str:
    try:
        return path.resolve().relative_to(root.resolve()).as_posix()
    except ValueError:
        return path.name


def files_digest(files: Iterable[Path], root: Path = REPO) -> str:
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


def _imports(tree: ast.AST) -> list[ast.Import | ast.ImportFrom]:
    """Every import statement that can run: module level, in functions, in ``try``/``if`` blocks; not under
    ``if TYPE_CHECKING:``."""
    found: list[ast.Import | ast.ImportFrom] = []
    todo: list[ast.AST] = [tree]
    while todo:
        node = todo.pop()
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            found.append(node)
            continue
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            todo += node.orelse
            continue
        todo += ast.iter_child_nodes(node)
    return found


def _with_packages(name: str) -> list[str]:
    """``a.b.c`` -> ``a``, ``a.b``, ``a.b.c``: importing a module runs its packages' ``__init__`` first."""
    parts = name.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts) + 1)]


@cache
def _import_nodes(source: bytes) -> tuple[tuple[int, str, tuple[str, ...]], ...]:
    """``(level, module, names)`` of each import in a source (``level`` -1 for ``import a.b``); cached by content,
    so an edited file is read anew."""
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError):
        return ()
    return tuple((-1, "", tuple(a.name for a in n.names)) if isinstance(n, ast.Import)
                 else (n.level, n.module or "", tuple(a.name for a in n.names)) for n in _imports(tree))


def imported_files(path: Path, root: Path = REPO) -> list[Path]:
    """Files under ``root`` of the followed modules ``path`` imports anywhere, with their packages' ``__init__``."""
    try:
        source = Path(path).read_bytes()
    except OSError:
        return []
    try:
        parts = list(Path(path).resolve().relative_to(root.resolve()).with_suffix("").parts)
    except ValueError:
        parts = []  # outside the repository: only absolute imports resolve
    package = parts[:-1]
    names: list[str] = [".".join(package)] if package else []  # the file's own package runs on its import
    for level, module, aliases in _import_nodes(source):
        if level == -1:
            names += list(aliases)
            continue
        if level:
            if not parts or level - 1 > len(package):
                continue
            base = ".".join([*package[:len(package) - level + 1], *([module] if module else [])])
        else:
            base = module
        for alias in aliases:  # ``from a import b``: the submodule a.b when it is one, else a itself
            sub = f"{base}.{alias}"
            names.append(sub if _module_file(sub, root) is not None else base)
    found: list[Path] = []
    for name in names:
        for module in _with_packages(name):
            if not _followed(module):
                continue
            file = _module_file(module, root)
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
        todo += imported_files(key, root)
    return tuple(sorted(seen))


def source_file(obj: object) -> Path | None:
    """The source file of a module, class or function; for a class loaded from a path outside ``sys.modules``
    (``--method-module``), the file its functions were compiled from; ``None`` for builtins."""
    if isinstance(obj, (str, Path)):
        return Path(obj)
    if isinstance(obj, type) and obj.__module__ not in sys.modules:
        code = next((v.__code__ for v in vars(obj).values() if hasattr(v, "__code__")), None)
        return Path(code.co_filename) if code is not None else None
    try:
        found = inspect.getsourcefile(obj)  # type: ignore[arg-type]
    except TypeError:
        return None
    return Path(found) if found else None


def closure_of(*parts: ModuleType | type | object | str | Path) -> tuple[Path, ...]:
    """The import closure of the files behind modules, classes, functions or paths."""
    files = [f for f in (source_file(p) for p in parts) if f is not None]
    return import_closure(files)


def code_digest(*parts: ModuleType | type | object | str | Path) -> str:
    """The digest (16 hex) of the import closure of ``parts``: the one code digest of records and stores."""
    return files_digest(closure_of(*parts))
