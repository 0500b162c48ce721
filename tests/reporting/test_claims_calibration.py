"""Calibration of the across-cases claim (harness.reporting.claims) on simulated null data with heterogeneous case
effects,
against the old percentile case-bootstrap rule kept here only as a reference that fails; and a power check.

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
