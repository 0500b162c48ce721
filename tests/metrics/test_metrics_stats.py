"""Seed and case statistics: mean/std/sem, paired tests and verdicts, Holm, Friedman/Nemenyi, bootstrap CIs."""

from __future__ import annotations

import math
import statistics

import numpy as np
import pytest
from scipy.stats import chi2, friedmanchisquare, permutation_test, studentized_range, ttest_rel

from harness.metrics._checks import MetricError
from harness.metrics.stats import (
    bootstrap_ci,
    bootstrap_mean_diff_ci,
    friedman,
    holm,
    mean_std,
    paired_test,
    paired_ttest,
    sign_flip_p,
    standard_error,
    summarize,
)


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


# --- two-sided paired_test ---


def scipy_sign_flip_p(a: np.ndarray, b: np.ndarray) -> float:
    res = permutation_test(
        (a, b),
        lambda x, y, axis: np.mean(x - y, axis=axis),
        permutation_type="samples",  # swaps method/baseline within a pair: a sign flip of d_i
        alternative="two-sided",
        n_resamples=np.inf,  # exact
    )
    return float(res.pvalue)


def brute_sign_flip_p(d: np.ndarray) -> float:
    """Exact p built by doubling the list of signed sums, one difference at a time (independent of the enumeration)."""
    sums = np.zeros(1)
    for di in d:
        sums = np.concatenate([sums + di, sums - di])
    return float(np.mean(np.abs(sums) >= abs(d.sum()) - 1e-12 * np.abs(d).sum()))


def test_two_seed_constant_difference_is_not_better() -> None:
    # Issue 13: paired_ttest calls this "better" with p = 0; no exact test on 2 seeds goes below 0.5 two-sided.
    res = paired_test([0.5, 0.5], [0.4, 0.4])
    assert res.verdict == "equal" and res.p == 0.5 and res.test == "permutation-exact" and res.rule == "ok"
    assert res.mean_diff == pytest.approx(0.1) and res.n == 2
    forced_t = paired_test([0.5, 0.5], [0.4, 0.4], test="t")
    assert forced_t.rule == "zero-variance" and forced_t.test == "permutation-exact" and forced_t.p == 0.5
    assert scipy_sign_flip_p(np.array([0.5, 0.5]), np.array([0.4, 0.4])) == 0.5


def test_zero_variance_gets_the_exact_smallest_p() -> None:
    # A constant shift: only the identity and the all-flipped signs reach |sum d|, so p = 2 / 2^n, never 0.
    five = paired_test(BASE + 0.01, BASE, test="t")  # float rounding leaves a 1e-17 spread: still constant
    assert five.rule == "zero-variance" and five.p == pytest.approx(2 / 2**5) and five.verdict == "equal"
    six_a, six_b = np.arange(6.0) + 1.0, np.arange(6.0)
    six = paired_test(six_a, six_b)
    assert six.p == 2 / 2**6 and six.verdict == "better"
    assert paired_test(six_a, six_b, higher_is_better=False).verdict == "worse"
    zeros = paired_test([1.0, 2.0, 3.0], [1.0, 2.0, 3.0], test="t")
    assert zeros.p == 1.0 and zeros.verdict == "equal" and zeros.rule == "zero-variance"
    one = paired_test([0.9], [0.1])
    assert one.verdict == "equal" and one.rule == "n<2" and math.isnan(one.p)


def test_permutation_matches_scipy_exact() -> None:
    rng = np.random.default_rng(3)
    for n in (2, 3, 5, 8, 10):
        for shift in (0.0, 0.01, 0.03):
            b = rng.normal(0.7, 0.02, n)
            a = b + shift + rng.normal(0.0, 0.01, n)
            res = paired_test(a, b, test="permutation")
            assert res.test == "permutation-exact" and res.n_resamples == 0
            assert res.p == pytest.approx(scipy_sign_flip_p(a, b), rel=1e-12)
            assert res.p == pytest.approx(brute_sign_flip_p(a - b), rel=1e-12)
    # Accuracies on a 1/100 grid: ties between signed sums must be counted the same way as scipy counts them.
    a = np.array([0.71, 0.74, 0.70, 0.73, 0.72, 0.75])
    b = np.array([0.70, 0.72, 0.71, 0.72, 0.70, 0.73])
    assert paired_test(a, b).p == pytest.approx(scipy_sign_flip_p(a, b), rel=1e-12)
    # Ties that float rounding breaks: 0.1 + 0.2 - 0.3 != 0 in floats, yet every |signed sum| is >= 0.05 exactly.
    d = np.array([0.1, 0.2, -0.3, 0.05])
    assert paired_test(d, np.zeros(4)).p == 1.0 == scipy_sign_flip_p(d, np.zeros(4))


