"""SCALE: every penultimate activation scaled by how much of the sample's total its largest activations hold."""

from __future__ import annotations

from torch import Tensor, nn

from baselines.osr._head import check_nonnegative, kept_count, linear_head
from harness.core.method import Method, State
from harness.core.registry import register_method
from harness.errors import HparamError


@register_method("scale")
class SCALE(Method):
    """SCALE (Xu, Chen, Franchi & Yao, "Scaling for Training Time and Post-hoc Out-of-distribution Detection
    Enhancement", ICLR 2024), on the penultimate activations a = z of one sample (D units), logits f = W a + b:

    1. s1 = sum_j a_j; s2 = the sum of the k = D - round(D p / 100) largest activations (at least 1).
    2. r = s1 / s2; a~ = a * exp(r): all activations are scaled, none pruned (the paper's point against ASH-S).
    3. S(x) = log sum_k exp (W a~ + b)_k, the energy score of the scaled activations.

    p = 85 (``percentile``) is the paper's default and OpenOOD's (tuned on validation data there over 65-95). The
    features are the pooled post-ReLU features (the paper also scales after global pooling); SCALE needs them
    non-negative and says so when they are not. An all-zero sample (s2 = 0) keeps its zero activations. Scores the
    closed-set model that ``trainer`` trains (default erm).
    """

    family = "osr"
    protocols = frozenset({"openset"})
    hparams = dict(trainer="erm", percentile=85.0)
    search = dict(percentile=(65.0, 70.0, 75.0, 80.0, 85.0, 90.0, 95.0))  # OpenOOD v1.5's APS grid

    def __init__(self, hparams: dict | None = None) -> None:
        super().__init__(hparams)
        if not 0 <= self.hparams["percentile"] < 100:
            raise HparamError(f"hparam percentile={self.hparams['percentile']!r} for 'scale' must lie in [0, 100)")

    def calibrate(self, model: nn.Module, train, state: State) -> None:
        self.weight, self.bias = linear_head(model, "scale")
        check_nonnegative(train.features, "scale")

    def scaled(self, a: Tensor) -> Tensor:
        """The scaled activations a~ of a batch (N x D)."""
        a = a.double()
        s1 = a.sum(dim=1, keepdim=True)
        s2 = a.topk(kept_count(a.shape[1], self.hparams["percentile"]), dim=1).values.sum(dim=1, keepdim=True)
        # s2 = 0 only for an all-zero sample: any factor leaves it 0, and 1 keeps the score finite
        return a * (s1 / s2.where(s2 > 0, 1.0)).where(s2 > 0, 0.0).exp()

    def score(self, logits: Tensor, features: Tensor | None = None) -> Tensor:
        return (self.scaled(features) @ self.weight.T + self.bias).logsumexp(dim=1)
