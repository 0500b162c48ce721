"""The seed-count power analysis: the normal approximation against simulation of the harness's own test."""

from __future__ import annotations

import numpy as np
import pytest

from harness.metrics.power import detectable_effect, seeds_for_power, stratified_power
from harness.metrics.stats import sign_flip_p


def simulated_power(case_sds: np.ndarray, n: int, effect: float, level: float, reps: int = 300) -> float:
    """Rejection rate of the on-these-cases sign-flip test (equal seeds: equal weights) on normal paired
    differences with mean ``effect`` and per-case sd ``case_sds``."""
    rng = np.random.default_rng(11)
    d = effect + case_sds[None, :, None] * rng.standard_normal((reps, len(case_sds), n))
    p = sign_flip_p(d.reshape(reps, -1), n_resamples=1999, seed=1)
    return float(np.mean(p <= level))


def test_power_grows_with_seeds_and_is_the_level_at_no_effect():
    sds = np.array([0.01, 0.02, 0.015, 0.005])
    powers = [stratified_power(sds, n, 0.01, 0.01) for n in (1, 2, 4, 8, 16)]
    assert powers == sorted(powers) and powers[-1] > 0.95
    assert stratified_power(sds, 5, 0.0, 0.01) == pytest.approx(0.01)


def test_chosen_seed_count_reaches_the_power_in_simulation():
    sds = np.array([0.006, 0.009, 0.02, 0.018, 0.014, 0.01])  # the losses pilot's spread, per case
    level = 0.05 / 6
    n = seeds_for_power(sds, 0.01, level)
    assert n is not None and stratified_power(sds, n - 1, 0.01, level) < 0.8 <= stratified_power(sds, n, 0.01, level)
    # the sign-flip test's null spread includes the effect, so it is a little weaker than the approximation
    assert simulated_power(sds, n, 0.01, level) >= 0.7
    assert simulated_power(sds, max(n - 2, 1), 0.01, level) < 0.8


def test_detectable_effect_inverts_the_power():
    sds = np.array([0.03, 0.05, 0.04])
    mde = detectable_effect(sds, 3, 0.005)
    assert stratified_power(sds, 3, mde, 0.005) == pytest.approx(0.8, abs=1e-3)


def test_a_floor_above_the_level_needs_more_seeds():
    # one case of tiny noise: power comes at once, but 2/2^n must first fall below the level
    assert seeds_for_power(np.array([1e-6]), 0.01, 0.01) == 8
    assert seeds_for_power(np.array([1.0]), 0.01, 0.01, max_seeds=5) is None
