"""Calibration of both kinds of claim (harness.reporting.claims) on simulated null data: across cases with
heterogeneous case effects, against the old percentile case-bootstrap rule kept here only as a reference that
fails; on these cases with a seed effect, unequal per-case noise and heavy tails, with seeds on per-case streams
(as the runner runs them) and, as a reference that fails, on the same seed integers in every case. Then the
inverted-test intervals: their coverage, and that they never contradict the verdict.

Monte-Carlo error: with R = 2000 replicates a rate of 0.05 has standard error sqrt(0.05 * 0.95 / R) = 0.0049;
the published rule must stay below 0.05 + 3 SE (0.065; at 2 SE one seed of 8 sat at 0.060)."""

from __future__ import annotations

import numpy as np
import pytest

from harness.reporting import claims

R, M = 2000, 3  # replicates, methods compared with one baseline (Holm / Bonferroni over M)
SE = np.sqrt(0.05 * 0.95 / R)


def null_case_means(n_cases: int, n_seeds: int, seed: int) -> np.ndarray:
    """(R, M, cases) case means of method - baseline: per-case effects N(0, tau_c) with tau_c varying by case."""
    rng = np.random.default_rng(seed)
    tau = rng.uniform(0.005, 0.03, size=n_cases)
    effect = rng.normal(0, 1, size=(R, M, n_cases)) * tau
    base_noise = rng.normal(0, 0.01, size=(R, 1, n_cases, n_seeds))
    noise = rng.normal(0, 0.01, size=(R, M, n_cases, n_seeds))
    return effect + (noise - base_noise).mean(axis=-1)


def old_rule(case_means: np.ndarray, alpha: float = 0.05, boots: int = 1000) -> np.ndarray:
    """The removed rule: percentile case-bootstrap CI at 1 - alpha/M; a claim when it excludes 0."""
    n = case_means.shape[-1]
    idx = np.random.default_rng(0).integers(0, n, size=(boots, n))
    means = case_means[..., idx].mean(axis=-1)  # (R, M, boots)
    lo, hi = np.quantile(means, [alpha / M / 2, 1 - alpha / M / 2], axis=-1)
    return (lo > 0) | (hi < 0)


@pytest.mark.parametrize("n_cases", [3, 4, 6, 12])
@pytest.mark.parametrize("n_seeds", [3, 5])
def test_across_cases_family_wise_rate_is_at_most_the_level(n_cases, n_seeds):
    x = null_case_means(n_cases, n_seeds, seed=n_cases * 10 + n_seeds)
    rate = claims.across_cases_batch(x).any(axis=-1).mean()
    assert rate <= 0.05 + 3 * SE, rate


def test_old_percentile_bootstrap_rule_fails_the_same_test():
    rates = {n: old_rule(null_case_means(n, 3, seed=n)).any(axis=-1).mean() for n in (4, 6)}
    assert all(r > 0.05 + 3 * SE for r in rates.values()), rates


def test_power_for_a_real_effect_across_twelve_cases():
    # true mean case effect +0.02 (case spread sd 0.01, seed noise sd 0.01): found in >= 80% of replicates
    x = null_case_means(12, 5, seed=7) + 0.02
    assert claims.across_cases_batch(x).mean() >= 0.8


def null_pairs(n_cases: int, n_seeds: int, seed: int, shared_seeds: bool) -> np.ndarray:
    """(R, M, cases, seeds) seed-paired differences under the on-these-cases null (method and baseline exchangeable
    in each pair): a seed effect (sd 0.01) that favours one side at random, per case and seed on per-case streams,
    or the same for a seed index in every case when every case reuses the seed integers; per-case noise of unequal
    scale (sd 0.002-0.02) with heavy tails (Student t, 3 df)."""
    rng = np.random.default_rng(seed)
    shape = (R, M, 1 if shared_seeds else n_cases, n_seeds)
    seed_effect = rng.normal(0, 0.01, size=shape)
    scale = rng.uniform(0.002, 0.02, size=(1, 1, n_cases, 1))
    return seed_effect + scale * rng.standard_t(3, size=(R, M, n_cases, n_seeds))


@pytest.mark.parametrize("n_cases,n_seeds", [(4, 3), (8, 3), (5, 5), (12, 2)])
def test_on_these_cases_family_wise_rate_is_at_most_the_level(n_cases, n_seeds):
    x = null_pairs(n_cases, n_seeds, seed=n_cases * 10 + n_seeds, shared_seeds=False)
    rate = claims.on_these_cases_batch(x).any(axis=-1).mean()
    assert rate <= 0.05 + 3 * SE, rate


def test_on_these_cases_with_the_same_seed_integers_in_every_case_rejects_too_often():
    rate = claims.on_these_cases_batch(null_pairs(8, 3, seed=3, shared_seeds=True)).any(axis=-1).mean()
    assert rate > 0.05 + 3 * SE, rate  # why the runner gives each case its own seed streams


def test_inverted_intervals_cover_and_never_contradict_the_verdict():
    rng = np.random.default_rng(11)
    covered, reps = 0, 300
    for _ in range(reps):
        shift = rng.normal(0, 0.01)
        groups = [shift + rng.uniform(0.002, 0.02) * rng.standard_t(3, size=3) for _ in range(4)]
        tests = {"a": claims.on_these_cases(groups), "b": claims.on_these_cases([g - shift for g in groups])}
        decided = claims.holm_family(tests, "on")
        t = decided["a"]
        covered += t.ci[0] <= shift <= t.ci[1]
        for d in decided.values():
            excludes_zero = d.ci is not None and not d.ci[0] <= 0 <= d.ci[1]
            assert excludes_zero == d.verdict.startswith(("better", "worse")), d
    # each interval is at Holm's level for its step (>= 1 - alpha); 3 SE of a 0.95 rate over 300 draws is 0.038
    assert covered / reps >= 0.95 - 3 * np.sqrt(0.05 * 0.95 / reps), covered / reps


def test_per_case_cells_are_descriptive_where_seeds_cannot_reach_the_level():
    cells = claims.holm_family({"x": claims.per_case([0.01, 0.02, 0.03])}, "case")
    assert cells["x"].verdict == "descriptive: 3 seeds cannot reach the level" and cells["x"].ci is None
    assert cells["x"].spread == (0.01, 0.03)
    on = claims.holm_family({"x": claims.on_these_cases([[0.01, 0.02, 0.03], [0.02, 0.01, 0.04]])}, "on")["x"]
    assert on.verdict == "better" and on.label == "better (p at its floor 2/2^6 for 6 pairs)" and on.ci[0] > 0
    few = claims.holm_family({"x": claims.on_these_cases([[0.01, 0.02], [0.02, 0.01]])}, "on")["x"]
    assert few.verdict == "cannot reject at 4 pairs" and few.ci is None
