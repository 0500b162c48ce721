"""Spectral decoupling."""

from __future__ import annotations

from torch import Tensor, nn

from harness.core.engine import StepEngine
from harness.core.functional import cross_entropy
from harness.core.method import Batch, Method, State
from harness.core.registry import register_method
from harness.core.search import LogUniform
from harness.errors import HparamError


def logit_penalty(logits: Tensor) -> Tensor:
    """Mean squared logit over the batch (and classes): SD's replacement for weight decay on the outputs."""
    return logits.float().pow(2).mean()


@register_method("sd")
class SD(Method):
    """Spectral decoupling (Pezeshki et al., "Gradient Starvation: A Learning Proclivity in Neural Networks",
    NeurIPS 2021, eq. 25), DomainBed's form.

    loss = CE(f(x), y) + λ·mean(f(x)²) over the pooled batch: an L2 penalty on the logits (not on the weights)
    that decouples the features' learning dynamics, so a dominant feature cannot starve the others of gradient.
    Binary scores are penalised as one logit each. λ = ``sd_reg`` (DomainBed: 0.1).
    """

    family = "dg"
    protocols = frozenset({"supervised"})
    hparams = dict(sd_reg=0.1)
    search_space = dict(sd_reg=LogUniform(1e-5, 1e-1))

    def __init__(self, hparams: dict | None = None) -> None:
        super().__init__(hparams)
        if self.hparams["sd_reg"] < 0:
            raise HparamError(f"hparam sd_reg={self.hparams['sd_reg']!r} for 'sd' must be >= 0")

    def train_step(self, model: nn.Module, batch: Batch, engine: StepEngine, state: State) -> dict:
        logits = model(batch.x)
        nll = cross_entropy(logits, batch.y)
        penalty = logit_penalty(logits)
        loss = nll + self.hparams["sd_reg"] * penalty
        return {"loss": loss, "nll": nll.detach(), "penalty": penalty.detach()}
