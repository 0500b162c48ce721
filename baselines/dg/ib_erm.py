"""Information-bottleneck ERM."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from harness.core.engine import StepEngine
from harness.core.functional import cross_entropy
from harness.core.method import Batch, Method, State
from harness.core.registry import register_method
from harness.core.search import LogUniform
from harness.errors import HparamError


def feature_variance(features: Tensor) -> Tensor:
    """Mean over feature dimensions of their (unbiased) variance across the samples: the IB penalty's proxy for
    the entropy of the representation."""
    return features.float().var(dim=0).mean()


@register_method("ib-erm")
class IBERM(Method):
    """IB-ERM (Ahuja et al., "Invariance Principle Meets Information Bottleneck for Out-of-Distribution
    Generalization", NeurIPS 2021), DomainBed's form.

    loss = mean_e R_e + λ·mean_e Var(φ_e), with Var(φ_e) the mean per-dimension variance of the
    ``model.featurizer`` outputs of domain e's samples in the batch (:func:`feature_variance`). λ = 0 for the
    first ``anneal_frac`` of the steps and ``lam`` after (DomainBed: 500 of 5000 steps, λ = 100); with
    ``reset_optimizer`` the optimiser's state is cleared when λ jumps, as DomainBed rebuilds Adam. A domain with
    fewer than two samples in the batch adds its risk but no penalty (it has no variance).
    """

    family = "dg"
    protocols = frozenset({"supervised"})
    needs_domains = True
    hparams = dict(lam=100.0, anneal_frac=0.1, reset_optimizer=True)
    search_space = dict(lam=LogUniform(1e-1, 1e5), anneal_frac=LogUniform(2e-4, 1.0))

    def __init__(self, hparams: dict | None = None) -> None:
        super().__init__(hparams)
        if self.hparams["lam"] < 0:
            raise HparamError(f"hparam lam={self.hparams['lam']!r} for 'ib-erm' must be >= 0")
        if not 0.0 <= self.hparams["anneal_frac"] <= 1.0:
            raise HparamError(f"hparam anneal_frac={self.hparams['anneal_frac']!r} for 'ib-erm' must lie in [0, 1]")

    def train_step(self, model: nn.Module, batch: Batch, engine: StepEngine, state: State) -> dict:
        h = self.hparams
        anneal = int(h["anneal_frac"] * state.total_steps)
        if state.step == anneal and h["reset_optimizer"]:
            engine.reset_optimizer_state()
        weight = h["lam"] if state.step >= anneal else 0.0
        features = model.featurizer(batch.x)
        logits = model.classifier(features)
        ids, inv = torch.unique(batch.domain, return_inverse=True)
        risks, penalties = [], []
        for k in range(len(ids)):
            idx = (inv == k).nonzero().squeeze(1)
            risks.append(cross_entropy(logits[idx], batch.y[idx]))
            if len(idx) >= 2:
                penalties.append(feature_variance(features[idx]))
        nll = torch.stack(risks).mean()
        penalty = torch.stack(penalties).mean() if penalties else nll.new_zeros(())
        loss = nll + weight * penalty
        return {"loss": loss, "nll": nll.detach(), "penalty": penalty.detach(),
                "penalty_weight": torch.tensor(weight)}
