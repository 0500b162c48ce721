"""Binary cross-entropy: the logistic loss on the score f(x)."""

from __future__ import annotations

import math
from typing import Any

import torch.nn.functional as F
from torch import Tensor, nn

from harness.core.functional import is_binary, set_output_bias
from harness.core.method import Batch, Method, State
from harness.core.registry import register_method


@register_method("bce")
class BCE(Method):
    """Binary cross-entropy with logits, log(1 + exp(-z)) with z = y~ f(x).

    The baseline of EnsLoss (Ben Dai, "EnsLoss: Stochastic Calibrated Loss
    Ensembles for Preventing Overfitting in Classification", ICML 2025). On K
    classes each class is its own binary problem (sigmoid per class, one-hot
    targets), and the output bias starts at -log(K-1), the logit of the prior
    1/K: the best constant score of each 1:(K-1) column under this loss.
    """

    family = "loss"
    protocols = frozenset({"supervised"})
    hparams = dict()
    multiclass_note = ("one-vs-all: a sigmoid BCE per class against one-hot targets, mean over N*K; output bias "
                       "starts at the best constant for the 1:(K-1) prior, -log(K-1)")

    def init_model(self, model: nn.Module, task: Any) -> None:
        if task.num_classes > 2:
            set_output_bias(model, -math.log(task.num_classes - 1))

    def loss(self, logits: Tensor, batch: Batch, state: State) -> Tensor:
        if is_binary(logits):
            target = batch.y.to(logits.dtype)
        else:
            target = F.one_hot(batch.y, logits.shape[1]).to(logits.dtype)
        return F.binary_cross_entropy_with_logits(logits, target)
