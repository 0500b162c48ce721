"""Statistics over seeds.

Definitions:

* mean, sample standard deviation std = sqrt(sum (x - mean)^2 / (n - 1)) (ddof=1), standard error
  sem = std / sqrt(n). With a single value std and sem are NaN (undefined), never 0.
* Paired one-sided t-test on seed-matched differences d_i = method_i - baseline_i (``scipy.stats.ttest_rel``).
  With ``higher_is_better`` p_better uses alternative="greater" and p_worse alternative="less" (swapped when lower
  is better). Verdict: "better" if p_better < alpha, "worse" if p_worse < alpha, otherwise "equal".
  Rules where the t statistic does not exist:
    - n < 2: verdict "equal" (one seed is no evidence), p-values NaN, ``rule="n<2"``;
    - all d_i equal and nonzero (zero variance): decided by the sign of d, p_better/p_worse = 0/1,
      ``rule="zero-variance"``;
    - all d_i zero: "equal", p-values 1, ``rule="zero-variance"``.
* Bootstrap CI: percentile interval of ``statistic`` over ``n_resamples`` resamples with replacement
  (seeded numpy Generator), bounds at quantiles (1 - confidence)/2 and (1 + confidence)/2.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from harness.metrics._checks import MetricError, as_float_1d

__all__ = ["PairedTTest", "bootstrap_ci", "mean_std", "paired_ttest", "standard_error", "summarize"]

Verdict = Literal["better", "equal", "worse"]


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


def paired_ttest(method: Any, baseline: Any, *, higher_is_better: bool = True, alpha: float = 0.05) -> PairedTTest:
    """One-sided paired t-tests of ``method`` against ``baseline`` over matched seeds (see module docstring)."""
    from scipy.stats import ttest_rel  # lazy: scipy.stats import is slow

    a = as_float_1d(method, "method", finite=True)
    b = as_float_1d(baseline, "baseline", finite=True)
    if a.size != b.size:
        raise MetricError(f"paired test needs seed-matched values, got {a.size} and {b.size}")
    if not 0.0 < alpha < 1.0:
        raise MetricError(f"alpha must be in (0, 1), got {alpha}")
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
    p_better = float(ttest_rel(a, b, alternative=up).pvalue)
    p_worse = float(ttest_rel(a, b, alternative=down).pvalue)
    if p_better < alpha:
        verdict: Verdict = "better"
    elif p_worse < alpha:
        verdict = "worse"
    else:
        verdict = "equal"
    return result(verdict, p_better, p_worse, "t-test")


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
