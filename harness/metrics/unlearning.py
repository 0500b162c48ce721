"""Machine-unlearning metrics.

Definitions (accuracies are fractions in [0, 1]; ``pred`` may be labels or logits):

* UA (unlearning accuracy) = 1 - accuracy on the forget set; RA = accuracy on the retain set; TA = accuracy on
  the test set.
* MIA-efficacy (SalUn / "sparse unlearning" protocol, Fan et al. ICLR 2024 and Jia et al. NeurIPS 2023): an
  ``SVC(C=3, gamma="auto", kernel="rbf")`` is trained on an attack feature with retain samples as members (label 1)
  and test samples as non-members (label 0), the larger set subsampled without replacement (seeded) to the size of
  the smaller one. MIA-efficacy = fraction of forget samples predicted as non-members. The five attack features
  (:data:`MIA_ATTACKS`) are those of SalUn's ``SVC_MIA``, defined as in Song & Mittal (USENIX Security 2021),
  with p = softmax(logits) and y the true label:

  - ``correctness``: 1[argmax_k p_k = y] (0/1);
  - ``confidence``: p_y (the attack SalUn's tables report as "MIA-efficacy");
  - ``entropy``: -sum_k p_k log p_k (0 log 0 = 0);
  - ``m_entropy`` (modified entropy): -(1 - p_y) log p_y - sum_{k != y} p_k log(1 - p_k), a log argument of 0
    replaced by 1e-30 as in Song & Mittal's code. (SalUn's ``m_entropy`` deviates from this definition: it takes
    log p where log(1 - p) is meant and swaps whole label columns; we follow the paper's definition.)
  - ``prob``: the whole probability vector p (K-D).

  Song & Mittal threshold each feature per class; SalUn fits the one SVC above to each, which we follow. The
  subsample changes the answer (sd up to 0.02-0.03 on a few hundred samples), so :func:`mia_attacks` repeats each
  attack over several seeded subsamples (the same subsamples for every attack) and reports mean and sd.
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
from sklearn.svm import SVC

from harness.metrics._checks import MetricError, _np, as_labels, same_length
from harness.metrics.classification import accuracy

__all__ = [
    "MIA_ATTACKS",
    "KLoMResult",
    "MIAResult",
    "average_gap",
    "klom",
    "margins",
    "mia_efficacy",
    "mia_attacks",
    "mia_efficacy_from_confidence",
    "mia_efficacy_from_features",
    "mia_features",
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


MIA_ATTACKS = ("correctness", "confidence", "entropy", "m_entropy", "prob")  # SalUn's five (module docstring)
_LOG_FLOOR = 1e-30  # Song & Mittal's stand-in for log(0) in the modified entropy


def _probs(logits: Any, from_probs: bool) -> np.ndarray:
    """(N, K) float64 class probabilities (one binary logit f becomes the two-class (1 - sigmoid f, sigmoid f))."""
    a, binary = _logits_2d(logits, "logits")
    if binary:
        p1 = a if from_probs else expit(a)
        return np.stack([1.0 - p1, p1], axis=1)
    return a if from_probs else softmax(a, axis=1)


def mia_features(logits: Any, y: Any, attack: str, *, from_probs: bool = False) -> np.ndarray:
    """The attack's feature per sample, shape (N, d): d = 1, or K for ``prob`` (see module docstring)."""
    p = _probs(logits, from_probs)
    t = as_labels(y, "labels")
    same_length(("logits", p), ("labels", t))
    _check_label_range(t, p.shape[1], "labels")
    rows = np.arange(len(t))
    p_y = p[rows, t]
    if attack == "correctness":
        f = (p.argmax(axis=1) == t).astype(np.float64)
    elif attack == "confidence":
        f = p_y
    elif attack == "entropy":
        f = -np.sum(np.where(p > 0, p * np.log(np.where(p > 0, p, 1.0)), 0.0), axis=1)
    elif attack == "m_entropy":
        log_p_y = np.log(np.maximum(p_y, _LOG_FLOOR))
        rest = np.where(np.arange(p.shape[1])[None, :] == t[:, None], 0.0, p)  # p_k for k != y, 0 at y
        f = -(1.0 - p_y) * log_p_y - np.sum(rest * np.log(np.maximum(1.0 - rest, _LOG_FLOOR)), axis=1)
    elif attack == "prob":
        return p
    else:
        raise MetricError(f"unknown MIA attack {attack!r}; known: {', '.join(MIA_ATTACKS)}")
    return f[:, None]


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
    attack: str = "confidence",
) -> float:
    """Fraction of forget samples an SVC membership attack calls non-members, on one subsample (module docstring)."""
    feats = [mia_features(lg, y, attack, from_probs=from_probs)
             for lg, y in ((retain_logits, retain_y), (test_logits, test_y), (forget_logits, forget_y))]
    return mia_efficacy_from_features(*feats, seed=seed)


