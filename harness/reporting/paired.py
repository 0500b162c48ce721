"""Seed-paired comparisons of one method with another over a set of cases, for suites' generated findings.

The statistics are the leaderboard's (:mod:`harness.reporting.claims`, stated once in the leaderboard header), so a
finding never contradicts a leaderboard verdict: per case the exact sign-flip test on the seed-paired differences, Holm
over the cases; over the cases the two kinds of claim, *on these cases* (stratified sign-flip over case x seed
pairs, with the interval of the inverted test) and *across cases* (exact sign-flip on the case means; too few
cases -> no verdict), Holm-corrected over the comparisons a finding makes together (:func:`family`).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from harness.records import paired_values
from harness.reporting import claims
from harness.reporting.claims import Test
from harness.reporting.compare import fmt_p, oriented_diffs


@dataclass(frozen=True)
class OverCases:
    method: str
    baseline: str
    metric: str
    cases: list[str]
    per_case: list[Test]  # the leaderboard's per-case rule, Holm over these cases
    on: Test  # on these cases (Holm over the k comparisons of its family)
    across: Test  # across cases
    k: int = 1

    @property
    def mean_diff(self) -> float:
        """Mean over cases of each case's mean difference, + favours ``method``."""
        return self.on.estimate

    def verdict(self) -> str:
        """The on-these-cases verdict: better / worse / not established."""
        return self.on.verdict

    def describe(self) -> str:
        ci = f", interval of the inverted test [{self.on.ci[0]:+.4f}, {self.on.ci[1]:+.4f}]" if self.on.ci else ""
        better = sum(t.verdict == "better" for t in self.per_case)
        worse = sum(t.verdict == "worse" for t in self.per_case)
        rest = sorted({t.verdict for t in self.per_case} - {"better", "worse"})
        text = (f"{self.method} − {self.baseline} on {self.metric}: mean Δ {self.on.estimate:+.4f} over "
                f"{len(self.cases)} case(s) (+ favours {self.method}); on these cases (stratified sign-flip over "
                f"{self.on.n} case×seed pairs, Holm over {self.k}): {self.on.label} (Holm p = "
                f"{fmt_p(self.on.p_holm)}{ci}); across cases (exact sign-flip on case means, Holm over {self.k}): "
                f"{self.across.label}")
        if all(t.verdict.startswith("descriptive") for t in self.per_case):
            return text  # no per-case test could reach the level: a tally of that would be true by construction
        return (text + f"; per case (sign-flip, Holm over cases): {better} better, {worse} worse, "
                f"{len(self.per_case) - better - worse} {' / '.join(rest) or 'other'}")


def matched(rec: dict, base: dict, metric: str) -> tuple[list[float], list[float]]:
    """Seed-matched values of ``metric`` in two records (seeds where either is missing are dropped)."""
    return paired_values(rec, base, metric)


def compare(by_case: dict[str, dict[str, dict]], method: str, baseline: str, metric: str) -> OverCases | None:
    """``method`` against ``baseline`` over every case where both have an ok record; None if there is none.

    Its suite-level tests are corrected for this one comparison; pass several to :func:`family` to correct them
    together."""
    cases, diffs = [], []
    for case, recs in sorted(by_case.items()):
        if method in recs and baseline in recs and metric in recs[method]["metrics"]:
            d = oriented_diffs(recs[method], recs[baseline], metric)
            if d:
                cases.append(case)
                diffs.append(d)
    if not cases:
        return None
    per = claims.holm_family({c: claims.per_case(d) for c, d in zip(cases, diffs)}, "case")
    on = claims.holm_family({"x": claims.on_these_cases(diffs)}, "on")["x"]
    across = claims.holm_family({"x": claims.across_cases([float(np.mean(d)) for d in diffs])}, "across")["x"]
    return OverCases(method, baseline, metric, cases, [per[c] for c in cases], on, across)


def family(comparisons: list[OverCases | None]) -> list[OverCases]:
    """The comparisons a finding makes together, with Holm over them for both kinds of claim."""
    items = [c for c in comparisons if c is not None]
    keys = [str(i) for i in range(len(items))]
    on = claims.holm_family(dict(zip(keys, (c.on for c in items))), "on")
    across = claims.holm_family(dict(zip(keys, (c.across for c in items))), "across")
    return [replace(c, on=on[k], across=across[k], k=len(items)) for k, c in zip(keys, items)]


def one_case(diff: list[float]) -> str:
    """The leaderboard's per-case rule on one set of seed-paired differences (+ favours the first), as text."""
    if not diff:
        return "no paired seeds, no test"
    t = claims.holm_family({"x": claims.per_case(diff)}, "case")["x"]
    if t.verdict.startswith("descriptive"):
        return (f"Δ {t.estimate:+.4f}, range [{t.spread[0]:+.4f}, {t.spread[1]:+.4f}] over {t.n} seeds "
                f"(descriptive: {t.n} seeds cannot reach the level of a test)")
    return f"{t.label} (exact sign-flip over {t.n} seeds, p = {fmt_p(t.p)})"


def ok_records_by_case(records: list[dict], cases: set[str] | None = None) -> dict[str, dict[str, dict]]:
    """case -> method -> record, for ok records without hparam overrides (optionally only ``cases``)."""
    out: dict[str, dict[str, dict]] = {}
    for r in records:
        if r["status"] == "ok" and not r["hparam_overrides"] and (cases is None or r["case"] in cases):
            out.setdefault(r["case"], {})[r["method"]] = r
    return out