def test_t_path_is_two_sided_scipy() -> None:
    better = paired_test(BASE + 0.02 + NOISE, BASE, test="t")
    assert better.test == "t" and better.rule == "ok" and better.verdict == "better"
    assert better.p == pytest.approx(ttest_rel(BASE + 0.02 + NOISE, BASE).pvalue, rel=1e-12)
    # Two-sided p is twice the one-sided one the old test used.
    assert better.p == pytest.approx(2 * paired_ttest(BASE + 0.02 + NOISE, BASE).p_better, rel=1e-12)
    assert paired_test(BASE - 0.02 + NOISE, BASE, test="t").verdict == "worse"
    assert paired_test(BASE - 0.02 + NOISE, BASE, test="t", higher_is_better=False).verdict == "better"
    assert paired_test(BASE + NOISE, BASE, test="t").verdict == "equal"
    # With 5 seeds the exact permutation test cannot go below 1/16, so the same data are "equal" under auto.
    auto = paired_test(BASE + 0.02 + NOISE, BASE)
    assert auto.test == "permutation-exact" and auto.p == 2 / 2**5 and auto.verdict == "equal"


def test_auto_uses_t_above_sixteen_seeds() -> None:
    rng = np.random.default_rng(0)
    b = rng.normal(0.7, 0.02, 17)
    a = b + 0.01 + rng.normal(0.0, 0.01, 17)
    res = paired_test(a, b)
    assert res.test == "t" and res.p == pytest.approx(ttest_rel(a, b).pvalue)
    assert paired_test(a[:16], b[:16]).test == "permutation-exact"


def test_monte_carlo_permutation_is_seeded_and_close_to_exact() -> None:
    rng = np.random.default_rng(1)
    b = rng.normal(0.7, 0.02, 18)
    a = b + 0.004 + rng.normal(0.0, 0.01, 18)
    res = paired_test(a, b, test="permutation", seed=5)
    assert res.test == "permutation-mc" and res.n_resamples == 10_000
    assert paired_test(a, b, test="permutation", seed=5) == res
    assert paired_test(a, b, test="permutation", seed=6).p != res.p
    exact = brute_sign_flip_p(a - b)
    assert 0.05 < exact < 0.95  # an informative case for the comparison below
    assert res.p == pytest.approx(exact, abs=4 * math.sqrt(exact * (1 - exact) / 10_000))
    # Constant difference on 20 seeds: Monte-Carlo p is (1 + hits) / (1 + R), never 0.
    const = paired_test(np.full(20, 0.6), np.full(20, 0.5), test="t")
    assert const.rule == "zero-variance" and const.test == "permutation-mc" and 0 < const.p <= 2 / 10_001


def test_paired_test_rejects_bad_input() -> None:
    with pytest.raises(MetricError, match="seed-matched"):
        paired_test([1.0, 2.0], [1.0])
    with pytest.raises(MetricError, match="test must be"):
        paired_test([1.0, 2.0], [1.0, 1.5], test="wilcoxon")  # type: ignore[arg-type]
    with pytest.raises(MetricError, match="alpha"):
        paired_test([1.0, 2.0], [1.0, 1.5], alpha=1.5)


# --- Holm ---


def brute_holm_rejects(p: np.ndarray, alpha: float) -> np.ndarray:
    """Textbook step-down: walk the sorted p-values, reject while p_(i) < alpha / (m - i + 1)."""
    ran = [i for i in range(len(p)) if not math.isnan(p[i])]
    ordered = sorted(ran, key=lambda i: p[i])
    out = np.zeros(len(p), dtype=bool)
    for rank, i in enumerate(ordered):
        if not p[i] < alpha / (len(ordered) - rank):
            break
        out[i] = True
    return out


