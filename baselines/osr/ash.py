"""ASH: activation shaping, pruning all but the largest penultimate activations of each sample."""

from __future__ import annotations

from torch import Tensor, nn

from baselines.osr._head import check_nonnegative, kept_count, linear_head
from harness.core.method import Method, State
from harness.core.registry import register_method
from harness.errors import HparamError

VARIANTS = ("s", "b", "p")


@register_method("ash")
class ASH(Method):
    """ASH (Djurisic, Bozanic, Ashok & Liu, "Extremely Simple Activation Shaping for Out-of-Distribution Detection",
    ICLR 2023), on the penultimate activations a = z of one sample (D units), with logits f = W a + b:

    1. s1 = sum_j a_j.
    2. Prune: keep the k = D - round(D p / 100) largest activations (at least 1), set the others to 0.
    3. Shape the kept ones: ASH-P leaves them; ASH-B sets each to s1 / k (binarised, the sum kept);
       ASH-S multiplies them by exp(s1 / s2), with s2 the sum of the kept activations.
    4. S(x) = log sum_k exp (W a~ + b)_k, the energy score of the shaped activations.

    Defaults: ASH-S (``variant`` "s") at p = 90 (``percentile``), the paper's ImageNet ResNet-50 setting for ASH-S.
    OpenOOD v1.5's "ASH" row is ASH-B at p = 90 (its config), tuned on validation data over 65-95; ``variant="b"``
    gives it. The features here are the pooled post-ReLU features as the model gives them (the reference code also
    shapes after global pooling); ASH needs them non-negative and says so when they are not. An all-zero sample
    (s2 = 0) keeps its zero activations. Scores the closed-set model that ``trainer`` trains (default erm).
    """

    family = "osr"
    protocols = frozenset({"openset"})
    hparams = dict(trainer="erm", percentile=90.0, variant="s")
    search = dict(percentile=(65.0, 70.0, 75.0, 80.0, 85.0, 90.0, 95.0))  # OpenOOD v1.5's APS grid

    def __init__(self, hparams: dict | None = None) -> None:
        super().__init__(hparams)
        if not 0 <= self.hparams["percentile"] < 100:
            raise HparamError(f"hparam percentile={self.hparams['percentile']!r} for 'ash' must lie in [0, 100)")
        if self.hparams["variant"] not in VARIANTS:
            raise HparamError(f"hparam variant={self.hparams['variant']!r} for 'ash' must be one of {VARIANTS}")

    def calibrate(self, model: nn.Module, train, state: State) -> None:
        self.weight, self.bias = linear_head(model, "ash")
        check_nonnegative(train.features, "ash")

    def shape(self, a: Tensor) -> Tensor:
        """The shaped activations a~ of a batch (N x D)."""
        a = a.double()
        k = kept_count(a.shape[1], self.hparams["percentile"])
        values, index = a.topk(k, dim=1)
        s1 = a.sum(dim=1, keepdim=True)
        if self.hparams["variant"] == "b":
            values = (s1 / k).expand_as(values)
        elif self.hparams["variant"] == "s":
            s2 = values.sum(dim=1, keepdim=True)
            # s2 = 0 only when the kept activations (the largest) are all 0: nothing to scale, so a factor of 1
            values = values * (s1 / s2.where(s2 > 0, 1.0)).where(s2 > 0, 0.0).exp()
        return a.new_zeros(a.shape).scatter(1, index, values)

    def score(self, logits: Tensor, features: Tensor | None = None) -> Tensor:
        return (self.shape(features) @ self.weight.T + self.bias).logsumexp(dim=1)
