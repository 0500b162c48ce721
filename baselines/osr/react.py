"""ReAct: penultimate activations clipped at a percentile of the training activations, then the energy score."""

from __future__ import annotations

import numpy as np
from torch import Tensor, nn

from baselines.osr._head import linear_head
from harness.core.method import Method, State
from harness.core.registry import register_method
from harness.errors import HparamError


@register_method("react")
class ReAct(Method):
    """ReAct (Sun, Guo & Li, "ReAct: Out-of-distribution Detection With Rectified Activations", NeurIPS 2021), with
    classifier logits f = W z + b on penultimate features z:

    1. c = the p-th percentile of all training activations (every unit of every training sample's z).
    2. z~ = min(z, c), elementwise: unusually large activations, typical of OOD inputs, are truncated.
    3. S(x) = log sum_k exp (W z~ + b)_k, the energy score of the rectified logits.

    p = 90 (``percentile``) is the paper's default and OpenOOD's; OpenOOD tunes it on validation data (85-99) and
    estimates c on its ID validation split, the paper on training data as here. Scores the closed-set model that
    ``trainer`` trains (default erm).
    """

    family = "osr"
    protocols = frozenset({"openset"})
    hparams = dict(trainer="erm", percentile=90.0)
    search = dict(percentile=(85.0, 90.0, 95.0, 99.0))  # OpenOOD v1.5's APS grid, searched on validation data

    def __init__(self, hparams: dict | None = None) -> None:
        super().__init__(hparams)
        if not 0 < self.hparams["percentile"] <= 100:
            raise HparamError(f"hparam percentile={self.hparams['percentile']!r} for 'react' must lie in (0, 100]")

    def calibrate(self, model: nn.Module, train, state: State) -> None:
        self.weight, self.bias = linear_head(model, "react")
        # numpy's percentile (linear interpolation, as the reference code): torch.quantile refuses > 2^24 entries
        self.threshold = float(np.percentile(train.features.double().numpy(), self.hparams["percentile"]))

    def score(self, logits: Tensor, features: Tensor | None = None) -> Tensor:
        clipped = features.double().clamp(max=self.threshold)
        return (clipped @ self.weight.T + self.bias).logsumexp(dim=1)
