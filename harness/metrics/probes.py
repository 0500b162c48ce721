"""Representation metrics: kNN and linear probes on frozen features, and linear CKA.

Definitions:

* kNN accuracy: features are z-scored with the TRAIN mean and std (population std, ddof=0; a constant feature
  keeps scale 1, as in sklearn's StandardScaler), then each test sample takes the ``k`` train samples of highest
  cosine similarity and predicts the majority label among them (uniform votes). A tied vote goes to the smallest
  label, as in ``sklearn.neighbors.KNeighborsClassifier``. Train samples tied in similarity at the k-th place are
  chosen arbitrarily (this only matters for duplicated features). Similarities are computed in chunks of test
  rows so memory stays bounded.
* Linear-probe accuracy: ``StandardScaler`` fitted on train, then ``LogisticRegression`` (lbfgs, L2, ``C``),
  accuracy on test.
* Gaussian naive Bayes (the generative partner of logistic regression in Ng & Jordan, "On discriminative vs.
  generative classifiers", 2002): per class c the prior pi_c = n_c / n, the feature means mu_c and variances
  s2_c (ddof=0) plus eps = ``var_smoothing`` * (largest per-feature variance over all train samples); a sample
  goes to argmax_c log pi_c - 1/2 sum_j [log(2 pi s2_cj) + (x_j - mu_cj)^2 / s2_cj]. This is sklearn's
  ``GaussianNB`` exactly (ties: the first class in sorted order). Features are used as given: z-scoring
  changes nothing but the relative size of eps.
* Linear CKA (Kornblith et al. 2019) for X (n x p), Y (n x q) with columns centred:
  CKA = ||Y^T X||_F^2 / (||X^T X||_F ||Y^T Y||_F), equal to HSIC(K, L) / sqrt(HSIC(K, K) HSIC(L, L)) with linear
  kernels K = X X^T, L = Y Y^T.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from harness.metrics._checks import MetricError, _np, as_labels, same_length

__all__ = [
    "GaussianNaiveBayes", "knn_accuracy", "knn_predict", "linear_cka", "linear_probe_accuracy",
    "linear_probe_predict", "naive_bayes_accuracy", "naive_bayes_predict",
]

_CHUNK_ELEMENTS = 1 << 24  # ~128 MiB of float64 similarities per chunk


def _features(x: Any, name: str) -> np.ndarray:
    a = _np(x).astype(np.float64)
    if a.ndim != 2 or a.shape[0] == 0 or a.shape[1] == 0:
        raise MetricError(f"{name} must be a non-empty (n, d) array, got shape {a.shape}")
    if not np.isfinite(a).all():
        raise MetricError(f"{name} contains NaN or inf")
    return a


def _train_test(train_x: Any, train_y: Any, test_x: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    xtr = _features(train_x, "train features")
    xte = _features(test_x, "test features")
    ytr = as_labels(train_y, "train labels")
    same_length(("train features", xtr), ("train labels", ytr))
    if xtr.shape[1] != xte.shape[1]:
        raise MetricError(f"feature dims differ: train {xtr.shape[1]}, test {xte.shape[1]}")
    return xtr, ytr, xte


def _zscore_unit(xtr: np.ndarray, xte: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    mean = xtr.mean(axis=0)
    std = xtr.std(axis=0)
    std = np.where(std > 0, std, 1.0)  # constant feature: leave unscaled rather than divide by 0

    def unit(a: np.ndarray) -> np.ndarray:
        z = (a - mean) / std
        norm = np.linalg.norm(z, axis=1, keepdims=True)
        return z / np.where(norm > 0, norm, 1.0)  # an all-zero row has similarity 0 to everything

    return unit(xtr), unit(xte)


def knn_predict(train_x: Any, train_y: Any, test_x: Any, k: int = 20, *, chunk_size: int | None = None) -> np.ndarray:
    """kNN predictions (cosine similarity on train-z-scored features, majority vote; see module docstring)."""
    xtr, ytr, xte = _train_test(train_x, train_y, test_x)
    if not 1 <= k <= len(xtr):
        raise MetricError(f"k must be in [1, n_train={len(xtr)}], got {k}")
    classes, ytr_idx = np.unique(ytr, return_inverse=True)
    n_cls = len(classes)
    ztr, zte = _zscore_unit(xtr, xte)
    chunk = chunk_size or max(1, _CHUNK_ELEMENTS // len(ztr))
    out = np.empty(len(zte), dtype=np.int64)
    for start in range(0, len(zte), chunk):
        sim = zte[start : start + chunk] @ ztr.T  # (m, n_train) cosine similarities
        m = sim.shape[0]
        if k < sim.shape[1]:
            nbr = np.argpartition(-sim, k - 1, axis=1)[:, :k]  # the k most similar, unordered
        else:
            nbr = np.broadcast_to(np.arange(sim.shape[1]), (m, k))
        lab = ytr_idx[nbr]  # (m, k) class indices
        votes = np.bincount((np.arange(m)[:, None] * n_cls + lab).ravel(), minlength=m * n_cls)
        # argmax returns the first maximum: ties go to the smallest label (classes are sorted).
        out[start : start + m] = np.argmax(votes.reshape(m, n_cls), axis=1)
    return classes[out]


def knn_accuracy(
    train_x: Any, train_y: Any, test_x: Any, test_y: Any, k: int = 20, *, chunk_size: int | None = None
) -> float:
    """Accuracy of :func:`knn_predict` on the test set."""
    yte = as_labels(test_y, "test labels")
    pred = knn_predict(train_x, train_y, test_x, k, chunk_size=chunk_size)
    same_length(("test features", pred), ("test labels", yte))
    return float(np.mean(pred == yte))


def linear_probe_predict(train_x: Any, train_y: Any, test_x: Any, *, C: float = 1.0, max_iter: int = 5000
                         ) -> np.ndarray:
    """Predictions of a logistic-regression probe on standardised frozen features."""
    from sklearn.linear_model import LogisticRegression  # lazy: slow import, only probes need it
    from sklearn.preprocessing import StandardScaler

    xtr, ytr, xte = _train_test(train_x, train_y, test_x)
    if len(np.unique(ytr)) < 2:
        raise MetricError("linear probe needs at least two classes in the train labels")
    scaler = StandardScaler().fit(xtr)
    clf = LogisticRegression(C=C, max_iter=max_iter)
    clf.fit(scaler.transform(xtr), ytr)
    return clf.predict(scaler.transform(xte))


def linear_probe_accuracy(
    train_x: Any, train_y: Any, test_x: Any, test_y: Any, *, C: float = 1.0, max_iter: int = 5000
) -> float:
    """Test accuracy of a logistic-regression probe on standardised frozen features."""
    yte = as_labels(test_y, "test labels")
    same_length(("test features", _features(test_x, "test features")), ("test labels", yte))
    return float(np.mean(linear_probe_predict(train_x, train_y, test_x, C=C, max_iter=max_iter) == yte))


@dataclass(frozen=True)
class GaussianNaiveBayes:
    """A fitted Gaussian naive Bayes classifier (see module docstring); build it with :meth:`fit`."""

    classes: np.ndarray  # sorted labels
    log_prior: np.ndarray  # (k,)
    mean: np.ndarray  # (k, d)
    var: np.ndarray  # (k, d), smoothed

    @classmethod
    def fit(cls, train_x: Any, train_y: Any, var_smoothing: float = 1e-9) -> GaussianNaiveBayes:
        x = _features(train_x, "train features")
        y = as_labels(train_y, "train labels")
        same_length(("train features", x), ("train labels", y))
        classes, inverse, counts = np.unique(y, return_inverse=True, return_counts=True)
        eps = var_smoothing * float(x.var(axis=0).max())
        mean = np.stack([x[inverse == c].mean(axis=0) for c in range(len(classes))])
        var = np.stack([x[inverse == c].var(axis=0) for c in range(len(classes))]) + eps
        if not (var > 0).all():  # every feature constant over the train set: no variance to smooth with
            raise MetricError("naive Bayes: every train feature is constant, so the class variances are 0")
        return cls(classes, np.log(counts / len(y)), mean, var)

    def joint_log_likelihood(self, test_x: Any) -> np.ndarray:
        """log pi_c + log N(x | mu_c, diag s2_c) for every test row and class, shape (n, k)."""
        x = _features(test_x, "test features")
        if x.shape[1] != self.mean.shape[1]:
            raise MetricError(f"feature dims differ: train {self.mean.shape[1]}, test {x.shape[1]}")
        norm = -0.5 * np.log(2.0 * np.pi * self.var).sum(axis=1)  # (k,)
        # one class at a time (k is small): no (n, k, d) tensor, and no cancellation from expanding the square
        quad = np.stack([(((x - m) ** 2) / v).sum(axis=1) for m, v in zip(self.mean, self.var)], axis=1)
        return self.log_prior + norm - 0.5 * quad

    def predict(self, test_x: Any) -> np.ndarray:
        return self.classes[np.argmax(self.joint_log_likelihood(test_x), axis=1)]


def naive_bayes_predict(train_x: Any, train_y: Any, test_x: Any, *, var_smoothing: float = 1e-9) -> np.ndarray:
    """Gaussian naive Bayes predictions (see module docstring)."""
    return GaussianNaiveBayes.fit(train_x, train_y, var_smoothing).predict(test_x)


def naive_bayes_accuracy(train_x: Any, train_y: Any, test_x: Any, test_y: Any, *, var_smoothing: float = 1e-9
                         ) -> float:
    """Test accuracy of :func:`naive_bayes_predict`."""
    yte = as_labels(test_y, "test labels")
    pred = naive_bayes_predict(train_x, train_y, test_x, var_smoothing=var_smoothing)
    same_length(("test features", pred), ("test labels", yte))
    return float(np.mean(pred == yte))


def linear_cka(x: Any, y: Any) -> float:
    """Linear CKA between feature matrices X (n x p) and Y (n x q) over the same n samples."""
    a = _features(x, "X")
    b = _features(y, "Y")
    same_length(("X", a), ("Y", b))
    if len(a) < 2:
        raise MetricError("linear CKA needs at least 2 samples")
    a = a - a.mean(axis=0)
    b = b - b.mean(axis=0)
    # Feature-space form: cost O(n p q) and memory O(p q), no n x n Gram matrix.
    cross = np.linalg.norm(b.T @ a) ** 2
    denom = np.linalg.norm(a.T @ a) * np.linalg.norm(b.T @ b)
    if denom == 0:
        raise MetricError("linear CKA is undefined when X or Y is constant across samples")
    return float(cross / denom)
