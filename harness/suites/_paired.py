"""Seed-paired comparisons of one method with another over a set of cases, for suites' generated findings.

Per case: the seed-matched differences d = method - baseline and a two-sided paired test
(:func:`harness.metrics.paired_test`: the exact sign-flip test for n <= 16 seeds, whose smallest p with 3 seeds
is 0.25 and with 5 seeds 0.0625, so a single case never reaches p < 0.05 on so few seeds), with Holm's
correction over the cases. Over the cases: the mean of the per-case mean differences with a case-bootstrap
95% CI (:func:`harness.metrics.case_bootstrap_ci`), and one paired test on all (case, seed) pairs pooled (a
t-test once there are more than 16 pairs), which asks whether the method differs consistently across them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from harness.metrics import case_bootstrap_ci, holm, paired_test


@dataclass(frozen=True)
class OverCases:
    method: str
    baseline: str
    metric: str
    cases: list[str]
    mean_diff: float  # mean over cases of each case's mean difference
    ci: tuple[float, float] | None  # case bootstrap, None below 2 cases
    pooled_p: float  # two-sided, all (case, seed) pairs
    pooled_test: str
    n_pairs: int
    better: int  # cases significantly better / worse after Holm's correction
    worse: int

    def verdict(self) -> str:
        """"better" / "worse" when the case-bootstrap CI excludes 0, else "no clear difference"."""
        if self.ci is None:
            return "no clear difference"
        if self.ci[0] > 0:
            return "better"
        if self.ci[1] < 0:
            return "worse"
        return "no clear difference"

    def describe(self) -> str:
        ci = f", case-bootstrap 95% CI [{self.ci[0]:+.4f}, {self.ci[1]:+.4f}]" if self.ci else ""
        p = "n/a" if math.isnan(self.pooled_p) else f"{self.pooled_p:.3g}"
        return (f"{self.method} - {self.baseline} on {self.metric}: mean {self.mean_diff:+.4f} over "
                f"{len(self.cases)} case(s){ci}; pooled two-sided paired test over {self.n_pairs} (case, seed) "
                f"pairs ({self.pooled_test}) p = {p}; per case (two-sided, Holm): {self.better} better, "
                f"{self.worse} worse, {len(self.cases) - self.better - self.worse} no difference")


def matched(rec: dict, base: dict, metric: str) -> tuple[list[float], list[float]]:
    """Seed-matched values of ``metric`` in two records (seeds where either is missing are dropped)."""
    a = dict(zip(rec["seeds"], rec["metrics"].get(metric, {}).get("per_seed", [])))
    b = dict(zip(base["seeds"], base["metrics"].get(metric, {}).get("per_seed", [])))
    seeds = [s for s in a if s in b and a[s] is not None and b[s] is not None]
    return [a[s] for s in seeds], [b[s] for s in seeds]


def compare(by_case: dict[str, dict[str, dict]], method: str, baseline: str, metric: str) -> OverCases | None:
    """``method`` against ``baseline`` over every case where both have an ok record; None if there is none."""
    cases, diffs, higher = [], [], True
    for case, recs in sorted(by_case.items()):
        if method in recs and baseline in recs:
            a, b = matched(recs[method], recs[baseline], metric)
            if a:
                cases.append(case)
                diffs.append((np.array(a), np.array(b)))
                higher = recs[method]["metrics"][metric].get("higher_is_better", True)
    if not cases:
        return None
    tests = [paired_test(a, b, higher_is_better=higher) for a, b in diffs]
    _, rejected = holm([t.p for t in tests])
    better = sum(1 for t, r in zip(tests, rejected) if r and t.verdict == "better")
    worse = sum(1 for t, r in zip(tests, rejected) if r and t.verdict == "worse")
    per_case = [a - b for a, b in diffs]
    ci = case_bootstrap_ci(per_case) if len(cases) >= 2 else None
    pooled = paired_test(np.concatenate([a for a, _ in diffs]), np.concatenate([b for _, b in diffs]),
                         higher_is_better=higher)
    return OverCases(method, baseline, metric, cases, float(np.mean([d.mean() for d in per_case])), ci, pooled.p,
                     pooled.test, pooled.n, better, worse)


def ok_records_by_case(records: list[dict], cases: set[str] | None = None) -> dict[str, dict[str, dict]]:
    """case -> method -> record, for ok records without hparam overrides (optionally only ``cases``)."""
    out: dict[str, dict[str, dict]] = {}
    for r in records:
        if r["status"] == "ok" and not r["hparam_overrides"] and (cases is None or r["case"] in cases):
            out.setdefault(r["case"], {})[r["method"]] = r
    return out
