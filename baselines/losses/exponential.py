"""Exponential loss, AdaBoost's surrogate."""

from __future__ import annotations

import torch
from torch import Tensor

from harness.method import Batch, Method, State, signed_margin_targets
from harness.registry import register_method


@register_method("exponential")
class Exponential(Method):
    """Exponential loss exp(-z), z = y~ f(x) (Freund & Schapire, 1997).

    A baseline of EnsLoss (Wang & Shen, "EnsLoss: Stochastic Calibrated Loss
    Ensembles for Preventing Overfitting in Classification").

    Kept exact, with no clamp on z: clamping would zero the gradient of exactly
    the worst-classified samples and so change the method. If a margin falls
    below about -88 (float32) the loss overflows to inf, and the harness
    records the case as diverged, which is the honest outcome for this loss.
    """

    family = "loss"
    protocols = frozenset({"supervised"})
    hparams = dict()
    multiclass_note = "one-vs-all: a binary exponential loss per class (+1 label, -1 elsewhere), mean over N*K"

    def loss(self, logits: Tensor, batch: Batch, state: State) -> Tensor:
        f, signs = signed_margin_targets(logits, batch.y)
        return torch.exp(-signs * f).mean()
