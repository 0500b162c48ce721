"""How the leaderboard compares methods: the rule, in one place, for the leaderboard and the suites' findings.

The statistics are :mod:`harness.reporting.claims`'s; this module applies them to records.

Per case (one leaderboard table): each method is compared with the suite's baseline on the case's primary
metric, on seed-matched values, oriented so that + favours the method. The test is the exact sign-flip test
on the seed-paired differences (:func:`harness.reporting.claims.per_case`), Holm-corrected over the comparisons of that
table. With n seeds its smallest p is 2 / 2^n; where that cannot reach the level the cell is descriptive (the
range of the differences over seeds), never "no difference".

Across the suite, two kinds of claim, each Holm-corrected over the methods compared with the baseline:

* **on these cases** (:func:`harness.reporting.claims.on_these_cases`): a stratified sign-flip test over every
  (case, seed) pair of the mean of case means, with the interval of the inverted test; it speaks of these cases
  only;
* **across cases** (:func:`harness.reporting.claims.across_cases`): the exact sign-flip test on the case means, with
  cases as the unit; below :func:`harness.reporting.claims.cases_needed` cases it cannot reach the Holm level, and
  the verdict says so ("too few cases to claim").

The Friedman test and the Nemenyi critical difference on the case means' ranks are reported beside them
(pairs listed only when Friedman rejects), over the methods run on every case, or the cases every method ran
on, whichever keeps more cells.

Reference rows (a suite report's ``REFERENCE_METHODS``, :func:`harness.reporting.suites.reference_methods`:
method -> why) are shown in the tables but get no verdict and take no part in the tests, the ranking or the claims:
e.g. unlearning's ``retrain`` is the oracle the gap is measured to, so its gap is 0 by construction, and openset's
``erm`` is the same measurement as ``mls``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from harness.metrics.stats import FriedmanResult, friedman
from harness.records import higher_is_better, paired_values
from harness.reporting import claims
from harness.reporting.claims import Test

ALPHA = claims.ALPHA
ON_LABEL = "On these cases (stratified sign-flip over case×seed pairs, Holm over {k} methods)"
ACROSS_LABEL = "Across cases (exact sign-flip on case means, Holm over {k} methods)"


def oriented_diffs(rec: dict, base: dict, metric: str) -> list[float]:
    """Seed-paired differences rec - base on ``metric``, signed so that + favours ``rec``."""
    a, b = paired_values(rec, base, metric)
    if not a:
        return []  # nothing to compare (also: a metric the record lacks has no direction to ask for)
    sign = 1.0 if higher_is_better(rec, metric) else -1.0
    return [sign * (x - y) for x, y in zip(a, b)]


@dataclass
class Row:
    """One method's comparison with the baseline in one table."""

    record: dict
    test: Test | None  # per-case sign-flip test, Holm within the table (None: baseline, reference, untested)
    mean_diff: float = math.nan  # raw mean seed-paired difference (method - baseline), not oriented
    reference: str = ""  # why this row is a reference without a verdict

    @property
    def p_holm(self) -> float:
        return self.test.p_holm if self.test is not None else math.nan

    @property
    def verdict(self) -> str:
        return self.test.label if self.test is not None else ""


def table_rows(records: list[dict], base: dict | None, metric: str, alpha: float = ALPHA,
               refs: dict[str, str] | None = None) -> list[Row]:
    """Every record compared with ``base`` on ``metric`` (:func:`harness.reporting.claims.per_case`), Holm over the
    table."""
    refs = refs or {}
    rows, tests = [], {}
    for i, rec in enumerate(records):
        row = Row(rec, None, reference=refs.get(rec["method"], ""))
        ok = base is not None and rec is not base and rec["status"] == "ok" and base["status"] == "ok"
        if ok and not row.reference:
            d = oriented_diffs(rec, base, metric)
            if d:
                a, b = paired_values(rec, base, metric)
                row.mean_diff = float(np.mean(np.subtract(a, b)))
                tests[i] = claims.per_case(d)
        rows.append(row)
    for i, t in claims.holm_family({str(i): t for i, t in tests.items()}, "case", alpha).items():
        rows[int(i)].test = t
    return rows


@dataclass
class MethodSummary:
    method: str
    n_cases: int  # cases with both this method and the baseline
    mean_rank: float | None  # None when the method is not in the Friedman set
    on: Test | None = None  # on these cases (Holm over the methods compared with the baseline)
    across: Test | None = None  # across cases
    role: str = ""  # "baseline", or "reference: why"; "" for a compared method

    @property
    def mean_diff(self) -> float | None:
        return self.on.estimate if self.on is not None else None

    @property
    def ci(self) -> tuple[float, float] | None:
        return self.on.ci if self.on is not None else None

    @property
    def verdict(self) -> str:
        """Both claims in one short text (the summary table's column)."""
        if self.role:
            return self.role
        if self.on is None:
            return "no paired cases"
        return f"on these cases: {self.on.label}; across cases: {self.across.label}"