def mia_efficacy_from_confidence(retain_conf: Any, test_conf: Any, forget_conf: Any, *, seed: int = 0) -> float:
    """:func:`mia_efficacy` from true-class probabilities already computed (1-D each), e.g. stored evidence."""
    return mia_efficacy_from_features(*(_np(c).astype(np.float64).reshape(-1, 1)
                                        for c in (retain_conf, test_conf, forget_conf)), seed=seed)


def _balanced(n_retain: int, n_test: int, rng: np.random.Generator,
              cap: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Row indices of a balanced attack training set: the larger of retain and test subsampled without replacement
    to the smaller's size (and both to ``cap`` when given), so the attack cannot win by predicting the majority
    class."""
    n = min(n_retain, n_test, cap or n_retain)
    r = np.sort(rng.choice(n_retain, size=n, replace=False)) if n_retain > n else np.arange(n)
    t = np.sort(rng.choice(n_test, size=n, replace=False)) if n_test > n else np.arange(n)
    return r, t


def _features_2d(f: Any, name: str) -> np.ndarray:
    a = _np(f).astype(np.float64)
    a = a.reshape(-1, 1) if a.ndim == 1 else a
    if a.ndim != 2:
        raise MetricError(f"{name} features must be (N,) or (N, d), got shape {a.shape}")
    return a


def _svc_efficacy(r: np.ndarray, t: np.ndarray, f: np.ndarray) -> float:
    x = np.concatenate([r, t])
    label = np.concatenate([np.ones(len(r), dtype=np.int64), np.zeros(len(t), dtype=np.int64)])
    clf = SVC(C=3, gamma="auto", kernel="rbf")
    clf.fit(x, label)
    return float(np.mean(clf.predict(f) == 0))


def mia_efficacy_from_features(retain_feat: Any, test_feat: Any, forget_feat: Any, *, seed: int = 0) -> float:
    """MIA-efficacy from attack features already computed ((N,) or (N, d) each), on the subsample of ``seed``."""
    r, t, f = (_features_2d(x, n) for x, n in ((retain_feat, "retain"), (test_feat, "test"), (forget_feat, "forget")))
    if min(len(r), len(t), len(f)) == 0:
        raise MetricError(f"MIA needs non-empty retain, test and forget sets, got sizes {len(r)}, {len(t)}, {len(f)}")
    if not r.shape[1] == t.shape[1] == f.shape[1]:
        raise MetricError(f"MIA feature widths differ: {r.shape[1]}, {t.shape[1]}, {f.shape[1]}")
    ri, ti = _balanced(len(r), len(t), np.random.default_rng(seed))
    return _svc_efficacy(r[ri], t[ti], f)


@dataclass(frozen=True)
class MIAResult:
    """One attack's MIA-efficacy over the attack subsamples: the values per subsample, their mean and sd
    (ddof = 1; 0 for one subsample)."""

    per_subsample: np.ndarray
    mean: float
    sd: float


def mia_attacks(
    retain_logits: Any,
    retain_y: Any,
    test_logits: Any,
    test_y: Any,
    forget_logits: Any,
    forget_y: Any,
    *,
    seeds: Sequence[int],
    attacks: Sequence[str] = MIA_ATTACKS,
    from_probs: bool = False,
    max_per_side: int | None = None,
) -> dict[str, MIAResult]:
    """Every attack of ``attacks`` on the balanced subsample of each seed in ``seeds`` (one subsample per seed,
    shared by the attacks): ``{attack: MIAResult}`` (see module docstring). ``max_per_side`` caps the members and
    non-members each subsample trains on (an SVC's fit grows faster than quadratically with its rows)."""
    seeds = [int(s) for s in np.asarray(seeds).reshape(-1)]
    if not seeds:
        raise MetricError("mia_attacks needs at least one subsample seed")
    sets = ((retain_logits, retain_y), (test_logits, test_y), (forget_logits, forget_y))
    feats = {a: [mia_features(lg, y, a, from_probs=from_probs) for lg, y in sets] for a in attacks}
    r0, t0, f0 = feats[attacks[0]]
    if min(len(r0), len(t0), len(f0)) == 0:
        raise MetricError(f"MIA needs non-empty retain, test and forget sets, got sizes {len(r0)}, {len(t0)}, "
                          f"{len(f0)}")
    subsamples = [_balanced(len(r0), len(t0), np.random.default_rng(s), max_per_side) for s in seeds]
    out = {}
    for a, (r, t, f) in feats.items():
        v = np.array([_svc_efficacy(r[ri], t[ti], f) for ri, ti in subsamples])
        sd = float(v.std(ddof=1)) if len(v) > 1 and np.ptp(v) > 0 else 0.0  # equal values: exactly 0, no rounding
        out[a] = MIAResult(v, float(v.mean()), sd)
    return out


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
