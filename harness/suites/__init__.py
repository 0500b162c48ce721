"""Suite definitions as plain modules (the pytest files in ``suites/`` are thin
wrappers). A suite module defines cases and computes metrics, and nothing else:
its whole import closure is in every record's ``code`` digest
(:mod:`harness.core.digest`), so it never imports :mod:`harness.reporting` or
:mod:`harness.records`. Each module exposes ``NAME``, ``BASELINE`` (the method
every other is compared with), ``PROTOCOL`` and
``case_specs(profile) -> list[CaseSpec]``; listing cases loads no data.

Suites are discovered, not listed by hand: every module in this package with a
module-level ``NAME = "..."`` is a built-in suite (read with ``ast``, so
discovery imports nothing), and third-party packages add suites through the
entry-point group ``harness.suites`` (``name = "package.module"``).

Optional module attributes: ``LOWER_IS_BETTER``, ``SEEDS`` (seeds per profile,
default :data:`harness.suites.seeds.DEFAULT_SEEDS`: the count runs use without
``--seeds`` and the leaderboard ranks), ``DATASET_OPTION`` (``case_specs`` then
also takes ``datasets=[...]`` from ``--dataset``) and
``spec_for_record(record)`` for suites whose cases depend on user input, so the
leaderboard can still verify their records.

What the reports say of a suite (``DESCRIPTION``, ``LEADERBOARD_COLUMNS``,
``REFERENCE_METHODS``, ``findings(records)``, ``figures(records, out_dir)``)
lives in its report module, ``harness/reporting/suites/<module>.py``, read
through :func:`harness.reporting.suites.suite_report`. A third-party suite,
which has no report module there, may define them on the suite module itself.
"""

from __future__ import annotations

import ast
import difflib
import importlib
from functools import lru_cache
from importlib.metadata import entry_points
from pathlib import Path
from types import ModuleType
from typing import Any

from harness.errors import UsageError
from harness.suites.seeds import DEFAULT_SEEDS, seed_stream

ENTRY_POINT_GROUP = "harness.suites"
_HERE = Path(__file__).resolve().parent


def _declared_name(path: Path) -> str | None:
    try:
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    except SyntaxError:
        return None
    for node in tree.body:
        if (isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name)
                and node.targets[0].id == "NAME" and isinstance(node.value, ast.Constant)
                and isinstance(node.value.value, str)):
            return node.value.value
    return None


@lru_cache(maxsize=1)
def _registry() -> dict[str, str]:
    """Suite name -> module path: built-ins (sorted by file name), then entry points."""
    found: dict[str, str] = {}
    for path in sorted(_HERE.glob("*.py")):
        if path.name.startswith("_"):
            continue
        name = _declared_name(path)
        if name is not None:
            found[name] = f"{__name__}.{path.stem}"
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        found.setdefault(ep.name, ep.value.partition(":")[0])
    return found


def suite_names() -> list[str]:
    return list(_registry())


def is_suite(name: str) -> bool:
    return name in _registry()


def get_suite(name: str) -> ModuleType:
    registry = _registry()
    if name not in registry:
        near = difflib.get_close_matches(name, list(registry), n=1)
        hint = f" Did you mean {near[0]!r}?" if near else ""
        raise UsageError(f"unknown suite {name!r}.{hint} Suites: {', '.join(registry)}")
    try:
        return importlib.import_module(registry[name])
    except Exception as err:  # a broken third-party suite breaks only itself
        raise UsageError(f"suite {name!r} ({registry[name]}) failed to import: {err!r}") from err


def all_suites() -> list[ModuleType]:
    return [get_suite(n) for n in suite_names()]


def case_specs(suite: ModuleType, profile: str, datasets: list[str] | None = None) -> list:
    """The suite's cases for a profile; ``--dataset`` values reach suites that declare ``DATASET_OPTION``."""
    if getattr(suite, "DATASET_OPTION", False):
        return suite.case_specs(profile, datasets=list(datasets or []))
    return suite.case_specs(profile)


def declared_profiles(suite: ModuleType) -> tuple[str, ...]:
    """The profiles a suite declares: the keys of its ``PROFILE`` settings, else of its ``SEEDS``, else all."""
    declared = getattr(suite, "PROFILE", None) or getattr(suite, "SEEDS", None) or DEFAULT_SEEDS
    return tuple(p for p in DEFAULT_SEEDS if p in declared)


def seed_count(suite: ModuleType, profile: str, case: str | None = None) -> int:
    """The standard number of seeds: the suite's ``SEEDS`` for the profile (else the harness default), raised to
    the case's own ``CaseSpec.default_seeds`` when ``case`` names one that asks for more."""
    n = int(getattr(suite, "SEEDS", {}).get(profile, DEFAULT_SEEDS[profile]))
    if case is not None and not getattr(suite, "DATASET_OPTION", False):
        n = max(n, _case_seeds(suite.NAME, profile).get(case) or 0)
    return n


def case_stream(spec: Any, index: int) -> int:
    """The random seed that seed ``index`` of a case runs with (:func:`harness.suites.seeds.seed_stream`): its own
    stream, or that of the group its suite's ``seed_group(spec)`` names (unlearning: cases of one training pool
    share the pool's original model, hence its streams)."""
    group = spec.case
    hook = getattr(get_suite(spec.suite), "seed_group", None) if is_suite(spec.suite) else None
    if hook is not None:
        group = hook(spec)
    return seed_stream(spec.suite, group, index)


def case_seeds(spec: Any, requested: int | None = None) -> list[int]:
    """The seeds a case runs: ``0..requested-1`` when ``--seeds`` is given, else :func:`seed_count` of its suite
    (the case's own ``default_seeds`` when larger). The one seed policy of pytest and launch."""
    if requested is not None:
        return list(range(requested))
    n = spec.default_seeds or 0
    if is_suite(spec.suite):
        n = max(n, seed_count(get_suite(spec.suite), spec.profile))
    else:
        n = max(n, DEFAULT_SEEDS[spec.profile])
    return list(range(n))


@lru_cache(maxsize=32)
def _case_seeds(suite: str, profile: str) -> dict[str, int | None]:
    return {s.case: s.default_seeds for s in get_suite(suite).case_specs(profile)}
