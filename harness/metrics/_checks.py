"""Input conversion and validation shared by every metric module.

Every metric converts its inputs with :func:`_np` (numpy arrays, torch tensors,
lists) and raises :class:`MetricError` for bad input instead of returning a
made-up value (no silent 0.5 for degenerate cases).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from harness.errors import HarnessError


class MetricError(HarnessError, ValueError):
    """A metric got input it cannot score (empty, NaN, wrong shape, degenerate)."""


def _np(x: Any) -> np.ndarray:
    """Convert a torch tensor / array-like to a numpy array (duck-typed: no torch import needed)."""
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    return np.asarray(x)


def as_float_1d(x: Any, name: str, *, finite: bool = True, allow_empty: bool = False) -> np.ndarray:
    """1-D float64 array; rejects NaN (and +-inf when ``finite``)."""
    a = _np(x)
    if a.ndim != 1:
        raise MetricError(f"{name} must be 1-D, got shape {a.shape}")
    if not allow_empty and a.size == 0:
        raise MetricError(f"{name} is empty")
    if a.dtype.kind not in "biuf":
        raise MetricError(f"{name} must be numeric, got dtype {a.dtype}")
    a = a.astype(np.float64, copy=False)
    if np.isnan(a).any():
        raise MetricError(f"{name} contains NaN")
    if finite and np.isinf(a).any():
        raise MetricError(f"{name} contains +-inf; scores must be finite")
    return a


def as_labels(x: Any, name: str) -> np.ndarray:
    """1-D int64 array of labels; integral floats (e.g. float tensors of labels) are accepted."""
    a = _np(x)
    if a.ndim != 1:
        raise MetricError(f"{name} must be 1-D, got shape {a.shape}")
    if a.size == 0:
        raise MetricError(f"{name} is empty")
    if a.dtype.kind == "b":
        return a.astype(np.int64)
    if a.dtype.kind in "iu":
        return a.astype(np.int64, copy=False)
    if a.dtype.kind == "f":
        if not np.isfinite(a).all() or (a != np.round(a)).any():
            raise MetricError(f"{name} must hold integer labels, got non-integral floats")
        return a.astype(np.int64)
    raise MetricError(f"{name} must hold integer labels, got dtype {a.dtype}")


def as_predictions(x: Any, name: str = "predictions") -> np.ndarray:
    """Predicted labels from logits or labels, following the harness convention (see harness/core/method.py).

    * 2-D ``(N, K)`` with K >= 2: logits or probabilities, prediction = argmax.
    * 2-D ``(N, 1)`` or 1-D float: one binary logit per sample, prediction = ``logit > 0``.
    * 1-D integer/bool: already predicted labels.
    """
    a = _np(x)
    if a.size == 0:
        raise MetricError(f"{name} is empty")
    if a.ndim == 2:
        if a.shape[1] == 1:
            a = a[:, 0]
        else:
            if a.dtype.kind == "f" and np.isnan(a).any():
                raise MetricError(f"{name} contains NaN")
            return np.argmax(a, axis=1).astype(np.int64)
    if a.ndim != 1:
        raise MetricError(f"{name} must be (N,), (N, 1) or (N, K), got shape {a.shape}")
    if a.dtype.kind == "f":
        if np.isnan(a).any():
            raise MetricError(f"{name} contains NaN")
        # A 1-D float array is a binary logit (harness convention), not a float copy of labels.
        return (a > 0).astype(np.int64)
    return as_labels(a, name)


def same_length(*pairs: tuple[str, np.ndarray]) -> None:
    n = {len(a) for _, a in pairs}
    if len(n) > 1:
        sizes = ", ".join(f"{name}={len(a)}" for name, a in pairs)
        raise MetricError(f"length mismatch: {sizes}")
