"""Open-set metrics against sklearn and against slow brute-force enumeration over thresholds."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.metrics import average_precision_score, roc_auc_score

from harness.metrics._checks import MetricError
from harness.metrics.openset import aupr_in, aupr_out, auroc, fpr_at_95_tpr, fpr_at_tpr, openset_metrics, oscr


def _case(seed: int, decimals: int | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Known/unknown scores (knowns shifted up) and a correctness mask; rounding creates heavy ties."""
    rng = np.random.default_rng(seed)
    n_k, n_u = rng.integers(5, 60, size=2)
    k = rng.normal(0.6, 1.0, n_k)
    u = rng.normal(0.0, 1.0, n_u)
    if decimals is not None:
        k, u = np.round(k, decimals), np.round(u, decimals)
    correct = rng.random(n_k) < 0.7
    return k, u, correct


CASES = [(seed, dec) for seed in range(12) for dec in (None, 1, 0)]


# ----------------------------------------------------------------------------- brute-force references


def brute_fpr_at_95(k: np.ndarray, u: np.ndarray) -> float:
    """Largest threshold accepting (score >= t) at least 95% of knowns; fraction of unknowns it accepts."""
    best = None
    for t in sorted(set(k.tolist()) | set(u.tolist())):
        accepted_known = sum(1 for s in k if s >= t)
        if 100 * accepted_known >= 95 * len(k):  # integer arithmetic: no float trouble at exactly 95%
            best = t
    assert best is not None
    return sum(1 for s in u if s >= best) / len(u)


def brute_oscr(k: np.ndarray, u: np.ndarray, correct: np.ndarray) -> float:
    """Trapezoid under (FPR(d), CCR(d)) for d over all distinct scores and -inf, accepted when score > d."""
    thresholds = sorted(set(k.tolist()) | set(u.tolist()) | {-np.inf}, reverse=True)
    points = []
    for d in thresholds:
        ccr = sum(1 for s, c in zip(k, correct) if c and s > d) / len(k)
        fpr = sum(1 for s in u if s > d) / len(u)
        points.append((fpr, ccr))
    assert points[0] == (0.0, 0.0)
    assert points[-1] == (1.0, correct.mean())
    area = 0.0
    for (x0, y0), (x1, y1) in zip(points[:-1], points[1:]):
        assert x1 >= x0 and y1 >= y0
        area += (x1 - x0) * (y0 + y1) / 2
    return area


# ----------------------------------------------------------------------------- sklearn references


@pytest.mark.parametrize("seed,dec", CASES)
def test_auroc_matches_sklearn(seed: int, dec: int | None) -> None:
    k, u, _ = _case(seed, dec)
    y_known = np.r_[np.ones(len(k)), np.zeros(len(u))]
    s = np.r_[k, u]
    ours = auroc(k, u)
    assert ours == pytest.approx(roc_auc_score(y_known, s), abs=1e-12)
    # Unknown as positive class on the negated score gives the same number.
    assert ours == pytest.approx(roc_auc_score(1 - y_known, -s), abs=1e-12)


@pytest.mark.parametrize("seed,dec", CASES)
def test_aupr_matches_sklearn(seed: int, dec: int | None) -> None:
    k, u, _ = _case(seed, dec)
    y_known = np.r_[np.ones(len(k)), np.zeros(len(u))]
    s = np.r_[k, u]
    assert aupr_in(k, u) == pytest.approx(average_precision_score(y_known, s), abs=1e-12)
    assert aupr_out(k, u) == pytest.approx(average_precision_score(1 - y_known, -s), abs=1e-12)


def test_auroc_known_values() -> None:
    assert auroc([3.0, 4.0], [1.0, 2.0]) == 1.0
    assert auroc([1.0, 2.0], [3.0, 4.0]) == 0.0
    assert auroc([1.0, 1.0], [1.0]) == 0.5  # a real all-tie case, computed, not a fallback
    assert auroc([2.0, 1.0], [1.0, 0.0]) == pytest.approx((1 + 1 + 0.5 + 1) / 4)


# ----------------------------------------------------------------------------- brute-force references


