"""kNN / linear probes against sklearn, linear CKA against the HSIC formula and its invariances."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import ortho_group
from sklearn.linear_model import LogisticRegression
from sklearn.neighbors import KNeighborsClassifier
from sklearn.preprocessing import StandardScaler

from harness.metrics._checks import MetricError
from harness.metrics.probes import knn_accuracy, knn_predict, linear_cka, linear_probe_accuracy


def _blobs(seed: int, n: int, d: int = 8, k: int = 4) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    centers = np.random.default_rng(99).normal(0, 1.5, (k, d))
    y = rng.integers(0, k, n)
    # Non-zero offset and unequal scales so that z-scoring matters.
    x = (centers[y] + rng.normal(0, 1.0, (n, d))) * np.linspace(0.5, 5, d) + 3.0
    return x, y


@pytest.mark.parametrize("k", [1, 5, 20])
def test_knn_matches_sklearn_cosine_brute(k: int) -> None:
    xtr, ytr = _blobs(0, 300)
    xte, yte = _blobs(1, 120)
    scaler = StandardScaler().fit(xtr)  # the same train-statistics z-scoring, done independently
    ref = KNeighborsClassifier(n_neighbors=k, metric="cosine", algorithm="brute")
    ref.fit(scaler.transform(xtr), ytr)
    expected = ref.predict(scaler.transform(xte))
    ours = knn_predict(xtr, ytr, xte, k=k, chunk_size=37)  # odd chunk size exercises the chunk loop
    np.testing.assert_array_equal(ours, expected)
    assert knn_accuracy(xtr, ytr, xte, yte, k=k) == pytest.approx(np.mean(expected == yte))
    assert knn_accuracy(xtr, ytr, xte, yte, k=k) > 0.5


def test_knn_vote_tie_goes_to_smallest_label() -> None:
    # Four train points; the query's 4 neighbours vote 2 for label 7 and 2 for label 3.
    xtr = np.array([[1.0, 0.1], [1.0, 0.2], [1.0, -0.1], [1.0, -0.2], [-1.0, 0.0], [-1.0, 0.5]])
    ytr = np.array([7, 7, 3, 3, 9, 9])
    pred = knn_predict(xtr, ytr, np.array([[1.0, 0.0]]), k=4)
    assert pred.tolist() == [3]
    scaler = StandardScaler().fit(xtr)
    ref = KNeighborsClassifier(n_neighbors=4, metric="cosine", algorithm="brute").fit(scaler.transform(xtr), ytr)
    assert ref.predict(scaler.transform(np.array([[1.0, 0.0]]))).tolist() == [3]


def test_knn_errors() -> None:
    x, y = _blobs(0, 10)
    with pytest.raises(MetricError, match="k must be"):
        knn_predict(x, y, x, k=11)
    with pytest.raises(MetricError, match="dims differ"):
        knn_predict(x, y, x[:, :3], k=3)


def test_linear_probe_matches_manual_pipeline() -> None:
    xtr, ytr = _blobs(2, 300)
    xte, yte = _blobs(3, 100)
    scaler = StandardScaler().fit(xtr)
    clf = LogisticRegression(max_iter=5000).fit(scaler.transform(xtr), ytr)
    expected = np.mean(clf.predict(scaler.transform(xte)) == yte)
    assert linear_probe_accuracy(xtr, ytr, xte, yte) == pytest.approx(expected)
    assert expected > 0.7


def hsic_cka(x: np.ndarray, y: np.ndarray) -> float:
    n = len(x)
    h = np.eye(n) - np.ones((n, n)) / n
    k, l_ = x @ x.T, y @ y.T

    def hsic(a: np.ndarray, b: np.ndarray) -> float:
        return float(np.trace(a @ h @ b @ h)) / (n - 1) ** 2

    return hsic(k, l_) / np.sqrt(hsic(k, k) * hsic(l_, l_))


def test_cka_matches_hsic_formula_and_invariances() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(60, 10))
    y = x[:, :6] @ rng.normal(size=(6, 7)) + 0.5 * rng.normal(size=(60, 7)) + 2.0
    value = linear_cka(x, y)
    assert value == pytest.approx(hsic_cka(x, y), rel=1e-10)
    assert 0.2 < value < 1.0
    assert linear_cka(x, x) == pytest.approx(1.0)
    q = ortho_group.rvs(10, random_state=1)
    assert linear_cka(x @ q, y) == pytest.approx(value, rel=1e-10)  # orthogonal transform
    assert linear_cka(3.7 * x, 0.2 * y) == pytest.approx(value, rel=1e-10)  # isotropic scaling
    assert linear_cka(x + 5.0, y) == pytest.approx(value, rel=1e-10)  # centring
    # Independent features give a small CKA (not a placeholder value).
    assert linear_cka(x, rng.normal(size=(60, 7))) < 0.3


def test_cka_errors() -> None:
    with pytest.raises(MetricError, match="constant"):
        linear_cka(np.ones((5, 3)), np.random.default_rng(0).normal(size=(5, 2)))
    with pytest.raises(MetricError, match="length mismatch"):
        linear_cka(np.zeros((5, 3)), np.zeros((4, 3)))