def test_holm_by_hand() -> None:
    # Sorted: .005 (x4 = .02), .01 (x3 = .03), .03 (x2 = .06), .04 (x1 = .04 -> max(.06, .04) = .06).
    adjusted, rejected = holm([0.01, 0.04, 0.03, 0.005])
    np.testing.assert_allclose(adjusted, [0.03, 0.06, 0.06, 0.02])
    assert rejected.tolist() == [True, False, False, True]
    # NaN passes through and is not counted in m: the same numbers as above.
    adjusted, rejected = holm([0.01, math.nan, 0.04, 0.03, 0.005])
    np.testing.assert_allclose(adjusted, [0.03, math.nan, 0.06, 0.06, 0.02])
    assert rejected.tolist() == [True, False, False, False, True]
    # Capped at 1: .02 x3 = .06, .4 x2 = .8, .6 x1 = .6 -> .8; then .5 x 2 = 1.0 stays at 1.
    np.testing.assert_allclose(holm([0.4, 0.6, 0.02])[0], [0.8, 0.8, 0.06])
    np.testing.assert_allclose(holm([0.5, 0.7])[0], [1.0, 1.0])
    # Rejection is strict (p < alpha), as for every test here: .025 x 2 = .05 is not rejected at .05.
    adjusted, rejected = holm([0.025, 0.5])
    assert adjusted[0] == 0.05 and rejected.tolist() == [False, False]
    empty_adj, empty_rej = holm([])
    assert empty_adj.size == 0 and empty_rej.size == 0
    with pytest.raises(MetricError, match=r"\[0, 1\]"):
        holm([0.2, 1.2])


def test_holm_matches_brute_step_down() -> None:
    rng = np.random.default_rng(7)
    for trial in range(200):
        m = int(rng.integers(1, 12))
        p = rng.uniform(0, 0.2, m) ** rng.uniform(0.5, 2)
        p[rng.random(m) < 0.2] = p[0]  # ties
        p[rng.random(m) < 0.1] = math.nan
        adjusted, _ = holm(p)
        for alpha in (0.01, 0.05, 0.1):
            assert holm(p, alpha)[1].tolist() == brute_holm_rejects(p, alpha).tolist(), (trial, alpha)
        ran = ~np.isnan(p)
        order = np.argsort(p[ran])
        assert np.all(np.diff(adjusted[ran][order]) >= 0) and np.all(adjusted[ran] <= 1.0)
        assert np.all(adjusted[ran] >= p[ran])


# --- Friedman and Nemenyi ---


def test_friedman_ranks_by_hand() -> None:
    # Case 1: A best, B and C tied (2.5 each); case 2: C > B > A; case 3: A > C > B.
    x = [[0.9, 0.5, 0.5], [0.1, 0.2, 0.3], [0.8, 0.6, 0.7]]
    res = friedman(x)
    np.testing.assert_allclose(res.mean_ranks, [(1 + 3 + 1) / 3, (2.5 + 2 + 3) / 3, (2.5 + 1 + 2) / 3])
    assert res.n_cases == 3 and res.n_methods == 3 and res.df == 2 and res.dropped == ()
    lower = friedman(-np.asarray(x), higher_is_better=False)
    assert lower.mean_ranks == res.mean_ranks and lower.statistic == pytest.approx(res.statistic)


def test_friedman_matches_scipy() -> None:
    rng = np.random.default_rng(11)
    for n, k in ((8, 3), (8, 5), (20, 4), (5, 10)):
        x = np.round(rng.normal(0.7, 0.03, (n, k)) + np.linspace(0, 0.03, k), 2)  # 2 decimals: some ties
        res = friedman(x)
        ref = friedmanchisquare(*x.T)
        assert res.statistic == pytest.approx(ref.statistic, rel=1e-10)
        assert res.p == pytest.approx(ref.pvalue, rel=1e-10)


