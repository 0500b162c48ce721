"""Is a case informative? The floors each suite's report declares, checked on the records of a case.

A case ranks methods only when its baseline is clearly above chance: a case where every method sits at chance
measures nothing, and a verdict there is noise. A suite's report declares ``INFORMATIVE``, a tuple of
:class:`Floor`: a metric, how its chance level is read from a record (the majority-class rate of the record's own
test labels, or a constant such as 0.5 for AUROC), and the margin above chance the baseline must reach. A floor
with ``each_method`` is checked on every method's row instead: it says whether the method fits its own training
data (the suite's held-out training-domain accuracy, say), which a method should unless its paper says otherwise.

The margins are fixed before any record is read (:data:`MARGIN`: 20 points above chance, so an accuracy case with
10 balanced classes needs 0.30 and an AUROC case 0.70) and are the same for every case of a suite: no case is
admitted or dropped by a floor tuned to its numbers. ``leaderboard --check`` fails when a ranked case's baseline
falls below a floor and the suite's report does not declare the case a reproduction (``REPRODUCTIONS``: a known
failure reproduced on purpose, or a case whose baseline fell under its floor once its records were made, kept
visible with its numbers as the reason until a protocol change fixes or drops it; shown outside the rankings and
claims).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from harness.records import load_evidence
from harness.reporting.suites import informative_floors

MARGIN = 0.20  # above chance, for every suite unless its report says otherwise (stated where it does)


@dataclass(frozen=True)
class Floor:
    """A metric that must clear its chance level by ``margin`` on a case."""

    metric: str
    chance: Callable[[dict], float | None]  # the record's chance level for ``metric`` (None: unknown)
    margin: float = MARGIN
    each_method: bool = False  # check every method's row (its fit to its training data), not only the baseline's
    label: str = ""  # what the floor means, for the report


@dataclass(frozen=True)
class Check:
    case: str
    method: str
    floor: Floor
    value: float
    chance: float

    @property
    def needed(self) -> float:
        return self.chance + self.floor.margin

    @property
    def ok(self) -> bool:
        return self.value >= self.needed

    def describe(self) -> str:
        what = self.floor.label or self.floor.metric
        return (f"{self.method} {what} {self.value:.3f} {'≥' if self.ok else '<'} chance {self.chance:.3f} "
                f"+ {self.floor.margin:.2f}")


def constant(level: float) -> Callable[[dict], float]:
    """A chance level that does not depend on the data (AUROC: 0.5)."""
    return lambda record: level


def majority(label_key: str, known_only: bool = False) -> Callable[[dict], float | None]:
    """The majority-class rate of the record's evidence array ``label_key`` (pooled over seeds): the accuracy of
    always answering the most frequent class. ``known_only`` keeps labels below the record's known-class count
    (open set: unknown samples carry labels >= K)."""

    def chance(record: dict) -> float | None:
        path = record.get("_path")
        if path is None or not record.get("evidence"):
            return None
        arrays = load_evidence(Path(path), record)
        labels = [a[label_key] for a in arrays.values() if label_key in a]
        if not labels:
            return None
        y = np.concatenate(labels).astype(np.int64)
        if known_only:
            y = y[y < len(record.get("task_info", {}).get("known", []))]
        return float(np.bincount(y).max() / len(y)) if len(y) else None

    return chance


def one_over(classes: Callable[[dict], int | None]) -> Callable[[dict], float | None]:
    """1 / K, with K read from the record (a suite that keeps no label arrays)."""

    def chance(record: dict) -> float | None:
        k = classes(record)
        return 1.0 / k if k else None

    return chance


def _mean(record: dict, metric: str) -> float | None:
    m = record.get("metrics", {}).get(metric)
    return None if not m or m.get("mean") is None else float(m["mean"])


def case_checks(suite, case: str, records: list[dict]) -> list[Check]:
    """The floors of ``suite`` checked on one case's records (default hparams, status ok)."""
    rows = [r for r in records if r["case"] == case and r["status"] == "ok" and not r["hparam_overrides"]]
    out = []
    for floor in informative_floors(suite):
        for rec in rows if floor.each_method else [r for r in rows if r["method"] == suite.BASELINE]:
            value, chance = _mean(rec, floor.metric), floor.chance(rec)
            if value is not None and chance is not None:
                out.append(Check(case, rec["method"], floor, value, chance))
    return out


def problem(suite_name: str, profile: str, check: Check) -> str:
    """The one-line failure of a ranked case whose baseline sits below ``check``'s floor."""
    return (f"{suite_name} {profile} `{check.case}` measures nothing: {check.describe()}; fix the case, or declare it "
            "in the suite report's REPRODUCTIONS with the reason")
