"""NNGuide: the energy score guided by the nearest confidence-scaled training features."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from harness.core.method import Method, State
from harness.core.registry import register_method
from harness.errors import HparamError

BLOCK = 1 << 22  # similarities per block (test rows x bank rows), to bound memory


@register_method("nnguide")
class NNGuide(Method):
    """NNGuide (Park, Jung & Teoh, "Nearest Neighbor Guidance for Out-of-Distribution Detection", ICCV 2023), with the
    energy score E(x) = log sum_k exp f_k(x) as the base score and penultimate features z:

    1. Bank: a fraction alpha of the training samples; each stored as z_i / ||z_i|| * E(x_i), its direction scaled
       by its own confidence.
    2. G(x) = the mean of the k largest inner products between z(x) / ||z(x)|| and the bank entries: high near
       confident training samples.
    3. S(x) = E(x) * G(x).

    k = 100 and alpha = 0.01 are OpenOOD's defaults (fixed there, not tuned). Deviations: the bank is never
    smaller than k (so max(ceil(alpha N), k) samples, all N when fewer), since on small training sets 1 % holds fewer
    than k samples; and it takes evenly spaced training rows, a deterministic stand-in for the reference code's first
    batches of a shuffled loader. Scores the closed-set model that ``trainer`` trains (default erm).
    """

    family = "osr"
    protocols = frozenset({"openset"})
    hparams = dict(trainer="erm", k=100, alpha=0.01)

    def __init__(self, hparams: dict | None = None) -> None:
        super().__init__(hparams)
        if self.hparams["k"] < 1 or not 0 < self.hparams["alpha"] <= 1:
            raise HparamError(f"nnguide needs k >= 1 and 0 < alpha <= 1, got k={self.hparams['k']!r}, "
                              f"alpha={self.hparams['alpha']!r}")

    def calibrate(self, model: nn.Module, train, state: State) -> None:
        n, k = len(train.features), self.hparams["k"]
        size = min(n, max(math.ceil(self.hparams["alpha"] * n), k))
        rows = torch.linspace(0, n - 1, size).round().long()
        z, logits = train.features[rows].float(), train.logits[rows].float()
        self.bank = F.normalize(z, dim=1) * logits.logsumexp(dim=1, keepdim=True)
        self.k = min(k, size)

    def score(self, logits: Tensor, features: Tensor | None = None) -> Tensor:
        z = F.normalize(features.float(), dim=1)
        chunk = max(1, BLOCK // len(self.bank))
        guide = torch.cat([(block @ self.bank.T).topk(self.k, dim=1).values.mean(dim=1) for block in z.split(chunk)])
        return logits.float().logsumexp(dim=1) * guide
