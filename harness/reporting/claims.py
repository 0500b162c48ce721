"""The two kinds of suite-level claim, and the one per-case rule (the leaderboard states them once, in its header).

Every comparison works on oriented seed-paired differences d[c][s] = method - reference on case c at seed s,
signed so that + favours the method. Seeds run on independent random streams per case
(:func:`harness.suites.seeds.seed_stream`), so pairs of different cases are independent under the null.

* **On these cases** (the cases are fixed; the question is whether the method differs from the reference on
  this suite's cases as run): a stratified sign-flip test over every (case, seed) pair. Under the null the
  method and the reference are exchangeable within each seed pair, so each pair's difference may flip its sign;
  the statistic is the mean over cases of each case's mean difference (every case weighs the same, as in
  rliable's aggregate). With N pairs its smallest p is 2 / 2^N: below the level the verdict is "cannot reject
  at N pairs", and a verdict whose p sits at that floor says so. A heterogeneous case effect is a real
  difference on these cases, so this claim does not generalise to other cases.
* **Across cases** (cases as the unit: would the method differ on another case drawn like these): the exact
  sign-flip test on the case means. Its smallest two-sided p is 2 / 2^n for n cases, so below
  :func:`cases_needed` cases it cannot reach the Holm level of the suite and no verdict is given ("too few
  cases to claim (needs >= N)").
* **Per case** (one leaderboard table): the exact sign-flip test on that case's seed-paired differences, Holm
  within the table. With n seeds its smallest p is 2 / 2^n (0.25 at 3 seeds, 0.0625 at 5): where that cannot
  reach the level the cell is descriptive, the mean difference and the range over seeds ("descriptive: n seeds
  cannot reach the level"), not a test.

Each kind is Holm-corrected over the comparisons of the suite (the methods against the reference, or every
pair where a suite compares methods with each other). **Intervals invert the same test**
(:func:`harness.metrics.stats.sign_flip_interval`): the shifts the test does not reject, at the level Holm's
step-down decided that comparison at (alpha / (m - i) for the i-th smallest p while Holm rejects; the level of
the step where it stopped for the rest). So an interval excludes 0 exactly when the verdict is better or worse,
and each covers with probability at least 1 - alpha. The old rules are gone: a percentile case-bootstrap
(``tests/reporting/test_claims_calibration.py`` keeps it as a reference and shows its false-claim rate above the
level) and a stratified seed bootstrap, which covered 0.81-0.91 of the time and could exclude 0 beside "not
established".
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np

from harness.metrics.stats import holm_adjust, sign_flip_interval, sign_flip_p

ALPHA = 0.05


def min_sign_flip_p(n: int) -> float:
    """The smallest two-sided p an exact sign-flip test on ``n`` values can give."""
    return min(1.0, 2.0 / 2**n) if n > 0 else 1.0


def cases_needed(n_tests: int, alpha: float = ALPHA) -> int:
    """Cases the across-cases test needs to reach Holm's smallest level alpha / n_tests."""
    return max(1, math.ceil(math.log2(2 * max(1, n_tests) / alpha)))


@dataclass(frozen=True)
class Test:
    """One comparison: the statistic, its two-sided p, its Holm-adjusted p, the verdict and the interval."""

    estimate: float  # mean over cases of the case mean difference (+ favours the method)
    p: float
    n: int  # (case, seed) pairs for "on these cases", cases for "across cases", seeds per case
    ci: tuple[float, float] | None = None  # the inverted test's interval at ``level`` (None: the floor is above it)
    p_holm: float = math.nan
    verdict: str = ""  # better / worse / not established / cannot reject at ... / too few cases ... / descriptive
    values: tuple[float, ...] = ()  # what the test flips: the differences (or case means)
    weights: tuple[float, ...] | None = None  # their weights in the statistic (None: equal)
    level: float = math.nan  # the level Holm decided this comparison at
    unit: str = "values"  # what n counts: pairs, cases or seeds

    @property
    def floor(self) -> float:
        return min_sign_flip_p(self.n)

    @property
    def label(self) -> str:
        """The verdict as shown: a rejection whose p is the smallest the test can give says so."""
        if self.verdict in ("better", "worse") and self.p <= self.floor * (1 + 1e-9):
            return f"{self.verdict} (p at its floor 2/2^{self.n} for {self.n} {self.unit})"
        return self.verdict

    @property
    def spread(self) -> tuple[float, float]:
        return (min(self.values), max(self.values)) if self.values else (math.nan, math.nan)


