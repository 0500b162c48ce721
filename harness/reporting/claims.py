"""The two kinds of suite-level claim, and the one per-case rule (the leaderboard states them once, in its header).

Every comparison works on oriented seed-paired differences d[c][s] = method - reference on case c at seed s,
signed so that + favours the method.

* **On these cases** (the cases are fixed; the question is whether the method differs from the reference on
  this suite's cases as run): a stratified sign-flip test over every (case, seed) pair. Under the null the
  method and the reference are exchangeable within each seed pair, so each pair's difference may flip its sign;
  the statistic is the mean over cases of each case's mean difference (every case weighs the same, as in
  rliable's aggregate). It runs through :func:`scipy.stats.permutation_test` (exact up to 2^16 sign patterns,
  else Monte Carlo). Its interval is the stratified percentile bootstrap of the same statistic, resampling seeds
  within each case (:func:`scipy.stats.bootstrap` with one sample per case, as rliable does). A heterogeneous
  case effect is a real difference on these cases, so this claim does not generalise to other cases.
* **Across cases** (cases as the unit: would the method differ on another case drawn like these): the exact
  sign-flip test on the case means (:func:`scipy.stats.permutation_test`). Its smallest two-sided p is
  2 / 2^n for n cases, so below :func:`cases_needed` cases it cannot reach the Holm level of the suite and no
  verdict is given ("too few cases to claim (needs >= N)").

Each kind is Holm-corrected over the comparisons of the suite (the methods against the reference, or every
pair where a suite compares methods with each other). The old rule (a percentile bootstrap that resamples
cases) is gone: its interval cannot leave the range of the case means, so with few cases any method whose case
means share a sign was declared better or worse; ``tests/test_claims_calibration.py`` keeps it as a reference
and shows its false-claim rate above the level.

* **Per case** (one leaderboard table): the exact sign-flip test on that case's seed-paired differences, Holm
  within the table. With n seeds its smallest p is 2 / 2^n (0.25 at 3 seeds, 0.0625 at 5), so with 5 or fewer
  seeds it cannot reject at 0.05 and the verdict says "cannot reject at n seeds" (not "no difference").
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats

from harness.metrics.stats import holm_adjust, sign_flip_p

ALPHA = 0.05
BOOT_RESAMPLES = 2000


def min_sign_flip_p(n: int) -> float:
    """The smallest two-sided p an exact sign-flip test on ``n`` values can give."""
    return min(1.0, 2.0 / 2**n) if n > 0 else 1.0


def cases_needed(n_tests: int, alpha: float = ALPHA) -> int:
    """Cases the across-cases test needs to reach Holm's smallest level alpha / n_tests."""
    return max(1, math.ceil(math.log2(2 * max(1, n_tests) / alpha)))


@dataclass(frozen=True)
class Test:
    """One comparison: the statistic, its two-sided p, its Holm-adjusted p and the verdict."""

    estimate: float  # mean over cases of the case mean difference (+ favours the method)
    p: float
    n: int  # (case, seed) pairs for "on these cases", cases for "across cases", seeds per case
    ci: tuple[float, float] | None = None
    p_holm: float = math.nan
    verdict: str = ""  # better / worse / not established / cannot reject at ... / too few cases ...

    def with_holm(self, p_holm: float, alpha: float, floor_text: str | None) -> Test:
        if floor_text is not None:
            verdict = floor_text
        elif p_holm < alpha:
            verdict = "better" if self.estimate > 0 else "worse"
        else:
            verdict = "not established"
        return Test(self.estimate, self.p, self.n, self.ci, float(p_holm), verdict)


def on_these_cases(diffs: Sequence[Sequence[float]], confidence: float = 1 - ALPHA, seed: int = 0) -> Test:
    """Stratified sign-flip test and stratified bootstrap CI of the mean of case means (see the module doc)."""
    groups = [np.asarray(d, dtype=float) for d in diffs if len(d)]
    if not groups:
        raise ValueError("on_these_cases needs at least one case with paired seeds")
    weights = np.concatenate([np.full(len(g), 1.0 / (len(groups) * len(g))) for g in groups])
    flat = np.concatenate(groups)
    estimate = float(np.sum(flat * weights))
    p = float(sign_flip_p(flat, weights, seed=seed))
    ci = None
    if all(len(g) >= 2 for g in groups):
        if all(np.ptp(g) == 0 for g in groups):
            ci = (estimate, estimate)  # no within-case variation: every resample gives the estimate
        else:
            boot = stats.bootstrap(groups, lambda *xs, axis=-1: np.mean([np.mean(x, axis=axis) for x in xs], axis=0),
                                   n_resamples=BOOT_RESAMPLES, confidence_level=confidence, method="percentile",
                                   vectorized=True, rng=np.random.default_rng(seed))
            ci = (float(boot.confidence_interval.low), float(boot.confidence_interval.high))
    return Test(estimate, p, len(flat), ci)


def across_cases(case_means: Sequence[float], seed: int = 0) -> Test:
    """Exact sign-flip test on the case means (cases as the unit)."""
    x = np.asarray(case_means, dtype=float)
    if x.size == 0:
        raise ValueError("across_cases needs at least one case")
    return Test(float(x.mean()), float(sign_flip_p(x, seed=seed)), int(x.size))


def per_case(diff: Sequence[float]) -> Test:
    """Exact sign-flip test on one case's seed-paired differences."""
    x = np.asarray(diff, dtype=float)
    return Test(float(x.mean()), float(sign_flip_p(x)), int(x.size))


def too_few_cases_text(needed: int) -> str:
    return f"too few cases to claim (needs ≥ {needed})"


def cannot_reject_text(n_seeds: int) -> str:
    return f"cannot reject at {n_seeds} seeds"


def holm_family(tests: dict[str, Test], kind: str, alpha: float = ALPHA) -> dict[str, Test]:
    """Holm over one suite's comparisons of one kind ("on", "across" or "case"), with the verdict text."""
    names = list(tests)
    adjusted = holm_adjust(np.array([tests[k].p for k in names])) if names else np.array([])
    m = len(names)
    out = {}
    for name, p_adj in zip(names, adjusted):
        t = tests[name]
        floor = None
        if kind == "across" and min_sign_flip_p(t.n) > alpha / m:
            floor = too_few_cases_text(cases_needed(m, alpha))
        elif kind == "case" and min_sign_flip_p(t.n) > alpha / m:
            floor = cannot_reject_text(t.n)
        out[name] = t.with_holm(p_adj, alpha, floor)
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
