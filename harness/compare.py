"""How the leaderboard compares methods: the rule, in one place, for the leaderboard and the suites' findings.

Per case (one leaderboard table): each method is compared with the suite's
baseline on the case's primary metric, on seed-matched values. The test is the
two-sided paired t-test (:func:`harness.metrics.paired_test`, ``test="t"``;
with zero variance of the differences it falls back to the exact sign-flip
test, so a constant difference never gets p = 0). Its p-values are corrected
with Holm's step-down method over the comparisons of that table, and a verdict
(better / worse) needs a Holm-adjusted p < 0.05, in the metric's direction.
The exact sign-flip permutation p is shown beside it as a robustness check: it
assumes nothing about the distribution of the differences but cannot go below
2 / 2^n (0.25 at 3 seeds, 0.0625 at 5), so with 5 or fewer seeds it never
rejects at 0.05. Per-case verdicts are descriptive.

Across cases (the suite aggregate, where claims come from): the primary
metric's case means rank the methods within each case (1 = best, in each
case's direction); the Friedman test asks whether mean ranks differ at all and
the Nemenyi critical difference says which pairs differ (listed only when the
Friedman test rejects). Friedman needs a complete block: it runs over the
methods run on every case, or over the cases every method ran on, whichever
keeps more cells, and says what it left out. The mean over cases of the
seed-paired difference from the baseline, oriented so that + favours the
method, gets a percentile bootstrap CI that resamples cases
(:func:`harness.metrics.case_bootstrap_ci`, each case weighted equally, over
every case the method and the baseline share). The m methods compared with the
baseline share a Bonferroni-adjusted level: each CI has confidence
1 - 0.05/m, so the m claims hold together at 95%. A method is "better" or
"worse" than the baseline across the suite only when its CI excludes 0. With
few cases (say 8) a percentile interval is narrower than its nominal level.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from harness.metrics import FriedmanResult, PairedComparison, case_bootstrap_ci, friedman, holm
from harness.records import higher_is_better, paired_values, paired_verdict

ALPHA = 0.05


@dataclass
class Row:
    """One method's comparison with the baseline in one table."""

    record: dict
    test: PairedComparison | None  # two-sided paired t-test (None: fewer than 2 paired seeds, or the baseline)
    permutation: PairedComparison | None
    p_holm: float = math.nan
    verdict: str = ""  # better / equal / worse after Holm; "" for the baseline and untested rows


def table_rows(records: list[dict], base: dict | None, metric: str, alpha: float = ALPHA) -> list[Row]:
    """Every record compared with ``base`` on ``metric``, Holm-corrected over this table's tests."""
    rows = []
    for rec in records:
        ok = base is not None and rec is not base and rec["status"] == "ok" and base["status"] == "ok"
        t = paired_verdict(rec, base, metric, test="t", alpha=alpha) if ok else None
        perm = paired_verdict(rec, base, metric, test="permutation", alpha=alpha) if ok else None
        rows.append(Row(rec, t, perm))
    adjusted, rejected = holm([r.test.p if r.test is not None else math.nan for r in rows], alpha)
    for row, p, reject in zip(rows, adjusted, rejected):
        if row.test is None:
            continue
        row.p_holm = float(p)
        favours = row.test.mean_diff > 0 if row.test.higher_is_better else row.test.mean_diff < 0
        row.verdict = ("better" if favours else "worse") if reject else "equal"
    return rows


@dataclass
class MethodSummary:
    method: str
    n_cases: int  # cases with both this method and the baseline
    mean_rank: float | None  # None when the method is not in the Friedman set
    mean_diff: float | None  # mean over cases of the oriented seed-paired difference from the baseline
    ci: tuple[float, float] | None
    verdict: str  # better / worse / no difference established / baseline / too few cases


@dataclass
class Aggregate:
    baseline: str
    cases: list[str]
    methods: list[str]  # the Friedman set: methods with a row in every case
    friedman: FriedmanResult | None
    summaries: list[MethodSummary]
    confidence: float  # of each case-bootstrap CI (Bonferroni over the methods compared with the baseline)
    excluded: dict[str, str] = field(default_factory=dict)  # method -> why it is not ranked
    cases_left_out: list[str] = field(default_factory=list)  # cases not in the Friedman block
    differing_pairs: list[tuple[str, str, float]] = field(default_factory=list)  # |rank gap| > CD

    @property
    def n_compared(self) -> int:
        return sum(s.verdict != "baseline" for s in self.summaries)

    def summary(self, method: str) -> MethodSummary | None:
        return next((s for s in self.summaries if s.method == method), None)


def _oriented(rec: dict, value: float) -> float:
    return value if higher_is_better(rec, rec["primary_metric"]) else -value


