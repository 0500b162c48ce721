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
* Linear CKA (Kornblith et al. 2019) for X (n x p), Y (n x q) with columns centred:
  CKA = ||Y^T X||_F^2 / (||X^T X||_F ||Y^T Y||_F), equal to HSIC(K, L) / sqrt(HSIC(K, K) HSIC(L, L)) with linear
  kernels K = X X^T, L = Y Y^T.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from harness.metrics._checks import MetricError, _np, as_labels, same_length

__all__ = ["knn_accuracy", "knn_predict", "linear_cka", "linear_probe_accuracy"]

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


def linear_probe_accuracy(
    train_x: Any, train_y: Any, test_x: Any, test_y: Any, *, C: float = 1.0, max_iter: int = 5000
) -> float:
    """Test accuracy of a logistic-regression probe on standardised frozen features."""
    from sklearn.linear_model import LogisticRegression  # lazy: slow import, only probes need it
    from sklearn.preprocessing import StandardScaler

    xtr, ytr, xte = _train_test(train_x, train_y, test_x)
    yte = as_labels(test_y, "test labels")
    same_length(("test features", xte), ("test labels", yte))
    if len(np.unique(ytr)) < 2:
        raise MetricError("linear probe needs at least two classes in the train labels")
    scaler = StandardScaler().fit(xtr)
    clf = LogisticRegression(C=C, max_iter=max_iter)
    clf.fit(scaler.transform(xtr), ytr)
    return float(np.mean(clf.predict(scaler.transform(xte)) == yte))


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
