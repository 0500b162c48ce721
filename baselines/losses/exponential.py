"""Exponential loss, AdaBoost's surrogate."""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor, nn

from harness.core.functional import set_output_bias, signed_margin_targets
from harness.core.method import Batch, Method, State
from harness.core.registry import register_method


@register_method("exponential")
class Exponential(Method):
    """Exponential loss exp(-z), z = y~ f(x) (Freund & Schapire, 1997).

    A baseline of EnsLoss (Ben Dai, "EnsLoss: Stochastic Calibrated Loss
    Ensembles for Preventing Overfitting in Classification", ICML 2025).

    Kept exact, with no clamp on z: clamping would zero the gradient of exactly
    the worst-classified samples and so change the method. If a margin falls
    below about -88 (float32) the loss overflows to inf, and the harness
    records the case as diverged, which is the honest outcome for this loss.

    The global gradient norm is clipped at 10 before every step, as the EnsLoss
    reference code does for this loss (and only this one) in every experiment
    (``train.py``: "otherwise the grad may lead to explosion"); the clip is a
    budget change, so records show it under ``run.method_budget``.

    On K classes each class is its own binary problem and the output bias
    starts at -log(K-1)/2, the best constant score of a 1:(K-1) column under
    this loss (the minimiser of p exp(-b) + (1-p) exp(b) at p = 1/K).
    """

    family = "loss"
    protocols = frozenset({"supervised"})
    hparams = dict()
    budget_overrides = {"grad_clip": 10.0}
    multiclass_note = ("one-vs-all: a binary exponential loss per class (+1 label, -1 elsewhere), mean over N*K; "
                       "output bias starts at the best constant for the 1:(K-1) prior, -log(K-1)/2")

    def init_model(self, model: nn.Module, task: Any) -> None:
        if task.num_classes > 2:
            set_output_bias(model, -0.5 * math.log(task.num_classes - 1))

    def loss(self, logits: Tensor, batch: Batch, state: State) -> Tensor:
        f, signs = signed_margin_targets(logits, batch.y)
        return torch.exp(-signs * f).mean()
