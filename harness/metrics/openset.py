"""Open-set recognition metrics. A score S(x) is higher for "more known"; inputs are the scores of the known
(in-distribution) test samples and of the unknown (open-set) test samples, kept apart so the positive class
can never be mixed up.

Definitions (n_k knowns, n_u unknowns, ties handled exactly, all O(n log n) and vectorised):

* AUROC = P(S(known) > S(unknown)) + 1/2 P(S(known) = S(unknown)), the Mann-Whitney U statistic over all
  (known, unknown) pairs. It equals the ROC area with unknown as positive class on -S, and with known as positive
  class on S (``sklearn.metrics.roc_auc_score``).
* AUPR-in = average precision with known as positive class and score S; AUPR-out = average precision with
  unknown as positive class and score -S. Average precision is sklearn's step-wise
  AP = sum_t (R_t - R_{t-1}) P_t over the distinct score thresholds t (a sample is selected when score >= t).
* FPR@95TPR: a sample is accepted when S(x) >= delta (equal scores are accepted together). delta* is the
  largest threshold with |{known: S >= delta*}| >= 0.95 n_k; FPR@95 = |{unknown: S >= delta*}| / n_u.
* OSCR: CCR(delta) = |{known x: correct(x) and S(x) > delta}| / n_k, FPR(delta) = |{unknown x: S(x) > delta}| / n_u.
  delta sweeps all distinct scores plus -inf (the curve runs from (0, 0) to (1, closed-set accuracy)), and OSCR is
  the trapezoidal area under CCR against FPR. A block of tied scores moves both coordinates at once, so the
  trapezoid gives a tied (correct known, unknown) pair half credit, and the area equals
  [#pairs (correct known c, unknown u) with S(c) > S(u) + 1/2 #ties] / (n_k n_u).

OpenOOD's conventions, beside ours, so numbers compare with its published tables (read from OpenOOD v1.5's
``openood/evaluators/metrics.py``; the maths only):

* ``fpr95_openood`` (OpenOOD v1.5's ``auc_and_fpr_recall``): the *unknown* is the positive class, ranked by -S. The
  threshold is the first ROC point whose TPR (unknowns rejected) reaches 0.95: c* = the m-th smallest unknown score,
  m = ceil(0.95 n_u); FPR = |{known: S <= c*}| / n_k, the fraction of *knowns* rejected when 95% of unknowns are.
  Ours (``fpr95``) is the other way round: the fraction of *unknowns accepted* when 95% of knowns are accepted (ID
  positive, OpenOOD v1.0's ``fpr_recall`` up to its floor/strict-inequality rounding). The two measure different
  error rates and can differ by tens of points on the same scores; both are lower-is-better.
* ``aupr_in_openood`` / ``aupr_out_openood``: OpenOOD integrates sklearn's precision-recall curve with the
  trapezoidal rule (``metrics.auc(recall, precision)``), where ours is sklearn's step-wise average precision; they
  differ by a little, mostly on small sets. AUROC is the same in both.
* ``ccr@fpr`` (OpenOOD's ``ccr_fpr``, at FPR 1e-1 .. 1e-4; keys ``ccr_fpr1e-1`` ...): the threshold is the j-th
  largest unknown score, j = ceil(fpr n_u) (so with fewer than 1/fpr unknowns it is the largest one, and the CCR is
  that of "accept no unknown"); CCR = |{known: correct and S > threshold}| / n_k. A point of the OSCR curve.

All-known or all-unknown input (an empty side), NaN or infinite scores raise :class:`MetricError`.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from sklearn.metrics import auc as trapezoid_area
from sklearn.metrics import precision_recall_curve

from harness.metrics._checks import MetricError, _np, as_float_1d, same_length

__all__ = ["CCR_FPRS", "aupr_in", "aupr_out", "auroc", "ccr_at_fpr", "fpr_at_95_tpr", "fpr_at_tpr",
           "fpr_at_tpr_openood", "openood_metrics", "openset_metrics", "oscr"]

CCR_FPRS = (1e-1, 1e-2, 1e-3, 1e-4)  # the FPRs OpenOOD v1.5 reports CCR at


def _scores(known_scores: Any, unknown_scores: Any) -> tuple[np.ndarray, np.ndarray]:
    k = as_float_1d(known_scores, "known_scores", allow_empty=True)
    u = as_float_1d(unknown_scores, "unknown_scores", allow_empty=True)
    if k.size == 0:
        raise MetricError("no known samples (all-unknown input): open-set metrics are undefined")
    if u.size == 0:
        raise MetricError("no unknown samples (all-known input): open-set metrics are undefined")
    return k, u


def _pairs_above(pos_sorted: np.ndarray, neg_sorted: np.ndarray) -> float:
    """sum over (pos, neg) pairs of [pos > neg] + 1/2 [pos == neg], both inputs sorted ascending.

    For each positive, searchsorted 'left' counts negatives strictly below and 'right' those at or below; the
    mean of the two is the tie-aware count. Sorted queries keep the binary searches cache-friendly.
    """
    below = np.searchsorted(neg_sorted, pos_sorted, side="left").sum(dtype=np.int64)
    at_or_below = np.searchsorted(neg_sorted, pos_sorted, side="right").sum(dtype=np.int64)
    return (int(below) + int(at_or_below)) / 2.0


def _auroc_sorted(k_sorted: np.ndarray, u_sorted: np.ndarray) -> float:
    return _pairs_above(k_sorted, u_sorted) / (k_sorted.size * u_sorted.size)


def _average_precision_sorted(pos_sorted: np.ndarray, neg_sorted: np.ndarray) -> float:
    """sklearn-style AP. Recall only changes at positive scores, so only their distinct values are thresholds."""
    starts = np.empty(pos_sorted.size, dtype=bool)  # first index of each block of equal scores
    starts[0] = True
    np.not_equal(pos_sorted[1:], pos_sorted[:-1], out=starts[1:])
    first = np.flatnonzero(starts)
    values = pos_sorted[first]
    counts = np.diff(np.append(first, pos_sorted.size))
    tp = pos_sorted.size - first  # positives with score >= value
    fp = neg_sorted.size - np.searchsorted(neg_sorted, values, side="left")  # negatives with score >= value
    precision = tp / (tp + fp)
    return float(np.dot(counts, precision) / pos_sorted.size)


def _fpr_at_tpr_raw(k: np.ndarray, u: np.ndarray, tpr: float) -> float:
    # Need m = ceil(tpr * n_k) knowns accepted; the largest such threshold is the m-th largest known score
    # (every larger threshold accepts at most m - 1 knowns). round() guards 0.95 * 20 = 19.000000000000004.
    m = max(1, math.ceil(round(tpr * k.size, 9)))
    delta = np.partition(k, k.size - m)[k.size - m]  # O(n) selection, no full sort needed
    return float(np.count_nonzero(u >= delta) / u.size)


def auroc(known_scores: Any, unknown_scores: Any) -> float:
    """AUROC of known vs unknown (see module docstring); 1.0 means every known outscores every unknown."""
    k, u = _scores(known_scores, unknown_scores)
    return _auroc_sorted(np.sort(k), np.sort(u))


def aupr_in(known_scores: Any, unknown_scores: Any) -> float:
    """Average precision with known as the positive class, ranked by score."""
    k, u = _scores(known_scores, unknown_scores)
    return _average_precision_sorted(np.sort(k), np.sort(u))


def aupr_out(known_scores: Any, unknown_scores: Any) -> float:
    """Average precision with unknown as the positive class, ranked by -score."""
    k, u = _scores(known_scores, unknown_scores)
    return _average_precision_sorted(np.sort(-u), np.sort(-k))


def fpr_at_tpr(known_scores: Any, unknown_scores: Any, tpr: float = 0.95) -> float:
    """Fraction of unknowns accepted at the largest threshold that accepts at least ``tpr`` of the knowns."""
    if not 0.0 < tpr <= 1.0:
        raise MetricError(f"tpr must be in (0, 1], got {tpr}")
    k, u = _scores(known_scores, unknown_scores)
    return _fpr_at_tpr_raw(k, u, tpr)


def fpr_at_95_tpr(known_scores: Any, unknown_scores: Any) -> float:
    """FPR at 95% TPR over knowns (see module docstring)."""
    return fpr_at_tpr(known_scores, unknown_scores, 0.95)


def _correct_mask(known_correct: Any, n: int) -> np.ndarray:
    c = _np(known_correct)
    if c.ndim != 1:
        raise MetricError(f"known_correct must be 1-D, got shape {c.shape}")
    if c.dtype.kind != "b":
        if c.dtype.kind not in "iuf" or not np.isin(c, (0, 1)).all():
            raise MetricError("known_correct must be boolean (prediction == label for each known sample)")
        c = c.astype(bool)
    same_length(("known_scores", np.empty(n)), ("known_correct", c))
    return c


def oscr(known_scores: Any, unknown_scores: Any, known_correct: Any) -> float:
    """Open-Set Classification Rate: area under CCR vs FPR (see module docstring for the exact definition).

    ``known_correct[i]`` says whether the closed-set prediction for known sample ``i`` is right.
    """
    k, u = _scores(known_scores, unknown_scores)
    c = _correct_mask(known_correct, k.size)
    return _pairs_above(np.sort(k[c]), np.sort(u)) / (k.size * u.size)


def openset_metrics(
    known_scores: Any, unknown_scores: Any, known_correct: Any | None = None, tpr: float = 0.95
) -> dict[str, float]:
    """All open-set metrics from one sort: auroc, aupr_in, aupr_out, fpr@tpr (key ``fpr95`` for 0.95) and, when
    ``known_correct`` is given, oscr."""
    k, u = _scores(known_scores, unknown_scores)
    ks, us = np.sort(k), np.sort(u)
    out = {
        "auroc": _auroc_sorted(ks, us),
        "aupr_in": _average_precision_sorted(ks, us),
        # -sorted reversed is sorted ascending: no second sort for the negated scores.
        "aupr_out": _average_precision_sorted(-us[::-1], -ks[::-1]),
    }
    if not 0.0 < tpr <= 1.0:
        raise MetricError(f"tpr must be in (0, 1], got {tpr}")
    out["fpr95" if tpr == 0.95 else f"fpr@{tpr:g}"] = _fpr_at_tpr_raw(k, u, tpr)
    if known_correct is not None:
        c = _correct_mask(known_correct, k.size)
        out["oscr"] = _pairs_above(np.sort(k[c]), us) / (k.size * u.size)
    return out


# -- OpenOOD's conventions ---------------------------------------------------------------------------


def _fpr_openood_raw(k: np.ndarray, u: np.ndarray, tpr: float) -> float:
    m = max(1, math.ceil(round(tpr * u.size, 9)))  # unknowns that must be rejected (S <= c*)
    c = np.partition(u, m - 1)[m - 1]
    return float(np.count_nonzero(k <= c) / k.size)


def fpr_at_tpr_openood(known_scores: Any, unknown_scores: Any, tpr: float = 0.95) -> float:
    """OpenOOD v1.5's FPR@TPR: unknown positive, the fraction of knowns rejected when ``tpr`` of the unknowns are
    (see the module docstring; not the same error rate as :func:`fpr_at_tpr`)."""
    if not 0.0 < tpr <= 1.0:
        raise MetricError(f"tpr must be in (0, 1], got {tpr}")
    k, u = _scores(known_scores, unknown_scores)
    return _fpr_openood_raw(k, u, tpr)


def _aupr_trapezoid(pos: np.ndarray, neg: np.ndarray) -> float:
    labels = np.concatenate([np.ones(pos.size), np.zeros(neg.size)])
    precision, recall, _ = precision_recall_curve(labels, np.concatenate([pos, neg]))
    return float(trapezoid_area(recall, precision))


def _ccr_raw(k: np.ndarray, u: np.ndarray, correct: np.ndarray, fpr: float) -> float:
    j = max(1, math.ceil(round(fpr * u.size, 9)))
    threshold = np.partition(u, u.size - j)[u.size - j]  # the j-th largest unknown score
    return float(np.count_nonzero(correct & (k > threshold)) / k.size)


def ccr_at_fpr(known_scores: Any, unknown_scores: Any, known_correct: Any, fpr: float) -> float:
    """OpenOOD's CCR@FPR (see the module docstring)."""
    if not 0.0 < fpr <= 1.0:
        raise MetricError(f"fpr must be in (0, 1], got {fpr}")
    k, u = _scores(known_scores, unknown_scores)
    return _ccr_raw(k, u, _correct_mask(known_correct, k.size), fpr)


def openood_metrics(known_scores: Any, unknown_scores: Any, known_correct: Any | None = None) -> dict[str, float]:
    """OpenOOD v1.5's conventions: ``fpr95_openood``, ``aupr_in_openood``, ``aupr_out_openood`` and, with
    ``known_correct``, ``ccr_fpr1e-1`` .. ``ccr_fpr1e-4``."""
    k, u = _scores(known_scores, unknown_scores)
    out = {"fpr95_openood": _fpr_openood_raw(k, u, 0.95), "aupr_in_openood": _aupr_trapezoid(k, u),
           "aupr_out_openood": _aupr_trapezoid(-u, -k)}
    if known_correct is not None:
        c = _correct_mask(known_correct, k.size)
        out.update({f"ccr_fpr{f:.0e}".replace("e-0", "e-"): _ccr_raw(k, u, c, f) for f in CCR_FPRS})
    return out