@dataclass
class Aggregate:
    baseline: str
    cases: list[str]
    methods: list[str]  # the Friedman set: methods with a row in every case
    friedman: FriedmanResult | None
    summaries: list[MethodSummary]
    excluded: dict[str, str] = field(default_factory=dict)  # method -> why it is not ranked
    cases_left_out: list[str] = field(default_factory=list)  # cases not in the Friedman block
    differing_pairs: list[tuple[str, str, float]] = field(default_factory=list)  # |rank gap| > CD

    @property
    def n_compared(self) -> int:
        return sum(s.on is not None for s in self.summaries)

    def summary(self, method: str) -> MethodSummary | None:
        return next((s for s in self.summaries if s.method == method), None)


def _oriented(rec: dict, value: float) -> float:
    return value if higher_is_better(rec, rec["primary_metric"]) else -value


def aggregate(records: list[dict], baseline: str, alpha: float = ALPHA, seed: int = 0,
              refs: dict[str, str] | None = None) -> Aggregate:
    """The suite aggregate over cases (see the module docstring); ``records``: one suite and profile.

    Only ``ok`` rows with default hparams take part; callers pass the rows with the suite's seed count.
    """
    refs = refs or {}
    cells: dict[str, dict[str, dict]] = {}
    for rec in records:
        value = rec["metrics"].get(rec["primary_metric"], {}).get("mean")
        if rec["status"] == "ok" and not rec["hparam_overrides"] and value is not None:
            cells.setdefault(rec["case"], {})[rec["method"]] = rec
    all_cases = sorted(cells)
    seen = sorted({m for row in cells.values() for m in row})
    everyone = [m for m in seen if m not in refs]
    full_methods = [m for m in everyone if all(m in cells[c] for c in all_cases)]
    full_cases = [c for c in all_cases if all(m in cells[c] for m in everyone)]
    if len(full_cases) * len(everyone) > len(all_cases) * len(full_methods):
        methods, cases = everyone, full_cases
    else:
        methods, cases = full_methods, all_cases
    excluded = {m: f"run on {sum(m in cells[c] for c in all_cases)} of {len(all_cases)} cases" for m in everyone
                if m not in methods}
    excluded.update({m: f"reference: {refs[m]}" for m in seen if m in refs})
    result = None
    if len(methods) >= 2 and len(cases) >= 2:
        matrix = np.array([[_oriented(cells[c][m], cells[c][m]["metrics"][cells[c][m]["primary_metric"]]["mean"])
                            for m in methods] for c in cases])
        result = friedman(matrix, higher_is_better=True, alpha=alpha)
    ranks = dict(zip(methods, result.mean_ranks)) if result is not None else {}
    summaries, on, across = [], {}, {}
    for m in seen:
        if m == baseline or m in refs:
            role = "baseline" if m == baseline else f"reference: {refs[m]}"
            summaries.append(MethodSummary(m, sum(m in cells[c] for c in all_cases), ranks.get(m), role=role))
            continue
        diffs = [oriented_diffs(cells[c][m], cells[c][baseline], cells[c][m]["primary_metric"])
                 for c in all_cases if m in cells[c] and baseline in cells[c]]
        diffs = [d for d in diffs if d]
        summaries.append(MethodSummary(m, len(diffs), ranks.get(m)))
        if diffs:
            on[m] = claims.on_these_cases(diffs, seed=seed)
            across[m] = claims.across_cases([float(np.mean(d)) for d in diffs], seed=seed)
    on, across = claims.holm_family(on, "on", alpha), claims.holm_family(across, "across", alpha)
    for s in summaries:
        s.on, s.across = on.get(s.method), across.get(s.method)
    pairs = []
    if result is not None and result.p < alpha:
        for i, a in enumerate(methods):
            for b in methods[i + 1:]:
                gap = abs(ranks[a] - ranks[b])
                if gap > result.cd:
                    pairs.append((a, b, gap) if ranks[a] < ranks[b] else (b, a, gap))
    left_out = [c for c in all_cases if c not in cases]
    return Aggregate(baseline, cases, methods, result, summaries, excluded, left_out, pairs)


def _claim_text(t: Test, kind: str) -> str:
    p = f"{p_is(t.p)}, Holm {p_is(t.p_holm)}"
    if kind == "on":
        ci = f", interval of the inverted test [{t.ci[0]:+.4f}, {t.ci[1]:+.4f}]" if t.ci else ""
        return f"{t.label} ({p}{ci})"
    return f"{t.label} ({p})" if t.verdict in ("better", "worse", "not established") else t.label


def headline(agg: Aggregate) -> list[str]:
    """The claims the aggregate supports, one line per method and kind, plus the Friedman result."""
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
    k = agg.n_compared
    for s in agg.summaries:
        if s.on is None:
            continue
        lines.append(f"{s.method} vs {agg.baseline}: mean Δ {s.on.estimate:+.4f} over {s.n_cases} cases "
                     f"({s.on.n} case×seed pairs; primary metrics, + favours {s.method}). "
                     f"{ON_LABEL.format(k=k)}: {_claim_text(s.on, 'on')}. "
                     f"{ACROSS_LABEL.format(k=k)}: {_claim_text(s.across, 'across')}.")
    return lines


def p_is(p: float) -> str:
    """"p = 0.123" or "p < 0.001" for prose."""
    text = fmt_p(p)
    return f"p {text[0]} {text[1:]}" if text.startswith("<") else f"p = {text}"


def fmt_p(p: float) -> str:
    if p is None or math.isnan(p):
        return "n/a"
    return "<0.001" if p < 0.001 else f"{p:.3f}"
