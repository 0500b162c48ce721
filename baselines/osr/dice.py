"""DICE: the last layer sparsified to its largest contributions on the training data, then the energy score."""

from __future__ import annotations

import numpy as np
from torch import Tensor, nn

from baselines.osr._head import linear_head
from harness.core.method import Method, State
from harness.core.registry import register_method
from harness.errors import HparamError


@register_method("dice")
class DICE(Method):
    """DICE (Sun & Li, "DICE: Leveraging Sparsification for Out-of-Distribution Detection", ECCV 2022), with
    classifier logits f = W z + b on penultimate features z:

    1. Contribution matrix V = W * mean_train(z) (entry (k, j) = W_kj E[z_j], the average contribution of unit j to
       logit k on the training data).
    2. Mask M_kj = 1 when V_kj is above the p-th percentile of all K x D entries of V, else 0: the top (100 - p) %
       of weights by contribution survive.
    3. S(x) = log sum_k exp ((M * W) z + b)_k, the energy score of the sparsified layer.

    p = 90 (``percentile``, the sparsity) is the paper's CIFAR setting and OpenOOD's default (the paper uses 70 on
    ImageNet; both tune it on validation data). Scores the closed-set model that ``trainer`` trains (default erm).
    """

    family = "osr"
    protocols = frozenset({"openset"})
    hparams = dict(trainer="erm", percentile=90.0)
    search = dict(percentile=(10.0, 30.0, 50.0, 70.0, 90.0))  # OpenOOD v1.5's APS grid (the sparsity)

    def __init__(self, hparams: dict | None = None) -> None:
        super().__init__(hparams)
        if not 0 <= self.hparams["percentile"] < 100:
            raise HparamError(f"hparam percentile={self.hparams['percentile']!r} for 'dice' must lie in [0, 100)")

    def calibrate(self, model: nn.Module, train, state: State) -> None:
        w, self.bias = linear_head(model, "dice")
        contribution = w * train.features.double().mean(dim=0)
        threshold = float(np.percentile(contribution.numpy(), self.hparams["percentile"]))  # linear interpolation
        self.weight = w * (contribution > threshold)

    def score(self, logits: Tensor, features: Tensor | None = None) -> Tensor:
        return (features.double() @ self.weight.T + self.bias).logsumexp(dim=1)
