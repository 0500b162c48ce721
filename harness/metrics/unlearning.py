"""Machine-unlearning metrics.

Definitions (accuracies are fractions in [0, 1]; ``pred`` may be labels or logits):

* UA (unlearning accuracy) = 1 - accuracy on the forget set; RA = accuracy on the retain set; TA = accuracy on
  the test set.
* MIA-efficacy (SalUn / "sparse unlearning" protocol): feature = softmax probability of the true class (1-D).
  An ``SVC(C=3, gamma="auto", kernel="rbf")`` is trained with retain samples as members (label 1) and test
  samples as non-members (label 0), the larger set subsampled without replacement (seeded) to the size of the
  smaller one. MIA-efficacy = fraction of forget samples predicted as non-members.
* RTE (run-time efficiency) = method wall time / retrain wall time.
* Average gap = mean over UA, RA, TA, MIA of |metric(method) - metric(retrained model)|.
* margin(x, y) = f_y(x) - logsumexp_{k != y} f_k(x) (for one binary logit f: f if y = 1, -f if y = 0).
* KLoM (KL divergence of margins, Georgiev et al. 2024): for each sample, margins from several unlearned models
  (distribution P) and several retrained models (Q) are clipped to [-clip, clip] and binned into ``bins``
  equal-width bins spanning the min and max of both sets together, exactly as
  ``np.histogram(bins=bins, range=(lo, hi))`` bins them (its ``np.linspace`` edges, the top edge in the last bin;
  a sample whose margins are all equal gets the range [m, m + 1]). KLoM = KL(P || Q) =
  sum_b p_b log(p_b / max(q_b, eps)) over bins with p_b > 0: ``eps`` only floors Q's empty bins so the
  divergence stays finite. Direction and eps follow the data-unlearning-bench reference code.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.special import expit, logsumexp, rel_entr, softmax

from harness.metrics._checks import MetricError, _np, as_labels, same_length
from harness.metrics.classification import accuracy

__all__ = [
    "KLoMResult",
    "average_gap",
    "klom",
    "margins",
    "mia_efficacy",
    "mia_efficacy_from_confidence",
    "retain_accuracy",
    "run_time_efficiency",
    "test_accuracy",
    "true_class_probability",
    "unlearning_accuracy",
]


def unlearning_accuracy(forget_pred: Any, forget_y: Any) -> float:
    """UA = 1 - accuracy on the forget set."""
    return 1.0 - accuracy(forget_pred, forget_y)


def retain_accuracy(retain_pred: Any, retain_y: Any) -> float:
    """RA = accuracy on the retain set."""
    return accuracy(retain_pred, retain_y)


def test_accuracy(test_pred: Any, test_y: Any) -> float:
    """TA = accuracy on the test set."""
    return accuracy(test_pred, test_y)


test_accuracy.__test__ = False  # type: ignore[attr-defined]  # keep pytest from collecting it when imported


def _logits_2d(logits: Any, name: str) -> tuple[np.ndarray, bool]:
    """float64 logits and whether they are one binary logit per sample."""
    a = _np(logits).astype(np.float64)
    if a.ndim == 2 and a.shape[1] == 1:
        a = a[:, 0]
    if a.ndim not in (1, 2) or a.shape[0] == 0:
        raise MetricError(f"{name} must be a non-empty (N,) or (N, K) array, got shape {a.shape}")
    if np.isnan(a).any():
        raise MetricError(f"{name} contains NaN")
    return a, a.ndim == 1


def _check_label_range(t: np.ndarray, k: int, name: str) -> None:
    if t.min() < 0 or t.max() >= k:
        raise MetricError(f"{name} must lie in [0, {k}), got range [{t.min()}, {t.max()}]")


def true_class_probability(logits: Any, y: Any, *, from_probs: bool = False) -> np.ndarray:
    """p(y | x): softmax (sigmoid for one binary logit) probability of the true class, shape (N,)."""
    a, binary = _logits_2d(logits, "logits")
    t = as_labels(y, "labels")
    same_length(("logits", a), ("labels", t))
    if binary:
        _check_label_range(t, 2, "labels")
        p1 = a if from_probs else expit(a)
        return np.where(t == 1, p1, 1.0 - p1)
    _check_label_range(t, a.shape[1], "labels")
    p = a if from_probs else softmax(a, axis=1)
    return p[np.arange(len(t)), t]


def mia_efficacy(
    retain_logits: Any,
    retain_y: Any,
    test_logits: Any,
    test_y: Any,
    forget_logits: Any,
    forget_y: Any,
    *,
    seed: int = 0,
    from_probs: bool = False,
) -> float:
    """Fraction of forget samples an SVC membership attack calls non-members (see module docstring)."""
    r = true_class_probability(retain_logits, retain_y, from_probs=from_probs)
    t = true_class_probability(test_logits, test_y, from_probs=from_probs)
    f = true_class_probability(forget_logits, forget_y, from_probs=from_probs)
    return mia_efficacy_from_confidence(r, t, f, seed=seed)


def mia_efficacy_from_confidence(retain_conf: Any, test_conf: Any, forget_conf: Any, *, seed: int = 0) -> float:
    """:func:`mia_efficacy` from true-class probabilities already computed (1-D each), e.g. stored evidence."""
    from sklearn.svm import SVC  # lazy: sklearn import is slow and only this metric needs it

    r, t, f = (_np(c).astype(np.float64).reshape(-1) for c in (retain_conf, test_conf, forget_conf))
    if min(r.size, t.size, f.size) == 0:
        raise MetricError(f"MIA needs non-empty retain, test and forget sets, got sizes {r.size}, {t.size}, {f.size}")
    rng = np.random.default_rng(seed)
    n = min(r.size, t.size)
    # Balance members and non-members so the attack cannot win by predicting the majority class.
    if r.size > n:
        r = r[np.sort(rng.choice(r.size, size=n, replace=False))]
    if t.size > n:
        t = t[np.sort(rng.choice(t.size, size=n, replace=False))]
    x = np.concatenate([r, t])[:, None]
    label = np.concatenate([np.ones(n, dtype=np.int64), np.zeros(n, dtype=np.int64)])
    clf = SVC(C=3, gamma="auto", kernel="rbf")
    clf.fit(x, label)
    return float(np.mean(clf.predict(f[:, None]) == 0))


def run_time_efficiency(method_seconds: float, retrain_seconds: float) -> float:
    """RTE = method time / retrain time (below 1 means faster than retraining)."""
    for name, v in (("method_seconds", method_seconds), ("retrain_seconds", retrain_seconds)):
        if not math.isfinite(v) or v <= 0:
            raise MetricError(f"{name} must be a positive finite time, got {v}")
    return float(method_seconds) / float(retrain_seconds)


def average_gap(
    metrics: Mapping[str, float],
    retrained: Mapping[str, float],
    keys: Sequence[str] = ("UA", "RA", "TA", "MIA"),
) -> float:
    """Mean absolute difference from the retrained model over ``keys`` (both dicts in the same units)."""
    missing = [k for k in keys if k not in metrics or k not in retrained]
    if missing or not keys:
        raise MetricError(f"average_gap needs keys {list(keys)} in both dicts; missing {missing}")
    gaps = np.array([float(metrics[k]) - float(retrained[k]) for k in keys])
    if not np.isfinite(gaps).all():
        raise MetricError(f"average_gap got non-finite values: {dict(zip(keys, gaps.tolist()))}")
    return float(np.abs(gaps).mean())


def margins(logits: Any, y: Any) -> np.ndarray:
    """f_y - logsumexp_{k != y} f_k per sample, shape (N,); one binary logit f gives f (y=1) or -f (y=0)."""
    a, binary = _logits_2d(logits, "logits")
    t = as_labels(y, "labels")
    same_length(("logits", a), ("labels", t))
    if binary:
        _check_label_range(t, 2, "labels")
        return np.where(t == 1, a, -a)  # two-class logits (0, f): margins f - 0 and 0 - f
    if a.shape[1] < 2:
        raise MetricError("margins need at least two classes")
    _check_label_range(t, a.shape[1], "labels")
    rows = np.arange(len(t))
    others = a.copy()
    others[rows, t] = -np.inf  # drop the true class from the logsumexp
    return a[rows, t] - logsumexp(others, axis=1)


@dataclass(frozen=True)
class KLoMResult:
    """Per-sample KLoM values and their summary (mean and percentiles keyed "p5", "p50", ...)."""

    per_sample: np.ndarray
    mean: float
    percentiles: dict[str, float]


def _margin_matrix(m: Any, name: str) -> np.ndarray:
    a = _np(m).astype(np.float64)
    if a.ndim == 1:
        a = a[None, :]  # one model
    if a.ndim != 2 or a.size == 0:
        raise MetricError(f"{name} must be (n_models, n_samples), got shape {a.shape}")
    if np.isnan(a).any():
        raise MetricError(f"{name} contains NaN")
    return a


def _linspace_edges(lo: np.ndarray, hi: np.ndarray, bins: int) -> np.ndarray:
    """Per-row ``np.linspace(lo, hi, bins + 1)`` with the same float operations (so the same edges bit for bit)."""
    delta = hi - lo
    steps = np.arange(bins + 1, dtype=np.float64)[None, :]
    step = delta / bins
    # linspace divides before multiplying when a step underflows to 0 (denormal ranges)
    edges = np.where((step == 0)[:, None], steps / bins * delta[:, None], steps * step[:, None]) + lo[:, None]
    edges[:, -1] = hi
    return edges


def klom(
    unlearned_margins: Any,
    retrained_margins: Any,
    *,
    bins: int = 20,
    eps: float = 1e-5,
    clip: float | None = 100.0,
    percentiles: Sequence[float] = (5, 25, 50, 75, 95),
) -> KLoMResult:
    """KLoM per sample between unlearned (P) and retrained (Q) margin distributions (see module docstring).

    Inputs are ``(n_models, n_samples)``; the two model counts may differ.
    """
    p_m = _margin_matrix(unlearned_margins, "unlearned_margins")
    q_m = _margin_matrix(retrained_margins, "retrained_margins")
    if p_m.shape[1] != q_m.shape[1]:
        raise MetricError(f"sample counts differ: unlearned {p_m.shape[1]}, retrained {q_m.shape[1]}")
    if bins < 1 or eps <= 0:
        raise MetricError(f"need bins >= 1 and eps > 0, got bins={bins}, eps={eps}")
    if clip is not None:
        p_m, q_m = np.clip(p_m, -clip, clip), np.clip(q_m, -clip, clip)
    elif not (np.isfinite(p_m).all() and np.isfinite(q_m).all()):
        raise MetricError("margins contain +-inf; pass a finite clip")
    n = p_m.shape[1]
    lo = np.minimum(p_m.min(axis=0), q_m.min(axis=0))
    hi = np.maximum(p_m.max(axis=0), q_m.max(axis=0))
    hi = np.where(hi > lo, hi, lo + 1.0)  # all margins equal: one bin holds everything, KLoM = 0
    edges = _linspace_edges(lo, hi, bins)  # (n, bins + 1), np.linspace's values exactly

    def probs(m: np.ndarray) -> np.ndarray:
        # np.histogram's equal-bin path: scaled index, then a one-step correction against the edges
        idx = ((m - lo) / (hi - lo) * bins).astype(np.int64)
        idx[idx == bins] -= 1  # the top edge belongs to the last bin
        cols = np.broadcast_to(np.arange(n), m.shape)
        idx -= (m < edges[cols, idx]).astype(np.int64)
        idx += ((m >= edges[cols, idx + 1]) & (idx != bins - 1)).astype(np.int64)
        counts = np.bincount((cols * bins + idx).ravel(), minlength=n * bins).reshape(n, bins)
        return counts / m.shape[0]

    p, q = probs(p_m), probs(q_m)
    q_safe = np.where(p > 0, np.maximum(q, eps), q)
    per_sample = rel_entr(p, np.where(p > 0, q_safe, 1.0)).sum(axis=1)  # rel_entr(0, .) = 0
    pct = np.percentile(per_sample, list(percentiles))
    return KLoMResult(
        per_sample=per_sample,
        mean=float(per_sample.mean()),
        percentiles={f"p{v:g}": float(x) for v, x in zip(percentiles, pct)},
    )
