"""Statistics over seeds and over cases.

Conventions: a difference is d_i = method_i - baseline_i over matched seeds; a test rejects when p < alpha (strict,
everywhere in this module).

* mean, sample standard deviation std = sqrt(sum (x - mean)^2 / (n - 1)) (ddof=1), standard error
  sem = std / sqrt(n). With a single value std and sem are NaN (undefined), never 0.
* :func:`paired_ttest` (kept for existing callers): one-sided paired t-tests (``scipy.stats.ttest_rel``).
  With ``higher_is_better`` p_better uses alternative="greater" and p_worse alternative="less" (swapped when lower
  is better). Verdict: "better" if p_better < alpha, "worse" if p_worse < alpha, otherwise "equal".
  Rules where the t statistic does not exist:
    - n < 2: verdict "equal" (one seed is no evidence), p-values NaN, ``rule="n<2"``;
    - all d_i equal and nonzero (zero variance): decided by the sign of d, p_better/p_worse = 0/1,
      ``rule="zero-variance"``;
    - all d_i zero: "equal", p-values 1, ``rule="zero-variance"``.
  Running both one-sided tests at alpha makes a 2*alpha error rate; new code should use :func:`paired_test`.
* :func:`paired_test`: one TWO-SIDED test of H0 "the d_i are symmetric about 0".
    - ``test="t"``: p of ``scipy.stats.ttest_rel(method, baseline)`` (two-sided).
    - ``test="permutation"``: sign-flip permutation test. Statistic T(s) = |sum_i s_i d_i| for signs s in {-1,+1}^n;
      p = #{s : T(s) >= T(1)} / 2^n over all 2^n sign vectors (identity included), ties within floating-point
      rounding (1e-12 * sum |d_i|) counted as >=. Exact for n <= 16. Since s and -s give the same T, the smallest
      possible p is 2 / 2^n (0.5 for n=2, 0.0625 for n=5): with 5 seeds no difference is significant at 0.05.
      For n > 16: Monte-Carlo over ``n_resamples`` sign vectors drawn from ``numpy.random.default_rng(seed)``,
      p = (1 + #{T(s) >= T(1)}) / (1 + n_resamples), never 0; the result says ``test="permutation-mc"``.
    - ``test="auto"`` (default): the exact permutation test for n <= 16 (exact, distribution-free, never p = 0,
      the right test where normality cannot be checked on a handful of seeds), the t-test for n > 16 (deterministic,
      and close to the permutation test at that size).
    - Verdict: "better" / "worse" by the sign of mean(d) (flipped when lower is better) when p < alpha, otherwise
      "equal". Rules: n < 2 gives "equal", p = NaN, ``rule="n<2"``. Zero variance (all d_i equal up to rounding:
      max d - min d <= 1e-12 * max |value|) has no t statistic, so the t-test path runs the permutation test
      instead and says ``rule="zero-variance"``: a constant nonzero d gets p = 2 / 2^n, a zero d gets p = 1.
* :func:`holm`: Holm-Bonferroni step-down. With the m non-NaN p-values sorted ascending p_(1) <= ... <= p_(m),
  adjusted p_(i) = min(1, max_{j <= i} (m - j + 1) p_(j)); a hypothesis is rejected when its adjusted p < alpha,
  which is the step-down rule "reject while p_(i) < alpha / (m - i + 1)". NaN p-values (tests that did not run)
  are not counted in m, stay NaN and are never rejected.
* :func:`friedman`: over a cases x methods score matrix (N complete cases, k methods; ``higher_is_better=False``
  for errors), each case's scores are ranked 1 = best, ties getting their average rank; R_j is method j's mean
  rank. Statistic (tie-corrected, as ``scipy.stats.friedmanchisquare``):
  chi2 = [12 N / (k (k + 1)) sum_j (R_j - (k + 1) / 2)^2] / C with C = 1 - sum_ties (t^3 - t) / (N k (k^2 - 1)),
  p from chi-square with k - 1 degrees of freedom. For k = 2 (scipy refuses) the same
  formula is the normal-approximation two-sided sign test, (wins - losses)^2 / (wins + losses).
  If every case is a full tie (C = 0) all rankings are identical, the exact null distribution is a point mass and
  p = 1 with statistic 0. Nemenyi critical difference (Demsar 2006): CD = q_alpha sqrt(k (k + 1) / (6 N)),
  q_alpha = studentized_range.ppf(1 - alpha, k, inf) / sqrt(2); two methods differ when their mean ranks differ
  by more than CD. Missing cells (NaN: a method not run on a case) drop the whole case; the result reports how
  many and which cases were dropped.
* :func:`bootstrap_ci`: percentile interval of ``statistic`` over ``n_resamples`` resamples with replacement
  (seeded numpy Generator), bounds at quantiles (1 - confidence)/2 and (1 + confidence)/2.
* :func:`bootstrap_mean_diff_ci`: :func:`bootstrap_ci` of mean(d) over the seed-paired differences d.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from scipy import stats as scipy_stats

from harness.metrics._checks import MetricError, _np, as_float_1d

__all__ = [
    "FriedmanResult",
    "PairedComparison",
    "PairedTTest",
    "bootstrap_ci",
    "bootstrap_mean_diff_ci",
    "friedman",
    "holm",
    "mean_std",
    "paired_test",
    "paired_ttest",
    "standard_error",
    "summarize",
]

Verdict = Literal["better", "equal", "worse"]
TestName = Literal["auto", "t", "permutation"]

EXACT_MAX_N = 16  # 2^16 sign vectors: the largest exact enumeration (65536 x 16 matrix, milliseconds)
TIE_RTOL = 1e-12  # relative tolerance for "equal up to floating-point rounding"


def _values(values: Any) -> np.ndarray:
    return as_float_1d(values, "values")


def mean_std(values: Any) -> tuple[float, float]:
    """(mean, sample std with ddof=1); std is NaN for a single value."""
    v = _values(values)
    std = float(np.std(v, ddof=1)) if v.size > 1 else math.nan
    return float(np.mean(v)), std


def standard_error(values: Any) -> float:
    """Standard error of the mean, std(ddof=1) / sqrt(n); NaN for a single value."""
    v = _values(values)
    return float(np.std(v, ddof=1) / math.sqrt(v.size)) if v.size > 1 else math.nan


def summarize(values: Any) -> dict[str, float | int]:
    """{"mean", "std" (ddof=1), "sem", "n"} for results records; std/sem are NaN when n == 1."""
    v = _values(values)
    mean, std = mean_std(v)
    sem = std / math.sqrt(v.size) if v.size > 1 else math.nan
    return {"mean": mean, "std": std, "sem": sem, "n": int(v.size)}


@dataclass(frozen=True)
class PairedTTest:
    """Outcome of :func:`paired_ttest`. ``mean_diff`` is mean(method - baseline) in raw units."""

    verdict: Verdict
    p_better: float
    p_worse: float
    mean_diff: float
    n: int
    alpha: float
    higher_is_better: bool
    rule: str  # "t-test", "zero-variance" or "n<2"


def _paired(method: Any, baseline: Any, alpha: float) -> tuple[np.ndarray, np.ndarray]:
    a = as_float_1d(method, "method", finite=True)
    b = as_float_1d(baseline, "baseline", finite=True)
    if a.size != b.size:
        raise MetricError(f"paired test needs seed-matched values, got {a.size} and {b.size}")
    _check_alpha(alpha)
    return a, b


def _check_alpha(alpha: float) -> None:
    if not 0.0 < alpha < 1.0:
        raise MetricError(f"alpha must be in (0, 1), got {alpha}")


def paired_ttest(method: Any, baseline: Any, *, higher_is_better: bool = True, alpha: float = 0.05) -> PairedTTest:
    """One-sided paired t-tests of ``method`` against ``baseline`` over matched seeds (see module docstring)."""
    a, b = _paired(method, baseline, alpha)
    d = a - b
    n = int(d.size)
    mean_diff = float(d.mean())
    good = 1.0 if higher_is_better else -1.0  # sign of a difference that favours the method

    def result(verdict: Verdict, p_better: float, p_worse: float, rule: str) -> PairedTTest:
        return PairedTTest(verdict, p_better, p_worse, mean_diff, n, alpha, higher_is_better, rule)

    if n < 2:
        return result("equal", math.nan, math.nan, "n<2")
    if np.all(d == d[0]):
        # ttest_rel would divide by a zero standard error; the data are unambiguous, so decide by sign.
        if d[0] == 0:
            return result("equal", 1.0, 1.0, "zero-variance")
        return (
            result("better", 0.0, 1.0, "zero-variance")
            if d[0] * good > 0
            else result("worse", 1.0, 0.0, "zero-variance")
        )
    up, down = ("greater", "less") if higher_is_better else ("less", "greater")
    p_better = float(scipy_stats.ttest_rel(a, b, alternative=up).pvalue)
    p_worse = float(scipy_stats.ttest_rel(a, b, alternative=down).pvalue)
    if p_better < alpha:
        verdict: Verdict = "better"
    elif p_worse < alpha:
        verdict = "worse"
    else:
        verdict = "equal"
    return result(verdict, p_better, p_worse, "t-test")


@dataclass(frozen=True)
class PairedComparison:
    """Outcome of :func:`paired_test`. ``p`` is two-sided; ``mean_diff`` is mean(method - baseline) in raw units.

    ``test`` is the test that produced ``p``: "t", "permutation-exact", "permutation-mc" or "none" (n < 2);
    ``rule`` is "ok", "zero-variance" (the t-test was asked for but the permutation test ran) or "n<2";
    ``n_resamples`` is the Monte-Carlo sample size, 0 for an exact or t-test p.
    """

    verdict: Verdict
    p: float
    mean_diff: float
    n: int
    test: str
    rule: str
    alpha: float
    higher_is_better: bool
    n_resamples: int = 0


def holm_adjust(p: np.ndarray, axis: int = -1) -> np.ndarray:
    """Holm's step-down adjusted p-values along ``axis`` (NaN entries stay NaN and do not count)."""
    p = np.moveaxis(np.asarray(p, dtype=float), axis, -1)
    finite = np.isfinite(p)
    m = finite.sum(axis=-1, keepdims=True)
    filled = np.where(finite, p, np.inf)
    order = np.argsort(filled, axis=-1)
    ranked = np.take_along_axis(filled, order, axis=-1)
    factor = m - np.arange(p.shape[-1])  # m, m-1, ... for the sorted p-values
    adjusted_sorted = np.minimum(1.0, np.maximum.accumulate(ranked * np.maximum(factor, 1), axis=-1))
    out = np.empty_like(adjusted_sorted)
    np.put_along_axis(out, order, adjusted_sorted, axis=-1)
    out = np.where(finite, out, np.nan)
    return np.moveaxis(out, -1, axis)


