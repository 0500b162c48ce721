"""Protocols: how a suite uses a method. Each is a plain function
``(task, method, ctx: RunContext) -> SeedResult`` registered under its name
with :func:`register_protocol`; the shared parts live in :mod:`harness.protocols.kit`.

Built-in protocols are imported lazily by name, so a suite only pays for the protocol it runs.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable

from harness.errors import UsageError
from harness.protocols.kit import RunContext, SeedResult

_BUILTIN = {
    "supervised": "harness.protocols.supervised:run_supervised",
    "openset": "harness.protocols.openset:run_openset",
    "unlearn": "harness.protocols.unlearn:run_unlearn",
    "pretrain": "harness.protocols.pretrain:run_pretrain",
    "probe": "harness.protocols.probe:run_probe",
}
_RUNNERS: dict[str, Callable] = {}


def register_protocol(name: str) -> Callable[[Callable], Callable]:
    """Decorator for a third-party protocol function."""

    def wrap(fn: Callable) -> Callable:
        _RUNNERS[name] = fn
        return fn

    return wrap


def get_protocol(name: str) -> Callable:
    if name not in _RUNNERS:
        target = _BUILTIN.get(name)
        if target is None:
            raise UsageError(f"unknown protocol {name!r}; protocols: {', '.join(sorted({*_BUILTIN, *_RUNNERS}))}")
        module, _, attr = target.partition(":")
        try:
            _RUNNERS[name] = getattr(importlib.import_module(module), attr)
        except (ImportError, AttributeError) as err:
            raise UsageError(f"protocol {name!r} is not available: {err}") from err
    return _RUNNERS[name]


__all__ = ["RunContext", "SeedResult", "get_protocol", "register_protocol"]
