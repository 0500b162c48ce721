"""Energy score: the free energy of the logits."""

from __future__ import annotations

from torch import Tensor

from harness.core.method import Method
from harness.core.registry import register_method
from harness.errors import HparamError


@register_method("energy")
class Energy(Method):
    """Energy (Liu et al., "Energy-based Out-of-distribution Detection", NeurIPS 2020):
    S(x) = -E(x; f) = T log sum_k exp(f_k(x) / T), with T = 1 as in the paper's inference-only setting.

    Scores the closed-set model that ``trainer`` trains (default erm).
    """

    family = "osr"
    protocols = frozenset({"openset"})
    hparams = dict(trainer="erm", temperature=1.0)

    def __init__(self, hparams: dict | None = None) -> None:
        super().__init__(hparams)
        if self.hparams["temperature"] <= 0:
            raise HparamError(f"hparam temperature={self.hparams['temperature']!r} for 'energy' must be > 0")

    def score(self, logits: Tensor, features: Tensor | None = None) -> Tensor:
        t = self.hparams["temperature"]
        return t * (logits / t).logsumexp(dim=1)
