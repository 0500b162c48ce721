"""Binary cross-entropy: the logistic loss on the score f(x)."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

from harness.method import Batch, Method, State, is_binary
from harness.registry import register_method


@register_method("bce")
class BCE(Method):
    """Binary cross-entropy with logits, log(1 + exp(-z)) with z = y~ f(x).

    The baseline of EnsLoss (Wang & Shen, "EnsLoss: Stochastic Calibrated Loss
    Ensembles for Preventing Overfitting in Classification"). On K classes each
    class is its own binary problem (sigmoid per class, one-hot targets).
    """

    family = "loss"
    protocols = frozenset({"supervised"})
    hparams = dict()
    multiclass_note = "one-vs-all: a sigmoid BCE per class against one-hot targets, mean over N*K entries"

    def loss(self, logits: Tensor, batch: Batch, state: State) -> Tensor:
        if is_binary(logits):
            target = batch.y.to(logits.dtype)
        else:
            target = F.one_hot(batch.y, logits.shape[1]).to(logits.dtype)
        return F.binary_cross_entropy_with_logits(logits, target)
