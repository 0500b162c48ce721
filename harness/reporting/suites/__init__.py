"""What the reports say about each suite: its description, its extra leaderboard columns, its reference rows, its
findings and its figures.

A suite module (:mod:`harness.suites`) defines cases and computes metrics, nothing else: its code is in every
record's ``code`` digest and in the protocols' store keys, so a sentence kept there would stale records when
reworded. The built-in suite ``harness.suites.<name>`` has its report here, in ``harness.reporting.suites.<name>``,
which is in no digest. A third-party suite (entry-point group ``harness.suites``) has no module here: its report
attributes are read from the suite module itself.

Report attributes (all optional but ``DESCRIPTION``):

* ``DESCRIPTION``: one line for ``python -m harness list`` and the leaderboard's section intro;
* ``LEADERBOARD_COLUMNS``: metrics shown beside the primary one in the per-case tables;
* ``REFERENCE_METHODS``: method -> why it is a reference row (shown, no verdict, in no test or rank);
* ``REPRODUCTIONS``: case -> why it is kept outside the rankings: a known failure reproduced on purpose, or a
  case whose baseline fell under its floor once its records were made (its table is shown; it enters no rank,
  aggregate or claim, and no informativeness floor);
* ``INFORMATIVE``: the floors (:class:`harness.reporting.informative.Floor`) a ranked case's baseline must clear,
  and the training-data fits each method's row is checked for;
* ``findings(records) -> [str]``: plain-language lines generated from the suite's current records;
* ``figures(records, out_dir) -> [(title, png path)]``: figures drawn under ``out_dir``;
* ``data_tables(records) -> [(title, DataFrame[, note])]``: what the records say about the data (a user's folder:
  class counts, chance and majority baselines, per-class accuracy, confusion matrices), shown on the suite's page;
* ``summary_split(record) -> str | None``: a part of the case that gets its own summary row (remote sensing: the
  encoder), so the summary does not average unlike things into one number;
* ``stored_case(params) -> bool``: whether a case (its params) exists only where a model store holds what it
  needs (remote sensing: a probe of an encoder from the SSL suite's store). The leaderboard counts such cases apart
  from the ones every machine declares, so its coverage line reads the same on every machine.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from types import ModuleType
from typing import Any

from harness.suites import get_suite

BUILTIN_PACKAGE = "harness.suites"  # suites whose report lives in this package


def suite_report(suite: str | ModuleType) -> ModuleType:
    """The module holding a suite's report attributes: ``harness.reporting.suites.<name>`` for a built-in suite,
    the suite module itself for a third-party one."""
    module = get_suite(suite) if isinstance(suite, str) else suite
    package, _, stem = module.__name__.rpartition(".")
    if package == BUILTIN_PACKAGE:
        return importlib.import_module(f"{__name__}.{stem}")
    return module


def description(suite: str | ModuleType) -> str:
    return suite_report(suite).DESCRIPTION


def leaderboard_columns(suite: str | ModuleType) -> list[str]:
    return list(getattr(suite_report(suite), "LEADERBOARD_COLUMNS", []))


def reference_methods(suite: str | ModuleType) -> dict[str, str]:
    """A suite's reference rows (method -> why it gets no verdict); empty when it declares none."""
    return dict(getattr(suite_report(suite), "REFERENCE_METHODS", {}) or {})


def reproductions(suite: str | ModuleType) -> dict[str, str]:
    """A suite's reproduction cases (case -> why it is outside the rankings); empty when it declares none."""
    return dict(getattr(suite_report(suite), "REPRODUCTIONS", {}) or {})


def informative_floors(suite: str | ModuleType) -> tuple[Any, ...]:
    """A suite's informativeness floors (:class:`harness.reporting.informative.Floor`); none when it declares none."""
    return tuple(getattr(suite_report(suite), "INFORMATIVE", ()) or ())


def findings(suite: str | ModuleType, records: list[dict]) -> list[str]:
    """The suite's findings on ``records``; none when it has no ``findings`` or there are no records."""
    hook = getattr(suite_report(suite), "findings", None)
    return list(hook(records)) if hook is not None and records else []


def figures(suite: str | ModuleType, records: list[dict], out_dir: Path) -> list[tuple[str, Path]]:
    """The suite's own figures drawn under ``out_dir``; none when it has no ``figures``."""
    hook = getattr(suite_report(suite), "figures", None)
    if hook is None:
        return []
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    return [(title, Path(path)) for title, path in hook(records, Path(out_dir))]


def data_tables(suite: str | ModuleType, records: list[dict]) -> list[tuple[Any, ...]]:
    """The suite's tables about its data for ``records`` ((title, DataFrame[, note])); none when it has no hook."""
    hook = getattr(suite_report(suite), "data_tables", None)
    return list(hook(records)) if hook is not None and records else []


def summary_split(suite: str | ModuleType, record: dict) -> str | None:
    """The part of a record's case that gets its own summary row (None: the method's row)."""
    hook = getattr(suite_report(suite), "summary_split", None)
    return hook(record) if hook is not None else None


def stored_case(suite: str | ModuleType, params: dict) -> bool:
    """Whether the case with ``params`` is declared only where a model store holds what it needs."""
    hook = getattr(suite_report(suite), "stored_case", None)
    return bool(hook(params)) if hook is not None else False