@pytest.mark.parametrize("seed,dec", CASES)
def test_fpr95_matches_brute_force(seed: int, dec: int | None) -> None:
    k, u, _ = _case(seed, dec)
    assert fpr_at_95_tpr(k, u) == brute_fpr_at_95(k, u)


@pytest.mark.parametrize("seed,dec", CASES)
def test_oscr_matches_brute_force(seed: int, dec: int | None) -> None:
    k, u, correct = _case(seed, dec)
    assert oscr(k, u, correct) == pytest.approx(brute_oscr(k, u, correct), abs=1e-12)


def test_fpr95_tie_block_accepted_together() -> None:
    # 20 knowns: 19 must be accepted. The 19th-largest known score 0.5 is tied with the 20th, and with two
    # unknowns; accepting at 0.5 accepts all of them together.
    k = np.r_[np.linspace(1.0, 2.0, 18), 0.5, 0.5]
    u = np.array([0.5, 0.5, 0.2, 0.1])
    assert fpr_at_95_tpr(k, u) == 0.5
    assert fpr_at_tpr(k, u, tpr=0.9) == 0.0  # 18 knowns suffice at threshold 1.0


def test_oscr_known_values() -> None:
    # Perfect separation and all correct: area 1; all correct knowns tied with all unknowns: area 1/2.
    assert oscr([2.0, 3.0], [0.0, 1.0], [True, True]) == 1.0
    assert oscr([1.0, 1.0], [1.0, 1.0], [True, True]) == 0.5
    # Perfect separation, half correct: the curve rises to CCR 0.5 at FPR 0, area = accuracy.
    assert oscr([2.0, 3.0], [0.0, 1.0], [True, False]) == 0.5
    assert oscr([2.0, 3.0], [0.0, 1.0], [False, False]) == 0.0


def test_openset_metrics_bundle_agrees() -> None:
    k, u, c = _case(3, 1)
    out = openset_metrics(k, u, c)
    assert out == {
        "auroc": auroc(k, u),
        "aupr_in": aupr_in(k, u),
        "aupr_out": aupr_out(k, u),
        "fpr95": fpr_at_95_tpr(k, u),
        "oscr": oscr(k, u, c),
    }


def test_torch_input() -> None:
    k, u, c = _case(5, None)
    assert auroc(torch.tensor(k), torch.tensor(u)) == auroc(k, u)
    assert oscr(torch.tensor(k, dtype=torch.float32), torch.tensor(u, dtype=torch.float32), torch.tensor(c)) == (
        pytest.approx(oscr(k.astype(np.float32), u.astype(np.float32), c))
    )


# ----------------------------------------------------------------------------- errors


@pytest.mark.parametrize("fn", [auroc, aupr_in, aupr_out, fpr_at_95_tpr])
def test_all_known_or_all_unknown_raises(fn) -> None:
    with pytest.raises(MetricError, match="all-known"):
        fn([0.1, 0.2], [])
    with pytest.raises(MetricError, match="all-unknown"):
        fn([], [0.1, 0.2])


def test_oscr_errors() -> None:
    with pytest.raises(MetricError, match="all-known"):
        oscr([0.1, 0.2], [], [True, False])
    with pytest.raises(MetricError, match="all-unknown"):
        oscr([], [0.3], [])
    with pytest.raises(MetricError, match="length mismatch"):
        oscr([0.1, 0.2], [0.3], [True])
    with pytest.raises(MetricError, match="boolean"):
        oscr([0.1, 0.2], [0.3], [0.5, 1.0])


@pytest.mark.parametrize("fn", [auroc, aupr_in, aupr_out, fpr_at_95_tpr])
def test_nan_scores_raise(fn) -> None:
    with pytest.raises(MetricError, match="NaN"):
        fn([0.1, np.nan], [0.2])
    with pytest.raises(MetricError, match="NaN"):
        fn([0.1], [np.nan, 0.2])
    with pytest.raises(MetricError, match="finite"):
        fn([0.1, np.inf], [0.2])


def test_bad_tpr_raises() -> None:
    with pytest.raises(MetricError):
        fpr_at_tpr([0.1], [0.2], tpr=0.0)
