"""KL matching: the KL divergence from the posterior to the nearest class-typical posterior."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from harness.core.method import Method, State
from harness.core.registry import register_method


@register_method("klm")
class KLMatching(Method):
    """KL matching (Hendrycks, Basart, Mazeika, Zou, Kwon, Mostajabi, Steinhardt & Song, "Scaling Out-of-Distribution
    Detection for Real-World Settings", ICML 2022):

    1. Templates: d_k = the mean softmax posterior of the samples the model predicts as class k.
    2. S(x) = -min_k KL[p(. | x) || d_k], with p(. | x) = softmax(f(x)).

    The templates come from the training split's outputs, the only in-distribution data ``calibrate`` receives; the
    paper and OpenOOD average over an ID validation split, so these templates are sharper than theirs. A class that
    no training sample is predicted as gets the one-hot template e_k (OpenOOD's rule). No hyperparameters. Scores the
    closed-set model that ``trainer`` trains (default erm).
    """

    family = "osr"
    protocols = frozenset({"openset"})
    hparams = dict(trainer="erm")

    def calibrate(self, model: nn.Module, train, state: State) -> None:
        p = train.logits.double().softmax(dim=1)
        pred = p.argmax(dim=1)
        eye = torch.eye(p.shape[1], dtype=torch.float64)
        self.templates = torch.stack([p[pred == k].mean(dim=0) if (pred == k).any() else eye[k]
                                      for k in range(p.shape[1])])

    def score(self, logits: Tensor, features: Tensor | None = None) -> Tensor:
        p = logits.double().softmax(dim=1)[:, None, :]  # N x 1 x K against K templates
        # xlogy: 0 log 0 = 0, so zero posteriors and a one-hot template's zeros give 0 or +inf, never NaN
        kl = (torch.xlogy(p, p) - torch.xlogy(p, self.templates[None])).sum(dim=2)
        return -kl.min(dim=1).values
