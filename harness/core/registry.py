"""Method registry: one decorator, lazy discovery, fnmatch listing.

Built-in methods live one per file under ``baselines/<family>/``. They are found
by reading each file's ``@register_method("name")`` decorator with ``ast``, so
``python -m harness list`` imports nothing heavy and a broken method breaks only
its own entry (lm-evaluation-harness style). Third-party packages register
through the ``harness.methods`` entry-point group; ``--method-module path.py``
loads a single file.
"""

from __future__ import annotations

import ast
import difflib
import fnmatch
import importlib
import importlib.util
import re
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness.core.digest import REPO
from harness.errors import HarnessError, UsageError

if TYPE_CHECKING:
    from harness.core.method import Method

BASELINES_DIR = REPO / "baselines"
ENTRY_POINT_GROUP = "harness.methods"
# One pattern for every method name: it becomes a record file name, a leaderboard row and a CLI value, so no
# spaces, no upper case (``My-Loss`` and ``my-loss`` would share a file on case-insensitive disks), no underscore
# (``my_loss`` and ``my loss`` slugged to one file) and no leading dot (a hidden record file).
NAME_PATTERN = re.compile(r"^[a-z0-9][a-z0-9-]*$")


def check_method_name(name: object, where: str) -> str:
    """``name`` when it matches :data:`NAME_PATTERN`, else a one-line usage error naming ``where`` it came from."""
    if isinstance(name, str) and NAME_PATTERN.match(name):
        return name
    hint = re.sub(r"[^a-z0-9-]+", "-", str(name).lower()).strip("-.") or "my-method"
    raise UsageError(f"method name {name!r} ({where}) is not allowed: use lower-case letters, digits and '-', "
                     f"starting with a letter or digit (pattern {NAME_PATTERN.pattern}), e.g. {hint!r}")


def _where(target: str) -> str:
    """Where a ``module:Class`` target lives, as a file when the module is imported or is under baselines/."""
    import sys

    module = target.partition(":")[0]
    file = getattr(sys.modules.get(module), "__file__", None)
    if file is None and module.startswith("baselines."):
        file = str(BASELINES_DIR.parent / (module.replace(".", "/") + ".py"))
    return f"{target} ({file})" if file else target


def _duplicate(name: str, old: str, new: str) -> UsageError:
    return UsageError(f"method {name!r} is registered twice: by {_where(old)} and by {_where(new)}; every method "
                      "needs its own name, so rename one (records and leaderboard rows are keyed by name)")


@dataclass
class MethodEntry:
    name: str
    target: str  # "module:Class", imported on first use
    family: str = "?"
    protocols: tuple[str, ...] = ()
    source: str = "builtin"
    cls: type | None = field(default=None, repr=False)

    def load(self) -> type[Method]:
        if self.cls is None:
            module_name, _, attr = self.target.partition(":")
            try:
                module = importlib.import_module(module_name)
            except HarnessError:  # a bad or duplicate name in the file: already one clear line
                raise
            except Exception as err:  # a broken method breaks only its own entry, with a clear message
                raise UsageError(f"method {self.name!r} ({self.target}) failed to import: {err!r}") from err
            # importing runs the decorator, which fills in self.cls
            self.cls = _METHODS[self.name].cls or getattr(module, attr)
        return self.cls


_METHODS: dict[str, MethodEntry] = {}
_discovered = False


def register_method(name: str) -> Callable[[type], type]:
    """Class decorator: ``@register_method("ensloss")``.

    The name must match :data:`NAME_PATTERN`; a name another class (in this or another file, built-in or not)
    already holds is a usage error, never a silent replacement.
    """
    check_method_name(name, "register_method")

    def wrap(cls: type) -> type:
        target = f"{cls.__module__}:{cls.__qualname__}"
        discover()  # built-in names first, so a user file cannot silently shadow one
        old = _METHODS.get(name)
        if old is not None and old.target != target:
            raise _duplicate(name, old.target, target)
        cls.name = name
        source = old.source if old is not None and old.target == target else "decorator"
        _METHODS[name] = MethodEntry(
            name, target, getattr(cls, "family", "?"), tuple(sorted(getattr(cls, "protocols", ()))), source, cls
        )
        return cls

    return wrap


def _literal(node: ast.AST) -> Any:
    try:
        return ast.literal_eval(node)
    except ValueError:
        if isinstance(node, ast.Call) and node.args:  # frozenset({...}) / set([...])
            return _literal(node.args[0])
        return None


