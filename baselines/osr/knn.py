"""Deep nearest neighbours: distance to the k-th nearest training feature on the unit sphere."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from harness.core.method import Method, State
from harness.core.registry import register_method
from harness.errors import HparamError

CHUNK = 1024  # test rows per distance block, to bound memory


@register_method("knn")
class KNN(Method):
    """KNN (Sun et al., "Out-of-Distribution Detection with Deep Nearest Neighbors", ICML 2022):

    1. Normalise the penultimate features: z / ||z||; the training features form the bank.
    2. S(x) = -||z(x) - z_(k)||, the negated Euclidean distance to the k-th nearest bank feature.

    k = 50 (the paper's CIFAR-10 choice), capped at the bank size. Scores the closed-set model that ``trainer``
    trains (default erm).
    """

    family = "osr"
    protocols = frozenset({"openset"})
    hparams = dict(trainer="erm", k=50)
    search = dict(k=(1, 10, 20, 50, 100, 200))  # OpenOOD v1.5's APS grid, up to what a small training set holds

    def __init__(self, hparams: dict | None = None) -> None:
        super().__init__(hparams)
        if self.hparams["k"] < 1:
            raise HparamError(f"hparam k={self.hparams['k']!r} for 'knn' must be >= 1")

    def calibrate(self, model: nn.Module, train, state: State) -> None:
        self.bank = F.normalize(train.features.float(), dim=1)
        self.k = min(self.hparams["k"], len(self.bank))

    def score(self, logits: Tensor, features: Tensor | None = None) -> Tensor:
        z = F.normalize(features.float(), dim=1)
        kth = [torch.cdist(block, self.bank).topk(self.k, dim=1, largest=False).values[:, -1]
               for block in z.split(CHUNK)]
        return -torch.cat(kth)
