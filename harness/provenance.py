"""What code made a record: digests of the method, the protocol and the suite.

A record's task ``fingerprint`` says *what* was run (case parameters, budget,
suite version). Its ``code`` field says *with which code*, as three digests of
source files (:func:`harness.protocols.store.source_digest`, sha256 of the
bytes):

* ``method``: the files of every class in the method's MRO up to
  :class:`harness.method.Method` (its own file and ``harness/method.py``,
  whose default loss and train step every method inherits);
* ``protocol``: the protocol's module and every ``harness.protocols`` module it
  imports, transitively (``kit.py`` for all of them);
* ``suite``: the suite's module (cases, metrics, findings) and the module of
  the case's builder when that lives elsewhere.

Any edit to those files, comments included, makes the records they produced
stale: ``leaderboard --check`` lists them and ``python -m harness regenerate
--stale`` re-runs them. Code outside these files (data loaders, models,
metrics helpers) is covered by the unit tests, not by the fingerprint.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import sys
from functools import cache
from pathlib import Path
from types import ModuleType
from typing import Any

CODE_PARTS = ("method", "protocol", "suite")


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


def method_files(cls: type) -> list[Path]:
    """Source files of the method class and its bases (``object`` and torch bases excluded)."""
    files: list[Path] = []
    for klass in cls.__mro__:
        if klass.__module__ in ("builtins",) or klass.__module__.startswith("torch"):
            continue
        path = _class_file(klass)
        if path is not None and path not in files:
            files.append(path)
    return files


def _protocol_imports(module: ModuleType) -> list[str]:
    """``harness.protocols.*`` modules imported by ``module`` (read with ast, nothing run)."""
    path = _file(module)
    if path is None:
        return []
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            base = node.module if node.level == 0 else f"harness.protocols.{node.module}"
            if base.startswith("harness.protocols.") or base == "harness.protocols":
                names += [f"{base}.{a.name}" if base == "harness.protocols" else base for a in node.names]
        elif isinstance(node, ast.Import):
            names += [a.name for a in node.names if a.name.startswith("harness.protocols.")]
    return [n for n in names if n.count(".") == 2]


@cache
def protocol_files(protocol: str) -> tuple[Path, ...]:
    """The protocol function's module and the protocol modules it imports, transitively, sorted."""
    from harness.protocols import get_protocol

    fn = get_protocol(protocol)
    todo, seen, files = [fn.__module__], set(), set()
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        try:
            module = importlib.import_module(name)
        except ImportError:  # a name imported from the package __init__, not a module
            continue
        files.add(_file(module))
        todo += _protocol_imports(module)
    return tuple(sorted(p for p in files if p is not None))


def suite_files(spec: Any) -> list[Path]:
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


def code_files(method_cls: type, spec: Any) -> dict[str, list[Path]]:
    """The files each digest covers; a suite built in memory (no file) covers none."""
    return {"method": method_files(method_cls), "protocol": list(protocol_files(spec.protocol)),
            "suite": suite_files(spec)}


def code_versions(method_cls: type, spec: Any) -> dict[str, str]:
    """``{"method": digest, "protocol": digest, "suite": digest}`` for a record of ``spec`` run by ``method_cls``."""
    from harness.protocols.store import source_digest

    return {part: source_digest(*files) for part, files in code_files(method_cls, spec).items()}


def stale_parts(record: dict, current: dict[str, str]) -> list[str]:
    """Names of the code parts that differ from ``current``; every part when the record has no ``code``."""
    recorded = record.get("code") or {}
    return [part for part in CODE_PARTS if recorded.get(part) != current.get(part)]
