"""Maximum softmax probability: the open-set baseline."""

from __future__ import annotations

from torch import Tensor

from harness.core.method import Method
from harness.core.registry import register_method


@register_method("msp")
class MSP(Method):
    """MSP (Hendrycks & Gimpel, "A Baseline for Detecting Misclassified and Out-of-Distribution Examples in Neural
    Networks", ICLR 2017): S(x) = max_k softmax(f(x))_k.

    Scores the closed-set model that ``trainer`` trains (default erm).
    """

    family = "osr"
    protocols = frozenset({"openset"})
    hparams = dict(trainer="erm")

    def score(self, logits: Tensor, features: Tensor | None = None) -> Tensor:
        return logits.softmax(dim=1).max(dim=1).values
