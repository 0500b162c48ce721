"""Suite definitions as plain modules (the pytest files in ``suites/`` are thin
wrappers). Each module exposes ``NAME``, ``DESCRIPTION``, ``BASELINE`` (the
method every other is compared with), ``PROTOCOL`` and
``case_specs(profile) -> list[CaseSpec]``; listing cases loads no data.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from harness.errors import UsageError

SUITES = {
    "losses": "harness.suites.losses",
    "shift": "harness.suites.shift",
}


def get_suite(name: str) -> ModuleType:
    if name not in SUITES:
        raise UsageError(f"unknown suite {name!r}; suites: {', '.join(SUITES)}")
    return importlib.import_module(SUITES[name])


def all_suites() -> list[ModuleType]:
    return [get_suite(n) for n in SUITES]
