"""Classification metrics against sklearn and brute-force loops."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.special import softmax
from sklearn.metrics import accuracy_score, f1_score, recall_score

from harness.metrics._checks import MetricError
from harness.metrics.classification import (
    accuracy,
    domain_accuracy,
    expected_calibration_error,
    group_accuracies,
    macro_f1,
    per_class_accuracy,
    worst_group_accuracy,
)


def _preds(seed: int, n: int = 200, k: int = 5) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, k, n)
    pred = np.where(rng.random(n) < 0.6, y, rng.integers(0, k, n))
    return pred, y


@pytest.mark.parametrize("seed", range(5))
def test_accuracy_and_f1_match_sklearn(seed: int) -> None:
    pred, y = _preds(seed)
    assert accuracy(pred, y) == pytest.approx(accuracy_score(y, pred))
    assert macro_f1(pred, y) == pytest.approx(f1_score(y, pred, average="macro"), abs=1e-12)
    np.testing.assert_allclose(per_class_accuracy(pred, y, 5), recall_score(y, pred, average=None))


def test_macro_f1_with_label_only_predicted() -> None:
    # Label 3 is predicted but never true: sklearn counts it with F1 = 0.
    y = np.array([0, 0, 1, 1, 2])
    pred = np.array([0, 3, 1, 1, 2])
    assert macro_f1(pred, y) == pytest.approx(f1_score(y, pred, average="macro"))
    assert macro_f1(pred, y) == pytest.approx((2 / 3 + 1 + 1 + 0) / 4)


def test_accuracy_from_logits_and_torch() -> None:
    logits = np.array([[2.0, 1.0, 0.0], [0.0, 3.0, 1.0], [0.0, 0.0, 5.0], [1.0, 0.0, 0.0]])
    y = np.array([0, 1, 1, 0])
    assert accuracy(logits, y) == 0.75
    assert accuracy(torch.tensor(logits), torch.tensor(y)) == 0.75
    # One binary logit per sample (harness convention): prediction is logit > 0.
    assert accuracy(np.array([2.0, -1.0, 0.5, -0.2]), np.array([1, 0, 0, 1])) == 0.5


def test_per_class_accuracy_reports_absent_class_as_nan() -> None:
    acc = per_class_accuracy([0, 1, 1], [0, 1, 0], num_classes=3)
    assert acc[0] == 0.5 and acc[1] == 1.0 and math.isnan(acc[2])


# ----------------------------------------------------------------------------- groups and domains


def test_group_accuracies_and_worst_group() -> None:
    y = np.array([0, 0, 1, 1, 1, 0, 0, 1])
    pred = np.array([0, 1, 1, 1, 0, 0, 0, 1])
    g = np.array([0, 0, 1, 1, 1, 2, 2, 3])
    ga = group_accuracies(pred, y, g, expected_groups=4)
    assert ga.accuracy == {0: 0.5, 1: pytest.approx(2 / 3), 2: 1.0, 3: 1.0}
    assert ga.counts == {0: 2, 1: 3, 2: 2, 3: 1}
    assert ga.missing == ()
    wg = worst_group_accuracy(pred, y, g, expected_groups=4)
    assert wg.value == 0.5 and wg.group == 0 and float(wg) == 0.5


def test_missing_group_is_reported_not_dropped() -> None:
    y = np.array([0, 0, 1, 1])
    pred = np.array([0, 1, 1, 1])
    g = np.array([0, 0, 2, 2])  # group 1 and 3 have no samples in this split
    ga = group_accuracies(pred, y, g, expected_groups=[0, 1, 2, 3])
    assert ga.missing == (1, 3)
    assert math.isnan(ga.accuracy[1]) and math.isnan(ga.accuracy[3]) and ga.counts[1] == 0
    with pytest.raises(MetricError, match=r"\[1, 3\].*no samples"):
        worst_group_accuracy(pred, y, g, expected_groups=4)
    wg = worst_group_accuracy(pred, y, g, expected_groups=4, ignore_missing=True)
    assert wg.value == 0.5 and wg.group == 0 and wg.missing == (1, 3)


def test_unexpected_group_raises() -> None:
    with pytest.raises(MetricError, match="not in the expected"):
        group_accuracies([0, 1], [0, 1], [0, 5], expected_groups=4)


def test_domain_accuracy_average_and_worst() -> None:
    y = np.zeros(10, dtype=int)
    pred = np.array([0, 0, 0, 1, 0, 1, 1, 0, 0, 0])
    d = np.array([0, 0, 0, 0, 1, 1, 2, 2, 2, 2])  # accuracies 3/4, 1/2, 3/4
    da = domain_accuracy(pred, y, d, expected_domains=3)
    assert da.average == pytest.approx((0.75 + 0.5 + 0.75) / 3)  # unweighted over domains, not 7/10
    assert da.worst == 0.5 and da.worst_domain == 1 and da.missing == ()
    with pytest.raises(MetricError, match="domains"):
        domain_accuracy(pred, y, d, expected_domains=4)
    da4 = domain_accuracy(pred, y, d, expected_domains=4, ignore_missing=True)
    assert da4.missing == (3,) and da4.average == pytest.approx(da.average)


# ----------------------------------------------------------------------------- calibration


def brute_ece(probs: np.ndarray, y: np.ndarray, n_bins: int) -> float:
    conf = probs.max(axis=1)
    pred = probs.argmax(axis=1)
    total = 0.0
    for b in range(n_bins):
        lo, hi = b / n_bins, (b + 1) / n_bins
        members = [i for i in range(len(y)) if (lo < conf[i] <= hi) or (b == 0 and conf[i] == 0)]
        if members:
            acc = sum(pred[i] == y[i] for i in members) / len(members)
            avg_conf = sum(conf[i] for i in members) / len(members)
            total += len(members) / len(y) * abs(acc - avg_conf)
    return total


@pytest.mark.parametrize("seed", range(4))
def test_ece_matches_brute_force(seed: int) -> None:
    rng = np.random.default_rng(seed)
    logits = rng.normal(0, 2, (300, 4))
    probs = softmax(logits, axis=1)
    y = rng.integers(0, 4, 300)
    for n_bins in (15, 7):
        assert expected_calibration_error(probs, y, n_bins) == pytest.approx(brute_ece(probs, y, n_bins), abs=1e-12)
    assert expected_calibration_error(logits, y, from_logits=True) == pytest.approx(brute_ece(probs, y, 15))


def test_ece_known_value_and_binary() -> None:
    # Two samples at confidence 0.9 (bin 14), one right one wrong: |0.5 - 0.9| = 0.4.
    probs = np.array([[0.9, 0.1], [0.9, 0.1]])
    assert expected_calibration_error(probs, [0, 1]) == pytest.approx(0.4)
    assert expected_calibration_error(np.array([0.1, 0.1]), [0, 1]) == pytest.approx(0.4)


def test_ece_rejects_bad_probs() -> None:
    with pytest.raises(MetricError, match="from_logits"):
        expected_calibration_error(np.array([[2.0, -1.0]]), [0])
    with pytest.raises(MetricError, match="NaN"):
        expected_calibration_error(np.array([[np.nan, 1.0]]), [0])


def test_bad_input_raises() -> None:
    with pytest.raises(MetricError, match="empty"):
        accuracy([], [])
    with pytest.raises(MetricError, match="length mismatch"):
        accuracy([0, 1], [0])
    with pytest.raises(MetricError, match="integer"):
        accuracy([0, 1], [0.5, 1.0])
