"""Seed statistics: mean/std/sem, paired t-test verdicts, bootstrap CI."""

from __future__ import annotations

import math
import statistics

import numpy as np
import pytest
from scipy.stats import ttest_rel

from harness.metrics import MetricError, bootstrap_ci, mean_std, paired_ttest, standard_error, summarize


def test_mean_std_sem_use_sample_std() -> None:
    v = [0.81, 0.84, 0.79, 0.86, 0.80]
    m, s = mean_std(v)
    assert m == pytest.approx(statistics.mean(v))
    assert s == pytest.approx(statistics.stdev(v))  # ddof=1
    assert standard_error(v) == pytest.approx(statistics.stdev(v) / math.sqrt(5))
    assert summarize(v) == {
        "mean": pytest.approx(m),
        "std": pytest.approx(s),
        "sem": pytest.approx(s / math.sqrt(5)),
        "n": 5,
    }


def test_single_value_has_undefined_spread() -> None:
    out = summarize([0.7])
    assert out["mean"] == 0.7 and out["n"] == 1 and math.isnan(out["std"]) and math.isnan(out["sem"])
    with pytest.raises(MetricError, match="empty"):
        summarize([])
    with pytest.raises(MetricError, match="NaN"):
        mean_std([0.1, float("nan")])


BASE = np.array([0.70, 0.72, 0.69, 0.71, 0.73])
NOISE = np.array([0.004, -0.003, 0.002, -0.001, 0.003])


def test_ttest_better_worse_equal() -> None:
    better = paired_ttest(BASE + 0.02 + NOISE, BASE)
    assert better.verdict == "better" and better.p_better < 0.05 and better.rule == "t-test"
    assert better.p_better == pytest.approx(ttest_rel(BASE + 0.02 + NOISE, BASE, alternative="greater").pvalue)
    assert better.mean_diff == pytest.approx(0.02 + NOISE.mean()) and better.n == 5
    worse = paired_ttest(BASE - 0.02 + NOISE, BASE)
    assert worse.verdict == "worse" and worse.p_worse < 0.05
    equal = paired_ttest(BASE + NOISE, BASE)
    assert equal.verdict == "equal" and equal.p_better > 0.05 and equal.p_worse > 0.05


def test_ttest_lower_is_better() -> None:
    # Error rates: the method is lower, so it is better when lower is better.
    res = paired_ttest(BASE - 0.02 + NOISE, BASE, higher_is_better=False)
    assert res.verdict == "better" and res.mean_diff < 0
    assert res.p_better == pytest.approx(ttest_rel(BASE - 0.02 + NOISE, BASE, alternative="less").pvalue)
    assert paired_ttest(BASE + 0.02 + NOISE, BASE, higher_is_better=False).verdict == "worse"


def test_ttest_alpha_changes_verdict() -> None:
    a = BASE + np.array([0.01, -0.004, 0.006, 0.0, 0.003])
    res = paired_ttest(a, BASE)
    assert 0.01 < res.p_better < 0.2  # borderline: the verdict depends on alpha
    assert paired_ttest(a, BASE, alpha=0.25).verdict == "better"
    assert paired_ttest(a, BASE, alpha=0.01).verdict == "equal"


def test_ttest_degenerate_rules() -> None:
    same_shift = paired_ttest(BASE + 0.01, BASE + 0.0)
    # Floating subtraction can leave a tiny spread; either way a constant positive shift is "better".
    assert same_shift.verdict == "better"
    exact = paired_ttest([2.0, 3.0, 4.0], [1.0, 2.0, 3.0])
    assert exact.rule == "zero-variance" and exact.verdict == "better" and exact.p_better == 0.0
    assert paired_ttest([2.0, 3.0, 4.0], [1.0, 2.0, 3.0], higher_is_better=False).verdict == "worse"
    zeros = paired_ttest([1.0, 2.0], [1.0, 2.0])
    assert zeros.verdict == "equal" and zeros.rule == "zero-variance"
    one = paired_ttest([0.9], [0.1])
    assert one.verdict == "equal" and one.rule == "n<2" and math.isnan(one.p_better)
    with pytest.raises(MetricError, match="seed-matched"):
        paired_ttest([1.0, 2.0], [1.0])


def test_bootstrap_ci_covers_mean_and_is_seeded() -> None:
    rng = np.random.default_rng(0)
    v = rng.normal(0.8, 0.05, 10)
    lo, hi = bootstrap_ci(v, seed=1)
    assert lo < v.mean() < hi
    assert hi - lo < 0.1 and hi - lo > 0.01
    assert bootstrap_ci(v, seed=1) == (lo, hi)
    lo99, hi99 = bootstrap_ci(v, seed=1, confidence=0.99)
    assert lo99 < lo and hi99 > hi
    # The percentile interval of the mean is close to the normal-theory interval for this sample.
    half = 1.96 * np.std(v, ddof=0) / math.sqrt(len(v))
    assert lo == pytest.approx(v.mean() - half, abs=0.01) and hi == pytest.approx(v.mean() + half, abs=0.01)
    # Coverage over many synthetic experiments: near the nominal 95%.
    hits = 0
    for s in range(200):
        x = np.random.default_rng(100 + s).normal(0.0, 1.0, 30)
        a, b = bootstrap_ci(x, n_resamples=1000, seed=s)
        hits += a <= 0.0 <= b
    assert 0.85 <= hits / 200 <= 0.99
    with pytest.raises(MetricError, match="at least 2"):
        bootstrap_ci([1.0])
