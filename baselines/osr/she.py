"""SHE: simplified Hopfield energy, the inner product with the stored pattern of the predicted class."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from harness.core.method import Method, State
from harness.core.registry import register_method


@register_method("she")
class SHE(Method):
    """SHE (Zhang et al., "Out-of-Distribution Detection based on In-Distribution Data Patterns Memorization with
    Modern Hopfield Energy", ICLR 2023), on the penultimate features z:

    1. Stored patterns: S_c = the mean feature of the training samples of class c that the model classifies
       correctly (label c and prediction c).
    2. y_hat = argmax_k f_k(x); S(x) = z(x)^T S_{y_hat}, the simplified Hopfield energy (inner product, the paper's
       and OpenOOD's metric).

    No hyperparameters. Where a class has no correctly classified training sample the pattern falls back to the mean
    of all its training samples (and to 0 for a class absent from training); the paper does not meet this case.
    Scores the closed-set model that ``trainer`` trains (default erm).
    """

    family = "osr"
    protocols = frozenset({"openset"})
    hparams = dict(trainer="erm")

    def calibrate(self, model: nn.Module, train, state: State) -> None:
        z, y = train.features.double(), train.y
        pred = train.logits.argmax(dim=1)
        patterns = []
        for c in range(train.logits.shape[1]):
            correct, labelled = (y == c) & (pred == c), y == c
            rows = correct if correct.any() else labelled
            patterns.append(z[rows].mean(dim=0) if rows.any() else z.new_zeros(z.shape[1]))
        self.patterns = torch.stack(patterns)

    def score(self, logits: Tensor, features: Tensor | None = None) -> Tensor:
        return (features.double() * self.patterns[logits.argmax(dim=1)]).sum(dim=1)
