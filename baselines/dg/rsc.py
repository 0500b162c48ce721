"""Representation Self-Challenging."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from harness.core.engine import StepEngine
from harness.core.functional import cross_entropy, is_binary
from harness.core.method import Batch, Method, State
from harness.core.registry import register_method
from harness.core.search import Uniform
from harness.errors import HparamError


def true_class_score(logits: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
    """(score, probability) of each sample's labelled class.

    K classes: the logit z_y and softmax_y. Binary scores f: the signed score (2y − 1)·f and σ((2y − 1)·f), which
    is the two-class softmax of logits (0, f) read at the label, up to the shared offset.
    """
    if is_binary(logits):
        signed = (2.0 * y.to(logits.dtype) - 1.0) * logits
        return signed, torch.sigmoid(signed)
    return logits.gather(1, y[:, None]).squeeze(1), logits.softmax(1).gather(1, y[:, None]).squeeze(1)


def rsc_mask(model: nn.Module, features: Tensor, y: Tensor, f_drop: float, b_drop: float) -> Tensor:
    """RSC's 0/1 mask on the features (no gradient flows through it).

    Feature-wise: mute, per sample, the features whose gradient of the labelled class's score is at or above
    that sample's (1 − ``f_drop``) quantile. Batch-wise: apply the muting only to the samples whose
    labelled-class probability drops the most when muted (at or above the batch's (1 − ``b_drop``) quantile of
    the drop); the others keep every feature. Quantiles interpolate linearly, as numpy's percentile.
    """
    feats = features.detach().requires_grad_(True)
    with torch.enable_grad():
        score, p_full = true_class_score(model.classifier(feats), y)
        grad, = torch.autograd.grad(score.sum(), feats)
    with torch.no_grad():
        keep_f = grad < torch.quantile(grad.float(), 1.0 - f_drop, dim=1, keepdim=True)
        _, p_muted = true_class_score(model.classifier(feats * keep_f), y)
        change = (p_full.detach() - p_muted).float()
        keep_b = (change < torch.quantile(change, 1.0 - b_drop))[:, None]
        return (keep_f | keep_b).to(features.dtype)


@register_method("rsc")
class RSC(Method):
    """RSC (Huang et al., "Self-Challenging Improves Cross-Domain Generalization", ECCV 2020), DomainBed's form.

    Each step: (1) g = ∂z_y/∂φ, the gradient of the labelled class's score with respect to the
    ``model.featurizer`` outputs φ; (2) per sample, mute the features at or above the (1 − f)-quantile of g
    (f = ``f_drop_factor``, DomainBed: 1/3); (3) keep that muting only for the fraction b = ``b_drop_factor``
    (DomainBed: 1/3) of samples whose labelled-class probability falls the most under it; (4) minimise
    CE(classifier(φ ⊙ mask), y): the network must predict without its most predictive features. The mask is
    constant; the gradient flows through φ. Binary scores use the signed score (see :func:`true_class_score`).
    """

    family = "dg"
    protocols = frozenset({"supervised"})
    hparams = dict(f_drop_factor=1 / 3, b_drop_factor=1 / 3)
    search_space = dict(f_drop_factor=Uniform(0.0, 0.5), b_drop_factor=Uniform(0.0, 0.5))

    def __init__(self, hparams: dict | None = None) -> None:
        super().__init__(hparams)
        for key in ("f_drop_factor", "b_drop_factor"):
            if not 0.0 <= self.hparams[key] <= 1.0:
                raise HparamError(f"hparam {key}={self.hparams[key]!r} for 'rsc' must lie in [0, 1]")

    def train_step(self, model: nn.Module, batch: Batch, engine: StepEngine, state: State) -> dict:
        features = model.featurizer(batch.x)
        mask = rsc_mask(model, features, batch.y, self.hparams["f_drop_factor"], self.hparams["b_drop_factor"])
        loss = cross_entropy(model.classifier(features * mask), batch.y)
        return {"loss": loss, "muted": (1.0 - mask).mean().detach()}
