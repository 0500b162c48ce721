"""Protocols: how a suite uses a method. Each is a plain function
``(task, method, ctx: RunContext) -> SeedResult`` registered under its name with :func:`register_protocol`;
the shared parts live in :mod:`harness.protocols.kit`.

Protocols are discovered like suites: the ``@register_protocol("name")`` decorators of the modules in this
package are read with ``ast`` (nothing imported), and third-party packages add protocols through the
``harness.protocols`` entry-point group (``name = "module:function"``). A module is imported only when its
protocol is first asked for, so a suite pays only for the protocol it runs. A name claimed twice is an error.
"""

from __future__ import annotations

import ast
import importlib
from collections.abc import Callable
from functools import cache
from importlib.metadata import entry_points
from pathlib import Path

from harness.errors import UsageError
from harness.protocols.kit import RunContext, SeedResult

ENTRY_POINT_GROUP = "harness.protocols"
_RUNNERS: dict[str, Callable] = {}


def _declared(path: Path) -> list[str]:
    """Names given to ``register_protocol`` decorators in one module's source."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    return [d.args[0].value for node in ast.walk(tree) if isinstance(node, ast.FunctionDef)
            for d in node.decorator_list
            if isinstance(d, ast.Call) and getattr(d.func, "id", None) == "register_protocol"
            and d.args and isinstance(d.args[0], ast.Constant)]


@cache
def discovered() -> dict[str, str]:
    """``{protocol name: module}`` of the built-in protocols, and ``module:function`` of the entry points."""
    found: dict[str, str] = {}

    def claim(name: str, where: str) -> None:
        if name in found and found[name] != where:
            raise UsageError(f"protocol {name!r} is registered twice: by {found[name]} and by {where}")
        found[name] = where

    for path in sorted(Path(__file__).parent.glob("*.py")):
        for name in _declared(path):
            claim(name, f"harness.protocols.{path.stem}")
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        claim(ep.name, ep.value)
    return found


def register_protocol(name: str) -> Callable[[Callable], Callable]:
    """Decorator for a protocol function; a second function under a taken name is a usage error."""

    def wrap(fn: Callable) -> Callable:
        held = _RUNNERS.get(name)
        if held is not None and (held.__module__, held.__qualname__) != (fn.__module__, fn.__qualname__):
            raise UsageError(f"protocol {name!r} is registered twice: by {held.__module__}.{held.__qualname__} "
                             f"and by {fn.__module__}.{fn.__qualname__}")
        _RUNNERS[name] = fn
        return fn

    return wrap


def get_protocol(name: str) -> Callable:
    if name not in _RUNNERS:
        target = discovered().get(name)
        if target is None:
            raise UsageError(f"unknown protocol {name!r}; protocols: {', '.join(sorted({*discovered(), *_RUNNERS}))}")
        module, _, attr = target.partition(":")
        try:
            loaded = importlib.import_module(module)
            if attr and name not in _RUNNERS:  # an entry point's plain function
                register_protocol(name)(getattr(loaded, attr))
        except (ImportError, AttributeError) as err:
            raise UsageError(f"protocol {name!r} is not available: {err}") from err
        if name not in _RUNNERS:
            raise UsageError(f"protocol {name!r}: {module} did not register it")
    return _RUNNERS[name]


__all__ = ["RunContext", "SeedResult", "discovered", "get_protocol", "register_protocol"]