def on_these_cases(diffs: Sequence[Sequence[float]], seed: int = 0) -> Test:
    """Stratified sign-flip test of the mean of case means (see the module doc)."""
    groups = [np.asarray(d, dtype=float) for d in diffs if len(d)]
    if not groups:
        raise ValueError("on_these_cases needs at least one case with paired seeds")
    weights = np.concatenate([np.full(len(g), 1.0 / (len(groups) * len(g))) for g in groups])
    flat = np.concatenate(groups)
    estimate = float(np.sum(flat * weights))
    p = float(sign_flip_p(flat, weights, seed=seed))
    return Test(estimate, p, len(flat), values=tuple(flat.tolist()), weights=tuple(weights.tolist()))


def across_cases(case_means: Sequence[float], seed: int = 0) -> Test:
    """Exact sign-flip test on the case means (cases as the unit)."""
    x = np.asarray(case_means, dtype=float)
    if x.size == 0:
        raise ValueError("across_cases needs at least one case")
    return Test(float(x.mean()), float(sign_flip_p(x, seed=seed)), int(x.size), values=tuple(x.tolist()))


def per_case(diff: Sequence[float]) -> Test:
    """Exact sign-flip test on one case's seed-paired differences."""
    x = np.asarray(diff, dtype=float)
    return Test(float(x.mean()), float(sign_flip_p(x)), int(x.size), values=tuple(x.tolist()))


def too_few_cases_text(needed: int) -> str:
    return f"too few cases to claim (needs ≥ {needed})"


def cannot_reject_text(n: int, unit: str = "seeds") -> str:
    return f"cannot reject at {n} {unit}"


def descriptive_text(n_seeds: int) -> str:
    return f"descriptive: {n_seeds} seeds cannot reach the level"


def holm_levels(p: Sequence[float], alpha: float = ALPHA) -> np.ndarray:
    """The level Holm's step-down decides each p at: alpha / (m - i) for the i-th smallest while it rejects, and
    the level of the step where it stopped for every p after it. p <= its level exactly when Holm rejects it."""
    p = np.asarray(p, dtype=float)
    m, levels = len(p), np.empty(len(p))
    level = alpha / max(m, 1)
    stopped = False
    for i, k in enumerate(np.argsort(p, kind="stable")):
        if not stopped:
            level = alpha / (m - i)
            stopped = p[k] > level
        levels[k] = level
    return levels


def holm_family(tests: dict[str, Test], kind: str, alpha: float = ALPHA, seed: int = 0) -> dict[str, Test]:
    """Holm over one suite's comparisons of one kind ("on", "across" or "case"), with the verdict text and the
    interval of the inverted test at the level Holm decided each at."""
    names = list(tests)
    p = [tests[k].p for k in names]
    adjusted = holm_adjust(np.array(p)) if names else np.array([])
    levels = holm_levels(p, alpha) if names else np.array([])
    m = len(names)
    out = {}
    for name, p_adj, level in zip(names, adjusted, levels):
        t = tests[name]
        ci = sign_flip_interval(t.values, float(level), t.weights, seed=seed) if t.values else None
        if t.floor > level:  # at the level Holm decided it at, no data of this size could reject
            verdict = {"across": too_few_cases_text(cases_needed(m, alpha)), "case": descriptive_text(t.n),
                       "on": cannot_reject_text(t.n, "pairs")}[kind]
        elif t.p <= level:  # the same decision as Holm's adjusted p <= alpha, and as the interval excluding 0
            verdict = "better" if t.estimate > 0 else "worse"
        else:
            verdict = "not established"
        out[name] = replace(t, ci=ci, p_holm=float(p_adj), verdict=verdict, level=float(level),
                            unit={"on": "pairs", "across": "cases", "case": "seeds"}[kind])
    return out


# ---- batched forms of the published rule, for the calibration tests (same statistics, arrays of replicates)


def across_cases_batch(case_means: np.ndarray, alpha: float = ALPHA) -> np.ndarray:
    """Claims (bool) of the across-cases rule for arrays shaped (replicates, methods, cases): Holm over methods."""
    reps, m, n = case_means.shape
    if min_sign_flip_p(n) > alpha / m:
        return np.zeros((reps, m), dtype=bool)
    p = sign_flip_p(case_means)
    return holm_adjust(p, axis=-1) < alpha


def on_these_cases_batch(diffs: np.ndarray, alpha: float = ALPHA, seed: int = 0) -> np.ndarray:
    """Claims (bool) of the on-these-cases rule for (replicates, methods, cases, seeds) arrays (equal seeds)."""
    reps, m, c, s = diffs.shape
    p = sign_flip_p(diffs.reshape(reps, m, c * s), n_resamples=999, seed=seed)
    return holm_adjust(p, axis=-1) < alpha
