"""Closed-set classification metrics.

Definitions (``pred`` may be labels or logits, see :func:`as_predictions`):

* accuracy = mean(pred == y).
* per-class accuracy[c] = mean(pred == y over samples with y == c); NaN for a class with no samples.
* macro-F1 = unweighted mean over labels present in ``y`` or ``pred`` of F1_c = 2 TP_c / (2 TP_c + FP_c + FN_c)
  (same label set and values as ``sklearn.metrics.f1_score(average="macro")``).
* group accuracy[g] = accuracy over samples with group == g; worst-group accuracy = min over groups
  (WILDS / Waterbirds). Groups listed in ``expected_groups`` but absent from the split are reported in
  ``missing`` (NaN accuracy), never dropped silently; the worst group over a missing group is an error unless
  ``ignore_missing=True``.
* domain accuracy: average = unweighted mean over domains of per-domain accuracy; worst = min over domains.
* ECE = sum_b |B_b|/N * |acc(B_b) - conf(B_b)| with 15 equal-width bins (lo, hi] over [0, 1] (a confidence of
  exactly 0 goes to the first bin), confidence = max class probability, prediction = argmax.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.special import expit, softmax

from harness.metrics._checks import MetricError, _np, as_labels, as_predictions, same_length

__all__ = [
    "DomainAccuracy",
    "GroupAccuracy",
    "WorstGroupAccuracy",
    "accuracy",
    "domain_accuracy",
    "expected_calibration_error",
    "group_accuracies",
    "macro_f1",
    "per_class_accuracy",
    "worst_group_accuracy",
]


def _pred_and_labels(pred: Any, y: Any) -> tuple[np.ndarray, np.ndarray]:
    p = as_predictions(pred)
    t = as_labels(y, "labels")
    same_length(("predictions", p), ("labels", t))
    return p, t


def accuracy(pred: Any, y: Any) -> float:
    """Fraction of samples with ``pred == y``; ``pred`` may be labels or logits."""
    p, t = _pred_and_labels(pred, y)
    return float(np.mean(p == t))


def per_class_accuracy(pred: Any, y: Any, num_classes: int | None = None) -> np.ndarray:
    """Accuracy per true class, shape ``(num_classes,)``; NaN marks a class with no samples."""
    p, t = _pred_and_labels(pred, y)
    if t.min() < 0:
        raise MetricError("labels must be non-negative class indices")
    k = int(t.max()) + 1 if num_classes is None else int(num_classes)
    if t.max() >= k:
        raise MetricError(f"label {int(t.max())} out of range for num_classes={k}")
    total = np.bincount(t, minlength=k).astype(np.float64)
    correct = np.bincount(t, weights=(p == t).astype(np.float64), minlength=k)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total > 0, correct / np.maximum(total, 1), np.nan)


def macro_f1(pred: Any, y: Any) -> float:
    """Macro-averaged F1 over the labels present in ``y`` or ``pred`` (sklearn's default label set)."""
    p, t = _pred_and_labels(pred, y)
    labels, inv = np.unique(np.concatenate([t, p]), return_inverse=True)
    ti, pi = inv[: len(t)], inv[len(t) :]
    k = len(labels)
    tp = np.bincount(ti[ti == pi], minlength=k)
    support = np.bincount(ti, minlength=k)  # TP + FN
    predicted = np.bincount(pi, minlength=k)  # TP + FP
    # Every label in the set occurs in y or pred, so the denominator is > 0: no 0/0 case to patch.
    f1 = 2.0 * tp / (support + predicted)
    return float(f1.mean())


# --------------------------------------------------------------------------- groups and domains


@dataclass(frozen=True)
class GroupAccuracy:
    """Per-group accuracy. ``accuracy[g]`` is NaN and ``g in missing`` for an expected group with no samples."""

    accuracy: dict[int, float]
    counts: dict[int, int]
    missing: tuple[int, ...]

    @property
    def present(self) -> dict[int, float]:
        return {g: a for g, a in self.accuracy.items() if g not in self.missing}


@dataclass(frozen=True)
class WorstGroupAccuracy:
    """Worst-group accuracy, the group reaching it, and the expected groups that had no samples."""

    value: float
    group: int
    missing: tuple[int, ...]
    per_group: dict[int, float]

    def __float__(self) -> float:
        return self.value


@dataclass(frozen=True)
class DomainAccuracy:
    """Average (unweighted over domains) and worst accuracy over domains, plus missing domains."""

    average: float
    worst: float
    worst_domain: int
    missing: tuple[int, ...]
    per_domain: dict[int, float]


def _expected_ids(expected: int | Sequence[int] | None, present: np.ndarray, what: str) -> np.ndarray:
    if expected is None:
        return present
    if isinstance(expected, (int, np.integer)):
        if expected < 1:
            raise MetricError(f"expected number of {what}s must be >= 1, got {expected}")
        ids = np.arange(int(expected), dtype=np.int64)
    else:
        ids = np.unique(as_labels(list(expected), f"expected {what}s"))
    unexpected = np.setdiff1d(present, ids)
    if unexpected.size:
        # A group id outside the expected set means the split and the suite disagree: refuse to guess.
        raise MetricError(f"{what} ids {unexpected.tolist()} are not in the expected {what}s {ids.tolist()}")
    return ids


def group_accuracies(
    pred: Any, y: Any, groups: Any, expected_groups: int | Sequence[int] | None = None
) -> GroupAccuracy:
    """Accuracy per group. ``expected_groups`` (a count ``n`` meaning ``0..n-1``, or a list of ids) makes
    groups absent from this split show up in ``missing`` with NaN accuracy instead of vanishing."""
    p, t = _pred_and_labels(pred, y)
    g = as_labels(groups, "groups")
    same_length(("predictions", p), ("groups", g))
    present, inv = np.unique(g, return_inverse=True)
    ids = _expected_ids(expected_groups, present, "group")
    counts = np.bincount(inv, minlength=len(present))
    correct = np.bincount(inv, weights=(p == t).astype(np.float64), minlength=len(present))
    acc_present = dict(zip(present.tolist(), (correct / counts).tolist()))
    cnt_present = dict(zip(present.tolist(), counts.tolist()))
    acc = {gid: acc_present.get(gid, float("nan")) for gid in ids.tolist()}
    cnt = {gid: cnt_present.get(gid, 0) for gid in ids.tolist()}
    missing = tuple(gid for gid in ids.tolist() if gid not in acc_present)
    return GroupAccuracy(accuracy=acc, counts=cnt, missing=missing)


def _worst(ga: GroupAccuracy, ignore_missing: bool, what: str) -> tuple[float, int]:
    if ga.missing and not ignore_missing:
        raise MetricError(
            f"{what}s {list(ga.missing)} have no samples in this split, so the worst {what} is undefined; "
            f"pass ignore_missing=True to take the minimum over the {what}s present"
        )
    present = ga.present
    gid = min(present, key=lambda k: (present[k], k))  # lowest accuracy; ties -> smallest id
    return present[gid], gid


def worst_group_accuracy(
    pred: Any,
    y: Any,
    groups: Any,
    expected_groups: int | Sequence[int] | None = None,
    *,
    ignore_missing: bool = False,
) -> WorstGroupAccuracy:
    """Minimum over groups of group accuracy (WILDS). Raises :class:`MetricError` when an expected group is
    missing unless ``ignore_missing``; the missing groups are always listed in the result."""
    ga = group_accuracies(pred, y, groups, expected_groups)
    value, gid = _worst(ga, ignore_missing, "group")
    return WorstGroupAccuracy(value=value, group=gid, missing=ga.missing, per_group=ga.accuracy)


def domain_accuracy(
    pred: Any,
    y: Any,
    domains: Any,
    expected_domains: int | Sequence[int] | None = None,
    *,
    ignore_missing: bool = False,
) -> DomainAccuracy:
    """Average (unweighted over domains) and worst per-domain accuracy; missing domains as for groups."""
    ga = group_accuracies(pred, y, domains, expected_domains)
    worst, wid = _worst(ga, ignore_missing, "domain")
    average = float(np.mean(list(ga.present.values())))
    return DomainAccuracy(average=average, worst=worst, worst_domain=wid, missing=ga.missing, per_domain=ga.accuracy)


# --------------------------------------------------------------------------- calibration


def expected_calibration_error(probs: Any, y: Any, n_bins: int = 15, *, from_logits: bool = False) -> float:
    """ECE with ``n_bins`` equal-width confidence bins (lo, hi]; confidence = max probability.

    ``probs`` is ``(N, K)`` class probabilities, or ``(N,)`` probability of class 1 for a binary task. With
    ``from_logits=True`` they are logits and go through softmax (sigmoid for ``(N,)``) first.
    """
    a = _np(probs).astype(np.float64)
    t = as_labels(y, "labels")
    if n_bins < 1:
        raise MetricError(f"n_bins must be >= 1, got {n_bins}")
    if a.ndim == 2 and a.shape[1] == 1:
        a = a[:, 0]
    if a.ndim not in (1, 2) or a.shape[0] == 0:
        raise MetricError(f"probs must be a non-empty (N,) or (N, K) array, got shape {a.shape}")
    same_length(("probs", a), ("labels", t))
    if not np.isfinite(a).all():
        raise MetricError("probs contains NaN or inf")
    if from_logits:
        a = expit(a) if a.ndim == 1 else softmax(a, axis=1)
    elif (a < -1e-6).any() or (a > 1 + 1e-6).any():
        raise MetricError("probs must lie in [0, 1]; pass from_logits=True for logits")
    elif a.ndim == 2 and not np.allclose(a.sum(axis=1), 1.0, atol=1e-3):
        raise MetricError("rows of probs must sum to 1; pass from_logits=True for logits")
    if a.ndim == 1:
        pred = (a > 0.5).astype(np.int64)  # p == 0.5 predicts class 0, as argmax over (1-p, p) does
        conf = np.maximum(a, 1.0 - a)
    else:
        pred = np.argmax(a, axis=1)
        conf = a[np.arange(len(a)), pred]
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    # searchsorted(side="left") - 1 puts conf in bin b when edges[b] < conf <= edges[b + 1].
    b = np.clip(np.searchsorted(edges, conf, side="left") - 1, 0, n_bins - 1)
    sum_conf = np.bincount(b, weights=conf, minlength=n_bins)
    sum_acc = np.bincount(b, weights=(pred == t).astype(np.float64), minlength=n_bins)
    return float(np.abs(sum_acc - sum_conf).sum() / len(t))