def sign_flip_p(d: np.ndarray, weights: np.ndarray | None = None, n_resamples: int = 9999, seed: int = 0,
                alternative: Literal["two-sided", "less", "greater"] = "two-sided") -> np.ndarray:
    """Sign-flip p of the weighted mean along the last axis (batched over leading axes): exact over all 2^n sign
    patterns up to ``EXACT_MAX_N`` values, Monte Carlo with scipy above. The one sign-flip test of the harness
    (claims, findings, the gate, :func:`paired_test`)."""
    d = np.asarray(d, dtype=float)
    n = d.shape[-1]
    w = np.full(n, 1.0 / n) if weights is None else np.asarray(weights, dtype=float)

    def statistic(x, axis=-1):
        return np.sum(np.moveaxis(x, axis, -1) * w, axis=-1)

    if n <= EXACT_MAX_N:
        # exact: every sign pattern at once as one matrix product (scipy's exact enumeration loops in Python,
        # far too slow for the calibration tests' thousands of replicates; the result is the same p)
        signs = 1 - 2 * ((np.arange(2**n)[:, None] >> np.arange(n)) & 1)
        null = (d * w) @ signs.T  # (..., 2^n)
        observed = np.sum(d * w, axis=-1, keepdims=True)
        tol = 1e-12 * np.maximum(1.0, np.abs(observed))  # ties within rounding count as ties
        if alternative == "less":
            return np.mean(null <= observed + tol, axis=-1)
        if alternative == "greater":
            return np.mean(null >= observed - tol, axis=-1)
        return np.mean(np.abs(null) >= np.abs(observed) - tol, axis=-1)
    res = scipy_stats.permutation_test((d,), statistic, permutation_type="samples", vectorized=True, axis=-1,
                                       n_resamples=n_resamples, alternative=alternative,
                                       rng=np.random.default_rng(seed))
    return np.minimum(1.0, np.asarray(res.pvalue, dtype=float))


