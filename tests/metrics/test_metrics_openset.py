"""Open-set metrics against sklearn and against slow brute-force enumeration over thresholds."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.metrics import auc as sk_auc
from sklearn.metrics import average_precision_score, precision_recall_curve, roc_auc_score, roc_curve

from harness.metrics._checks import MetricError
from harness.metrics.openset import (
    CCR_FPRS,
    aupr_in,
    aupr_out,
    auroc,
    ccr_at_fpr,
    fpr_at_95_tpr,
    fpr_at_tpr,
    fpr_at_tpr_openood,
    openood_metrics,
    openset_metrics,
    oscr,
)


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


# ----------------------------------------------------------------------------- OpenOOD's conventions


def openood_fpr95(k: np.ndarray, u: np.ndarray) -> float:
    """OpenOOD v1.5's recipe, restated: ROC with unknown positive on -score, FPR at the first TPR >= 0.95."""
    labels = np.concatenate([np.zeros(k.size), np.ones(u.size)])
    fpr, tpr, _ = roc_curve(labels, -np.concatenate([k, u]))
    return float(fpr[np.argmax(tpr >= 0.95)])


def brute_ccr(k: np.ndarray, u: np.ndarray, correct: np.ndarray, fpr: float) -> float:
    """The j-th largest unknown score as threshold, j = ceil(fpr n_u); correct knowns strictly above it."""
    j = max(1, int(np.ceil(round(fpr * len(u), 9))))
    t = sorted(u.tolist(), reverse=True)[j - 1]
    return sum(1 for s, c in zip(k, correct) if c and s > t) / len(k)


@pytest.mark.parametrize("seed,dec", CASES)
def test_openood_conventions_match_their_recipes(seed: int, dec: int | None) -> None:
    k, u, correct = _case(seed, dec)
    m = openood_metrics(k, u, correct)
    assert m["fpr95_openood"] == pytest.approx(openood_fpr95(k, u), abs=1e-12)
    assert m["fpr95_openood"] == fpr_at_tpr_openood(k, u)
    for key, pos, neg in (("aupr_in_openood", k, u), ("aupr_out_openood", -u, -k)):
        labels = np.concatenate([np.ones(pos.size), np.zeros(neg.size)])
        precision, recall, _ = precision_recall_curve(labels, np.concatenate([pos, neg]))
        assert m[key] == pytest.approx(sk_auc(recall, precision), abs=1e-12)
    for f in CCR_FPRS:
        key = f"ccr_fpr{f:.0e}".replace("e-0", "e-")
        assert m[key] == pytest.approx(brute_ccr(k, u, correct, f), abs=1e-12) == ccr_at_fpr(k, u, correct, f)


def test_the_two_fpr95_conventions_measure_different_errors() -> None:
    # 100 knowns at 1..100, 10 unknowns at 0.5 and 91..99: 95% of knowns accepted (score >= 6) lets 9 of 10 unknowns
    # in (ours 0.9); 95% of unknowns rejected (score <= 99) rejects 99 of 100 knowns (OpenOOD 0.99)
    k = np.arange(1.0, 101.0)
    u = np.array([0.5, *np.arange(91.0, 100.0)])
    assert fpr_at_95_tpr(k, u) == pytest.approx(0.9) and fpr_at_tpr_openood(k, u) == pytest.approx(0.99)
    with pytest.raises(MetricError):
        ccr_at_fpr(k, u, np.ones(100, bool), 0.0)
