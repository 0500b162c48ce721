"""What code made a record: the digests of its method, protocol and suite.

A record's task ``fingerprint`` says *what* was run (case parameters, budget, suite version). Its ``code``
field says *with which code*, as three digests from :func:`harness.core.digest.code_digest` (the one
code digest, also behind every store key):

* ``method``: the files of every class in the method's MRO, and their import closure;
* ``protocol``: the protocol function's module and its import closure (the step engine, the kit, ...);
* ``suite``: the suite module (cases only: findings and descriptions live in :mod:`harness.reporting`),
  the module of the case's builder when that lives elsewhere and what the suite's ``code_roots(spec)`` adds
  (a probe of an SSL encoder: the SSL method and protocol that trained it), with their closures.

``baselines/dg/udim.py`` imports ``baselines/dg/sam.py``, so editing ``sam.py`` makes udim's records stale;
editing a finding's wording stales nothing. Whether a record is current is answered in one place,
:mod:`harness.records.currency`.
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from typing import Any

from harness.core.digest import closure_of, files_digest, source_file
from harness.protocols import get_protocol
from harness.suites import get_suite, is_suite

CODE_PARTS = ("method", "protocol", "suite")


def method_roots(cls: type) -> list[Path]:
    """Source files of the method class and its bases (``object`` and torch bases excluded)."""
    files: list[Path] = []
    for klass in cls.__mro__:
        if klass.__module__ in ("builtins",) or klass.__module__.startswith("torch"):
            continue
        path = source_file(klass)
        if path is not None and path not in files:
            files.append(path)
    return files


def method_files(cls: type) -> tuple[Path, ...]:
    """The files the method digest covers: its classes' files and what they import."""
    return closure_of(*method_roots(cls))


def protocol_files(protocol: str) -> tuple[Path, ...]:
    """The protocol function's module and the followed modules it imports, transitively, sorted."""
    name = get_protocol(protocol).__module__
    return closure_of(sys.modules.get(name) or importlib.import_module(name))


def _roots(obj: Any) -> list[Path]:
    """Source files of a module, a module name or a class (with its bases, as a method's)."""
    if isinstance(obj, str):
        obj = sys.modules.get(obj) or importlib.import_module(obj)
    if isinstance(obj, type):
        return method_roots(obj)
    path = source_file(obj) if obj is not None else None
    return [] if path is None else [path]


def suite_roots(spec: Any) -> list[Path]:
    """The suite module of a case spec (when registered), the module its builder lives in, and what the suite's
    ``code_roots(spec)`` names beyond them (remote sensing: the SSL method and protocol that trained an encoder)."""
    suite = get_suite(spec.suite) if is_suite(spec.suite) else None
    objects: list[Any] = [suite, sys.modules.get(spec.build.__module__)]
    extra = getattr(suite, "code_roots", None)
    if extra is not None:
        objects += extra(spec)
    files: list[Path] = []
    for obj in objects:
        files += [p for p in _roots(obj) if p not in files]
    return files


def suite_files(spec: Any) -> tuple[Path, ...]:
    return closure_of(*suite_roots(spec))


def code_files(method_cls: type, spec: Any) -> dict[str, tuple[Path, ...]]:
    """The files each digest covers; a suite built in memory (no file) covers none."""
    return {"method": method_files(method_cls), "protocol": protocol_files(spec.protocol),
            "suite": suite_files(spec)}


def code_versions(method_cls: type, spec: Any) -> dict[str, str]:
    """``{"method": digest, "protocol": digest, "suite": digest}`` for a record of ``spec`` run by ``method_cls``."""
    return {part: files_digest(files) for part, files in code_files(method_cls, spec).items()}


def stale_parts(record: dict, current: dict[str, str]) -> list[str]:
    """Names of the code parts that differ from ``current``; every part when the record has no ``code`` (or one
    in a form this version does not read)."""
    recorded = record.get("code")
    if not isinstance(recorded, dict):
        recorded = {}
    return [part for part in CODE_PARTS if recorded.get(part) != current.get(part)]