def sign_flip_interval(d: Any, level: float, weights: Any = None, seed: int = 0,
                       tol: float = 1e-7) -> tuple[float, float] | None:
    """The shifts delta that :func:`sign_flip_p` on ``d - delta`` does not reject at ``level`` (two-sided): the
    interval the test inverts to, so it excludes 0 exactly when the test rejects. Its ends are found by bisection
    between the weighted mean (p = 1) and a shift past every value (p at its floor, 2 / 2^n). None when that floor
    is above ``level``: the test rejects no shift, so every value is in the interval."""
    d = np.asarray(d, dtype=float)
    w = np.full(d.size, 1.0 / d.size) if weights is None else np.asarray(weights, dtype=float) / np.sum(weights)
    if d.size == 0 or min(1.0, 2.0 / 2**d.size) > level:
        return None
    centre = float(np.sum(d * w))
    span = float(np.ptp(d)) + abs(centre) + 1e-9

    def end(direction: float) -> float:
        inside, outside = centre, centre + direction * (span + 1e-9)  # p(outside) is the floor <= level
        while abs(outside - inside) > tol * (1.0 + abs(centre)):
            middle = (inside + outside) / 2
            if sign_flip_p(d - middle, w, seed=seed) > level:
                inside = middle
            else:
                outside = middle
        return inside

    return end(-1.0), end(1.0)