def aggregate(records: list[dict], baseline: str, alpha: float = ALPHA, seed: int = 0) -> Aggregate:
    """The suite aggregate over cases (see the module docstring); ``records``: one suite and profile.

    Only ``ok`` rows with default hparams take part; callers pass the rows with the suite's seed count.
    """
    cells: dict[str, dict[str, dict]] = {}
    for rec in records:
        value = rec["metrics"].get(rec["primary_metric"], {}).get("mean")
        if rec["status"] == "ok" and not rec["hparam_overrides"] and value is not None:
            cells.setdefault(rec["case"], {})[rec["method"]] = rec
    all_cases = sorted(cells)
    everyone = sorted({m for row in cells.values() for m in row})
    full_methods = [m for m in everyone if all(m in cells[c] for c in all_cases)]
    full_cases = [c for c in all_cases if all(m in cells[c] for m in everyone)]
    if len(full_cases) * len(everyone) > len(all_cases) * len(full_methods):
        methods, cases = everyone, full_cases
    else:
        methods, cases = full_methods, all_cases
    excluded = {m: f"run on {sum(m in cells[c] for c in all_cases)} of {len(all_cases)} cases" for m in everyone
                if m not in methods}
    result = None
    if len(methods) >= 2 and len(cases) >= 2:
        matrix = np.array([[_oriented(cells[c][m], cells[c][m]["metrics"][cells[c][m]["primary_metric"]]["mean"])
                            for m in methods] for c in cases])
        result = friedman(matrix, higher_is_better=True, alpha=alpha)
    confidence = 1.0 - alpha / max(1, sum(m != baseline for m in everyone))
    ranks = dict(zip(methods, result.mean_ranks)) if result is not None else {}
    summaries = []
    for m in everyone:
        diffs = []
        for c in all_cases:
            rec, base = cells[c].get(m), cells[c].get(baseline)
            if rec is None or base is None or m == baseline:
                continue
            a, b = paired_values(rec, base, rec["primary_metric"])
            if a:
                diffs.append([_oriented(rec, x - y) for x, y in zip(a, b)])
        if m == baseline:
            summaries.append(MethodSummary(m, sum(baseline in cells[c] for c in all_cases), ranks.get(m), None, None,
                                           "baseline"))
            continue
        mean = float(np.mean([np.mean(d) for d in diffs])) if diffs else None
        if len(diffs) < 2:
            summaries.append(MethodSummary(m, len(diffs), ranks.get(m), mean, None, "too few cases"))
            continue
        lo, hi = case_bootstrap_ci(diffs, confidence=confidence, seed=seed)
        verdict = "better" if lo > 0 else "worse" if hi < 0 else "no difference established"
        summaries.append(MethodSummary(m, len(diffs), ranks.get(m), mean, (lo, hi), verdict))
    pairs = []
    if result is not None and result.p < alpha:
        for i, a in enumerate(methods):
            for b in methods[i + 1:]:
                gap = abs(ranks[a] - ranks[b])
                if gap > result.cd:
                    pairs.append((a, b, gap) if ranks[a] < ranks[b] else (b, a, gap))
    left_out = [c for c in all_cases if c not in cases]
    return Aggregate(baseline, cases, methods, result, summaries, confidence, excluded, left_out, pairs)


def headline(agg: Aggregate) -> list[str]:
    """The claims the aggregate supports, one line per method, plus the Friedman result."""
    lines = []
    f = agg.friedman
    if f is not None:
        verdict = "differ" if f.p < ALPHA else "do not differ detectably"
        left = f" ({', '.join(agg.cases_left_out)} left out: not every method ran there)" if agg.cases_left_out \
            else ""
        lines.append(f"Across {f.n_cases} cases{left}, the mean ranks of {f.n_methods} methods {verdict} (Friedman "
                     f"χ² = {f.statistic:.2f}, df {f.df}, {p_is(f.p)}; Nemenyi CD = {f.cd:.2f} ranks).")
        if f.p < ALPHA:
            pairs = "; ".join(f"{a} ranks above {b} by {g:.2f}" for a, b, g in agg.differing_pairs)
            lines.append(f"Pairs whose mean ranks differ by more than the CD: {pairs or 'none'}.")
    for s in agg.summaries:
        if s.ci is None:
            continue
        what = {"better": f"better than {agg.baseline}", "worse": f"worse than {agg.baseline}"}.get(
            s.verdict, f"no difference from {agg.baseline} established")
        lines.append(f"{s.method}: {what} over {s.n_cases} cases (mean Δ {s.mean_diff:+.4f} in the primary "
                     f"metrics, + favours {s.method}; {agg.confidence:.2%} case-bootstrap CI "
                     f"[{s.ci[0]:+.4f}, {s.ci[1]:+.4f}], Bonferroni over {agg.n_compared} methods).")
    return lines


def p_is(p: float) -> str:
    """"p = 0.123" or "p < 0.001" for prose."""
    text = fmt_p(p)
    return f"p {text[0]} {text[1:]}" if text.startswith("<") else f"p = {text}"


def fmt_p(p: float) -> str:
    if p is None or math.isnan(p):
        return "n/a"
    return "<0.001" if p < 0.001 else f"{p:.3f}"
