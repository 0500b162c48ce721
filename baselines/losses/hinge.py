"""Hinge loss, the SVM's surrogate."""

from __future__ import annotations

import torch
from torch import Tensor

from harness.method import Batch, Method, State, signed_margin_targets
from harness.registry import register_method


@register_method("hinge")
class Hinge(Method):
    """Hinge loss max(0, 1 - z), z = y~ f(x) (Cortes & Vapnik, 1995).

    A baseline of EnsLoss (Wang & Shen, "EnsLoss: Stochastic Calibrated Loss
    Ensembles for Preventing Overfitting in Classification").
    """

    family = "loss"
    protocols = frozenset({"supervised"})
    hparams = dict()
    multiclass_note = "one-vs-all: a binary hinge per class with +1 for the label and -1 elsewhere, mean over N*K"

    def loss(self, logits: Tensor, batch: Batch, state: State) -> Tensor:
        f, signs = signed_margin_targets(logits, batch.y)
        return torch.relu(1.0 - signs * f).mean()