def paired_test(
    method: Any,
    baseline: Any,
    *,
    higher_is_better: bool = True,
    alpha: float = 0.05,
    test: TestName = "auto",
    n_resamples: int = 10_000,
    seed: int = 0,
) -> PairedComparison:
    """Two-sided paired test of ``method`` against ``baseline`` over matched seeds (see module docstring).

    ``n_resamples`` and ``seed`` only matter for the Monte-Carlo permutation test (n > 16).
    """
    if test not in ("auto", "t", "permutation"):
        raise MetricError(f"test must be 'auto', 't' or 'permutation', got {test!r}")
    a, b = _paired(method, baseline, alpha)
    d = a - b
    n = int(d.size)
    mean_diff = float(d.mean())

    def result(p: float, name: str, rule: str, resamples: int = 0) -> PairedComparison:
        verdict: Verdict = "equal"
        if p < alpha:
            favours = mean_diff > 0 if higher_is_better else mean_diff < 0
            verdict = "better" if favours else "worse"
        return PairedComparison(verdict, p, mean_diff, n, name, rule, alpha, higher_is_better, resamples)

    if n < 2:
        return result(math.nan, "none", "n<2")
    if test == "auto":
        test = "permutation" if n <= EXACT_MAX_N else "t"
    scale = max(float(np.abs(a).max()), float(np.abs(b).max()))
    constant = float(np.ptp(d)) <= TIE_RTOL * scale
    if test == "t" and not constant:
        return result(float(scipy_stats.ttest_rel(a, b).pvalue), "t", "ok")
    if n > EXACT_MAX_N and n_resamples < 1:
        raise MetricError(f"n_resamples must be >= 1, got {n_resamples}")
    resamples = n_resamples if n > EXACT_MAX_N else 0
    p = float(sign_flip_p(d, n_resamples=n_resamples, seed=seed))
    name = "permutation-mc" if resamples else "permutation-exact"
    return result(p, name, "zero-variance" if test == "t" else "ok", resamples)


def holm(pvalues: Any, alpha: float = 0.05) -> tuple[np.ndarray, np.ndarray]:
    """Holm-Bonferroni step-down: (adjusted p-values, rejected) in input order; NaN passes through, not in m."""
    p = _pvalues(pvalues)
    _check_alpha(alpha)
    adjusted = holm_adjust(p)
    ran = np.flatnonzero(~np.isnan(p))
    rejected = np.zeros(p.shape, dtype=bool)
    rejected[ran] = adjusted[ran] < alpha
    return adjusted, rejected


def _pvalues(pvalues: Any) -> np.ndarray:
    p = _np(pvalues)
    if p.ndim != 1:
        raise MetricError(f"pvalues must be 1-D, got shape {p.shape}")
    if p.size and p.dtype.kind not in "biuf":
        raise MetricError(f"pvalues must be numeric, got dtype {p.dtype}")
    p = p.astype(np.float64)
    ran = p[~np.isnan(p)]
    if ((ran < 0) | (ran > 1)).any():
        raise MetricError("pvalues must lie in [0, 1] (NaN for a test that did not run)")
    return p


@dataclass(frozen=True)
class FriedmanResult:
    """Outcome of :func:`friedman`. ``mean_ranks`` follow the matrix's column order (1 = best).

    ``n_cases`` counts the complete cases used; ``dropped`` lists the row indices of cases with a missing cell.
    """

    mean_ranks: tuple[float, ...]
    statistic: float
    p: float
    df: int
    cd: float
    q_alpha: float
    alpha: float
    n_cases: int
    n_methods: int
    dropped: tuple[int, ...]
    higher_is_better: bool

    @property
    def n_dropped(self) -> int:
        return len(self.dropped)