def _scan_file(path: Path, module: str) -> list[MethodEntry]:
    """Read registrations from a method file without importing it."""
    try:
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    except SyntaxError as err:
        warnings.warn(f"skipping {path}: {err}", stacklevel=2)
        return []
    found = []
    for node in tree.body:
        if not isinstance(node, ast.ClassDef):
            continue
        for deco in node.decorator_list:
            if (
                isinstance(deco, ast.Call)
                and getattr(deco.func, "id", getattr(deco.func, "attr", "")) == "register_method"
                and deco.args
                and isinstance(deco.args[0], ast.Constant)
            ):
                attrs = {}
                for stmt in node.body:
                    if isinstance(stmt, ast.Assign):
                        for tgt in stmt.targets:
                            if isinstance(tgt, ast.Name):
                                attrs[tgt.id] = stmt.value
                            elif isinstance(tgt, ast.Tuple) and isinstance(stmt.value, ast.Tuple):
                                for t, v in zip(tgt.elts, stmt.value.elts):
                                    if isinstance(t, ast.Name):
                                        attrs[t.id] = v
                family = _literal(attrs["family"]) if "family" in attrs else "?"
                protocols = _literal(attrs["protocols"]) if "protocols" in attrs else ()
                found.append(
                    MethodEntry(deco.args[0].value, f"{module}:{node.name}", family, tuple(sorted(protocols or ())))
                )
    return found


def discover() -> None:
    """Populate the registry from baselines/ and entry points (idempotent, imports nothing).

    A name that breaks :data:`NAME_PATTERN` or that two files register is a usage error, raised again on every
    later call (the registry is never left half-trusted).
    """
    global _discovered
    if _discovered:
        return
    _discovered = True
    try:
        _discover()
    except HarnessError:
        _discovered = False
        raise


def _discover() -> None:
    for path in sorted(BASELINES_DIR.glob("*/*.py")):
        if path.name.startswith("_"):
            continue
        module = f"baselines.{path.parent.name}.{path.stem}"
        for entry in _scan_file(path, module):
            check_method_name(entry.name, str(path))
            old = _METHODS.setdefault(entry.name, entry)
            if old.target != entry.target:
                raise _duplicate(entry.name, old.target, entry.target)
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        dist = ep.dist.name if ep.dist else "?"
        check_method_name(ep.name, f"entry point of {dist}")
        old = _METHODS.get(ep.name)
        if old is None:
            _METHODS[ep.name] = MethodEntry(ep.name, ep.value, source=f"entry point ({dist})")
        elif old.target != ep.value:
            raise _duplicate(ep.name, old.target, ep.value)


def load_method_module(path: str | Path) -> list[str]:
    """Import a single method file (``--method-module``); returns the names it registered."""
    path = Path(path)
    if not path.is_file():
        raise UsageError(f"--method-module: no such file {path}")
    spec = importlib.util.spec_from_file_location(f"harness_user_methods.{path.stem}", path)
    if spec is None or spec.loader is None:
        raise UsageError(f"--method-module {path}: not a Python file (expected a .py file)")
    module = importlib.util.module_from_spec(spec)
    discover()
    try:
        spec.loader.exec_module(module)
    except HarnessError:  # a bad or duplicate method name: already one clear line
        raise
    except SyntaxError as err:
        raise UsageError(f"--method-module {path}: syntax error at line {err.lineno}: {err.msg}") from None
    except Exception as err:  # the module's own import-time failure, shown as one line
        raise UsageError(f"--method-module {path} failed to import: {type(err).__name__}: {err}") from None
    added = [n for n, e in _METHODS.items() if e.cls is not None and getattr(module, e.cls.__name__, None) is e.cls]
    for name in added:
        _METHODS[name].source = str(path)
    return added


def method_names(pattern: str = "*") -> list[str]:
    discover()
    return sorted(n for n in _METHODS if fnmatch.fnmatch(n, pattern))


def method_entries(pattern: str = "*") -> list[MethodEntry]:
    return [_METHODS[n] for n in method_names(pattern)]


def get_method_class(name: str) -> type[Method]:
    """Resolve a name to its class, or a usage error that lists names and suggests the nearest."""
    discover()
    entry = _METHODS.get(name)
    if entry is None:
        known = sorted(_METHODS)
        near = difflib.get_close_matches(name, known, n=3, cutoff=0.5)
        hint = f" Did you mean {' or '.join(repr(n) for n in near)}?" if near else ""
        raise UsageError(f"unknown method {name!r}.{hint} Registered methods: {', '.join(known)}")
    return entry.load()


def create_method(name: str, hparams: dict[str, Any] | None = None) -> Method:
    """The one factory users need, like ``timm.create_model``."""
    return get_method_class(name)(hparams)
