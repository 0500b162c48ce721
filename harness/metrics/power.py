"""Power of the on-these-cases claim (:mod:`harness.reporting.claims`): how many seeds per case a suite needs so
that a mean seed-paired difference of one point is found with 80% power, from the seed spread a pilot measured.
The suites set their standard seed counts with it (``python -m harness power``; the numbers are recorded beside
each suite's ``SEEDS``)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from scipy import stats as scipy_stats

from harness.metrics._checks import MetricError, as_float_1d


def stratified_power(case_sds: Any, n_seeds: int, effect: float, level: float) -> float:
    """Power of the two-sided on-these-cases test (the mean over C cases of each case's mean seed-paired difference)
    to find a true mean difference ``effect`` at ``level``, with per-case sd ``case_sds`` of the paired differences
    and ``n_seeds`` pairs per case: the normal approximation, Φ(|effect|/SE - z) with SE = sqrt(Σ sd²/n) / C. The
    sign-flip test's null spread is Σ w²d², which includes the effect, so the exact test has slightly less power;
    tests/metrics/test_power.py measures the gap by simulation."""
    sds = as_float_1d(case_sds, "case_sds")
    if n_seeds < 1:
        raise MetricError(f"n_seeds must be >= 1, got {n_seeds}")
    se = math.sqrt(float(np.sum(sds**2)) / n_seeds) / len(sds)
    if se == 0:
        return 1.0 if effect else level
    z = scipy_stats.norm.ppf(1 - level / 2)
    shift = abs(effect) / se
    return float(scipy_stats.norm.sf(z - shift) + scipy_stats.norm.cdf(-z - shift))


def seeds_for_power(case_sds: Any, effect: float, level: float, power: float = 0.8, max_seeds: int = 100) -> int | None:
    """The smallest seed count per case at which :func:`stratified_power` reaches ``power`` and the sign-flip
    test's floor 2/2^(C n) is below ``level``; None when even ``max_seeds`` does not."""
    n_cases = len(as_float_1d(case_sds, "case_sds"))
    for n in range(1, max_seeds + 1):
        if 2.0 / 2 ** (n_cases * n) <= level and stratified_power(case_sds, n, effect, level) >= power:
            return n
    return None


def detectable_effect(case_sds: Any, n_seeds: int, level: float, power: float = 0.8) -> float:
    """The smallest mean difference the on-these-cases test finds with ``power`` at ``level`` (normal
    approximation, as :func:`stratified_power`)."""
    sds = as_float_1d(case_sds, "case_sds")
    se = math.sqrt(float(np.sum(sds**2)) / n_seeds) / len(sds)
    return float(se * (scipy_stats.norm.ppf(1 - level / 2) + scipy_stats.norm.ppf(power)))