def friedman(matrix: Any, *, higher_is_better: bool = True, alpha: float = 0.05) -> FriedmanResult:
    """Friedman test, mean ranks and Nemenyi CD over a cases x methods matrix; NaN cells drop their case."""
    from scipy.stats import chi2, rankdata, studentized_range  # lazy: scipy.stats import is slow

    x = _np(matrix)
    if x.ndim != 2:
        raise MetricError(f"friedman needs a cases x methods matrix, got shape {x.shape}")
    if x.size and x.dtype.kind not in "biuf":
        raise MetricError(f"friedman scores must be numeric, got dtype {x.dtype}")
    x = x.astype(np.float64)
    _check_alpha(alpha)
    if np.isinf(x).any():
        raise MetricError("friedman scores contain +-inf")
    complete = ~np.isnan(x).any(axis=1)
    n, k = int(complete.sum()), x.shape[1]
    if k < 2:
        raise MetricError(f"friedman needs at least 2 methods, got {k}")
    if n < 2:
        raise MetricError(f"friedman needs at least 2 cases with every method, got {n} of {x.shape[0]}")
    scores = x[complete] if higher_is_better else -x[complete]
    ranks = rankdata(-scores, axis=1)  # 1 = best, ties averaged
    mean_ranks = ranks.mean(axis=0)
    ties = 0.0
    for row in scores:
        _, counts = np.unique(row, return_counts=True)
        ties += float((counts**3 - counts).sum())
    correction = 1.0 - ties / (n * k * (k * k - 1))
    if correction <= 0.0:  # every case a full tie: one possible ranking, p = 1
        statistic, p = 0.0, 1.0
    else:
        spread = float(((mean_ranks - (k + 1) / 2.0) ** 2).sum())
        statistic = 12.0 * n / (k * (k + 1)) * spread / correction
        p = float(chi2.sf(statistic, k - 1))
    q_alpha = float(studentized_range.ppf(1.0 - alpha, k, np.inf)) / math.sqrt(2.0)
    cd = q_alpha * math.sqrt(k * (k + 1) / (6.0 * n))
    return FriedmanResult(
        mean_ranks=tuple(float(r) for r in mean_ranks),
        statistic=statistic,
        p=p,
        df=k - 1,
        cd=cd,
        q_alpha=q_alpha,
        alpha=alpha,
        n_cases=n,
        n_methods=k,
        dropped=tuple(int(i) for i in np.flatnonzero(~complete)),
        higher_is_better=higher_is_better,
    )


def bootstrap_ci(
    values: Any,
    *,
    confidence: float = 0.95,
    n_resamples: int = 10_000,
    seed: int = 0,
    statistic: Callable[..., Any] = np.mean,
) -> tuple[float, float]:
    """Percentile bootstrap CI for ``statistic`` (called as ``statistic(samples, axis=1)``), seeded."""
    v = _values(values)
    if v.size < 2:
        raise MetricError("a bootstrap CI needs at least 2 values")
    if not 0.0 < confidence < 1.0 or n_resamples < 1:
        raise MetricError(f"need 0 < confidence < 1 and n_resamples >= 1, got {confidence}, {n_resamples}")
    rng = np.random.default_rng(seed)
    rows = max(1, (1 << 22) // v.size)  # resample in blocks to bound memory for long inputs
    stats = np.empty(n_resamples)
    for start in range(0, n_resamples, rows):
        m = min(rows, n_resamples - start)
        idx = rng.integers(0, v.size, size=(m, v.size))
        stats[start : start + m] = statistic(v[idx], axis=1)
    tail = (1.0 - confidence) / 2.0
    lo, hi = np.quantile(stats, [tail, 1.0 - tail])
    return float(lo), float(hi)


def bootstrap_mean_diff_ci(
    differences: Any, *, confidence: float = 0.95, n_resamples: int = 10_000, seed: int = 0
) -> tuple[float, float]:
    """Percentile bootstrap CI of the mean paired difference mean(method - baseline) over seeds."""
    return bootstrap_ci(
        as_float_1d(differences, "differences"), confidence=confidence, n_resamples=n_resamples, seed=seed
    )
