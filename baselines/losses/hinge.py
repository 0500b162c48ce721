"""Hinge loss, the SVM's surrogate."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from harness.core.functional import set_output_bias, signed_margin_targets
from harness.core.method import Batch, Method, State
from harness.core.registry import register_method


@register_method("hinge")
class Hinge(Method):
    """Hinge loss max(0, 1 - z), z = y~ f(x) (Cortes & Vapnik, 1995).

    A baseline of EnsLoss (Ben Dai, "EnsLoss: Stochastic Calibrated Loss
    Ensembles for Preventing Overfitting in Classification", ICML 2025). On K
    classes each class is its own binary problem and the output bias starts at
    -1, the best constant score of a 1:(K-1) column under the hinge (for any
    prior below 1/2). The logistic prior -log(K-1) is no start for it: the
    negatives begin deep inside the margin, only the positives push, and on
    rotated digits (10 classes, 6 epochs) it predicted a single class (0.11
    accuracy) where -1 reached 0.41 (ERM 0.44).
    """

    family = "loss"
    protocols = frozenset({"supervised"})
    hparams = dict()
    multiclass_note = ("one-vs-all: a binary hinge per class with +1 for the label and -1 elsewhere, mean over N*K; "
                       "output bias starts at the best constant for the 1:(K-1) prior, -1")

    def init_model(self, model: nn.Module, task: Any) -> None:
        if task.num_classes > 2:
            set_output_bias(model, -1.0)

    def loss(self, logits: Tensor, batch: Batch, state: State) -> Tensor:
        f, signs = signed_margin_targets(logits, batch.y)
        return torch.relu(1.0 - signs * f).mean()
