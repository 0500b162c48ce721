"""GradNorm: the L1 norm of the last layer's weight gradient of the KL divergence to the uniform distribution."""

from __future__ import annotations

from torch import Tensor, nn

from harness.core.method import Method, State
from harness.core.registry import register_method
from harness.errors import HarnessError, HparamError


@register_method("gradnorm")
class GradNorm(Method):
    """GradNorm (Huang, Geng & Li, "On the Importance of Gradients for Detecting Distributional Shifts in the Wild",
    NeurIPS 2021), with classifier logits f = W z + b on penultimate features z and K classes:

    1. D_KL(u || softmax(f / T)) = -(1/K) sum_k log softmax(f / T)_k - log K, with u the uniform distribution.
    2. S(x) = || d D_KL / d W ||_1, the entrywise L1 norm of its gradient with respect to the last layer's weights:
       in-distribution inputs pull harder away from uniform.

    The gradient is d D_KL / d W = (1/T) (p - u) z^T with p = softmax(f / T), an outer product, so its L1 norm is
    (1/T) ||p - u||_1 ||z||_1: the paper's own decomposition S = U V into a feature term and an output term, and
    what the reference code's per-sample backward pass computes (up to a factor K: its target is all ones). It is
    computed in that closed form from the cached logits and features, so it needs no second pass over the inputs and
    no autograd (the tests check it against autograd). T = 1 (``temperature``), the paper's choice. Needs
    model.classifier to be the linear last layer. Scores the closed-set model that ``trainer`` trains (default erm).
    """

    family = "osr"
    protocols = frozenset({"openset"})
    hparams = dict(trainer="erm", temperature=1.0)

    def __init__(self, hparams: dict | None = None) -> None:
        super().__init__(hparams)
        if self.hparams["temperature"] <= 0:
            raise HparamError(f"hparam temperature={self.hparams['temperature']!r} for 'gradnorm' must be > 0")

    def calibrate(self, model: nn.Module, train, state: State) -> None:
        # nothing to fit; the closed form holds only when the features feed one linear layer
        if not isinstance(getattr(model, "classifier", None), nn.Linear):
            raise HarnessError("gradnorm needs a linear classifier head (model.classifier is an nn.Linear)")

    def score(self, logits: Tensor, features: Tensor | None = None) -> Tensor:
        t = self.hparams["temperature"]
        p = (logits.double() / t).softmax(dim=1)
        return (p - 1.0 / p.shape[1]).abs().sum(dim=1) * features.double().abs().sum(dim=1) / t
