"""rliable's aggregates computed with scipy (harness/reporting/aggregates.py), checked against their definitions."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from harness.reporting import aggregates
from harness.reporting.compare import aggregate
from tests.factories import make_record

CASES = ["mnist3v5-noise0", "mnist4v9-noise0", "mnist3v5-noise0.2", "mnist4v9-noise0.2"]


def records(shift: float = 0.02) -> list[dict]:
    rng = np.random.default_rng(0)
    out = []
    for case in CASES:
        base = 0.8 + rng.normal(0, 0.01, 5)
        out += [make_record(case, "bce", list(base)), make_record(case, "hinge", list(base + shift)),
                make_record(case, "focal", list(base - shift))]
    return out


def test_iqm_and_improvement_follow_rliables_definitions():
    recs = records()
    agg = aggregate(recs, "bce")
    scores = aggregates.score_matrices(recs, agg)
    assert set(scores) == {"bce", "hinge", "focal"} and scores["bce"].shape == (5, 4)
    hinge = scores["hinge"]
    iqm, low, high = aggregates.interval(list(hinge.T), aggregates._iqm)
    assert iqm == pytest.approx(stats.trim_mean(hinge.ravel(), 0.25)) and low < iqm < high
    # P(hinge > bce): every hinge seed beats the same seed of bce by 0.02; by case, against every bce seed
    expected = np.mean([np.mean(hinge[:, c][:, None] > scores["bce"][:, c][None, :]) for c in range(4)])
    poi = aggregates.interval(list(hinge.T) + list(scores["bce"].T), aggregates._improvement)
    assert poi[0] == pytest.approx(expected) and 0.5 < poi[0] <= 1.0


def test_robust_table_orders_by_iqm_and_marks_the_baseline():
    frame = aggregates.robust_table(records(), aggregate(records(), "bce"))
    assert list(frame["method"]) == ["hinge", "bce", "focal"]
    assert frame.loc[frame["method"] == "bce", "P(better than bce)"].item() == "—"
    assert (frame["cases × seeds"] == "4 × 5").all()


def test_profiles_fall_from_one_to_zero_with_bands_around_them():
    recs = records()
    scores = aggregates.score_matrices(recs, aggregate(recs, "bce"))
    pooled = np.concatenate([m.ravel() for m in scores.values()])
    taus = np.linspace(pooled.min() - 1e-6, pooled.max(), 30)
    curves = aggregates.performance_profiles(scores, taus)
    curve, low, high = curves["hinge"]
    assert curve[0] == 1.0 and curve[-1] == 0.0 and np.all(np.diff(curve) <= 0)
    assert np.all(low <= curve + 1e-12) and np.all(curve <= high + 1e-12)
    assert np.all(curves["hinge"][0] >= curves["focal"][0])  # a uniformly better method dominates


def test_unequal_seed_counts_give_no_matrices():
    recs = records()
    recs[0] = make_record(CASES[0], "bce", [0.8, 0.81, 0.82])
    assert aggregates.score_matrices(recs, aggregate(recs, "bce")) == {}