def test_friedman_two_methods_is_the_sign_test() -> None:
    # scipy refuses k = 2; the formula then is (wins - losses)^2 / (wins + losses), ties left out.
    a = np.array([0.8, 0.7, 0.9, 0.6, 0.75, 0.8, 0.7])
    b = np.array([0.7, 0.6, 0.8, 0.7, 0.75, 0.6, 0.65])  # 5 wins, 1 loss, 1 tie
    res = friedman(np.column_stack([a, b]))
    assert res.statistic == pytest.approx((5 - 1) ** 2 / 6) and res.p == pytest.approx(chi2.sf(16 / 6, 1))
    full_tie = friedman([[0.5, 0.5], [0.7, 0.7]])
    assert full_tie.statistic == 0.0 and full_tie.p == 1.0


def test_friedman_drops_incomplete_cases() -> None:
    x = np.array([[0.9, 0.5, 0.6], [0.8, math.nan, 0.7], [0.7, 0.6, 0.65], [0.6, 0.5, 0.4]])
    res = friedman(x)
    full = friedman(x[[0, 2, 3]])
    assert res.dropped == (1,) and res.n_dropped == 1 and res.n_cases == 3
    assert res.mean_ranks == full.mean_ranks and res.statistic == full.statistic
    with pytest.raises(MetricError, match="at least 2 cases"):
        friedman([[0.9, math.nan, 0.6], [0.8, 0.7, 0.6]])
    with pytest.raises(MetricError, match="at least 2 methods"):
        friedman([[0.9], [0.8]])
    with pytest.raises(MetricError, match="matrix"):
        friedman([0.9, 0.8])


def test_nemenyi_cd_matches_demsar_table() -> None:
    # Demsar (2006), Table 5(a): q_0.05 for k = 2..10, and 5(b): q_0.10.
    q05 = [1.960, 2.343, 2.569, 2.728, 2.850, 2.949, 3.031, 3.102, 3.164]
    q10 = [1.645, 2.052, 2.291, 2.459, 2.589, 2.693, 2.780, 2.855, 2.920]
    rng = np.random.default_rng(0)
    for k, a05, a10 in zip(range(2, 11), q05, q10, strict=True):
        x = rng.random((6, k))
        res = friedman(x)
        assert res.q_alpha == pytest.approx(a05, abs=1e-3)
        assert friedman(x, alpha=0.10).q_alpha == pytest.approx(a10, abs=1e-3)
        assert res.cd == pytest.approx(a05 * math.sqrt(k * (k + 1) / 36), abs=1e-3)
    # Demsar's worked example: k = 4 classifiers, N = 14 data sets, CD = 2.569 * sqrt(4 * 5 / 84) = 1.25.
    res = friedman(rng.random((14, 4)))
    assert res.cd == pytest.approx(1.25, abs=0.005)
    assert res.q_alpha == pytest.approx(studentized_range.ppf(0.95, 4, np.inf) / math.sqrt(2))


# --- bootstrap CIs of differences ---


def test_bootstrap_mean_diff_ci() -> None:
    d = (BASE + 0.02 + NOISE) - BASE
    lo, hi = bootstrap_mean_diff_ci(d, seed=3)
    assert lo < d.mean() < hi and lo > 0.0  # every difference is positive
    assert (lo, hi) == bootstrap_ci(d, seed=3)
    assert bootstrap_mean_diff_ci(d, seed=3) == (lo, hi)
    with pytest.raises(MetricError, match="NaN"):
        bootstrap_mean_diff_ci([0.1, math.nan])


def test_one_sided_sign_flip_matches_enumeration():
    d = np.array([0.3, 0.1, 0.2, 0.4, 0.5])
    assert sign_flip_p(d, alternative="greater") == pytest.approx(1 / 32)
    assert sign_flip_p(d, alternative="less") == 1.0
    assert sign_flip_p(d) == pytest.approx(2 / 32)
    mixed = np.array([0.3, -0.1, 0.2, 0.4, -0.5])
    assert sign_flip_p(mixed, alternative="less") == pytest.approx(1 - sign_flip_p(mixed, alternative="greater")
                                                                   + brute_tie_mass(mixed))


def brute_tie_mass(d: np.ndarray) -> float:
    """Share of sign patterns whose sum equals the observed one (counted by both one-sided p-values)."""
    signs = 1 - 2 * ((np.arange(2 ** d.size)[:, None] >> np.arange(d.size)) & 1)
    return float(np.mean(np.isclose(signs @ d, d.sum())))
