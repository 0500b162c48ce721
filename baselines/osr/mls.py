"""Maximum logit score: the open-set score the "good closed-set classifier" paper recommends."""

from __future__ import annotations

from torch import Tensor

from harness.core.method import Method
from harness.core.registry import register_method


@register_method("mls")
class MLS(Method):
    """MLS (Vaze et al., "Open-Set Recognition: a Good Closed-Set Classifier is All You Need?", ICLR 2022; also
    Hendrycks et al., "Scaling Out-of-Distribution Detection for Real-World Settings", ICML 2022):
    S(x) = max_k f_k(x), the logit before the softmax, which keeps the feature norm that the softmax divides out.

    Scores the closed-set model that ``trainer`` trains (default erm).
    """

    family = "osr"
    protocols = frozenset({"openset"})
    hparams = dict(trainer="erm")

    def score(self, logits: Tensor, features: Tensor | None = None) -> Tensor:
        return logits.max(dim=1).values
