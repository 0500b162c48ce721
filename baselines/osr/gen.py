"""GEN: the generalized entropy of the largest softmax probabilities."""

from __future__ import annotations

from torch import Tensor

from harness.core.method import Method
from harness.core.registry import register_method
from harness.errors import HparamError


@register_method("gen")
class GEN(Method):
    """GEN (Liu, Lochman & Zach, "GEN: Pushing the Limits of Softmax-Based Out-of-Distribution Detection",
    CVPR 2023):

    1. p = softmax(f(x)), sorted p_(1) >= p_(2) >= ...; keep the M largest (all K classes when M >= K).
    2. G_gamma(p) = sum_{j <= M} p_(j)^gamma (1 - p_(j))^gamma, the generalized entropy.
    3. S(x) = -G_gamma(p): a peaked posterior has low entropy and scores high.

    gamma = 0.1 and M = 100 (``m``) are the paper's ImageNet defaults and OpenOOD's; both are tuned on validation data
    there (gamma in 0.01-10, M in 10-1000). With K <= 100 known classes every probability enters the sum. Scores the
    closed-set model that ``trainer`` trains (default erm).
    """

    family = "osr"
    protocols = frozenset({"openset"})
    hparams = dict(trainer="erm", gamma=0.1, m=100)
    search = dict(gamma=(0.01, 0.1, 0.5, 1.0, 2.0, 5.0, 10.0))  # OpenOOD v1.5's APS range; M covers every class

    def __init__(self, hparams: dict | None = None) -> None:
        super().__init__(hparams)
        if self.hparams["gamma"] <= 0 or self.hparams["m"] < 1:
            raise HparamError(f"gen needs gamma > 0 and m >= 1, got gamma={self.hparams['gamma']!r}, "
                              f"m={self.hparams['m']!r}")

    def score(self, logits: Tensor, features: Tensor | None = None) -> Tensor:
        gamma = self.hparams["gamma"]
        p = logits.double().softmax(dim=1)
        top = p.topk(min(self.hparams["m"], p.shape[1]), dim=1).values
        # float64: p^0.1 of a tiny probability is not tiny, so the tail matters and must not round to 0 or 1
        return -(top.pow(gamma) * (1 - top).pow(gamma)).sum(dim=1)
