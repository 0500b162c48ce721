"""Deep CORAL."""

from __future__ import annotations

from itertools import combinations

import torch
from torch import Tensor, nn

from harness.core.engine import StepEngine
from harness.core.functional import cross_entropy, group_means
from harness.core.method import Batch, Method, State
from harness.core.registry import register_method
from harness.core.search import LogUniform


def coral_distance(a: Tensor, b: Tensor) -> Tensor:
    """Mean squared difference of feature means plus that of (unbiased) feature covariances."""
    mean_gap = (a.mean(0) - b.mean(0)).pow(2).mean()
    cov_gap = (torch.cov(a.T) - torch.cov(b.T)).pow(2).mean()
    return mean_gap + cov_gap


@register_method("coral")
class CORAL(Method):
    """Deep CORAL (Sun & Saenko, "Deep CORAL: Correlation Alignment for Deep Domain Adaptation", ECCV-W 2016).

    DomainBed's multi-domain form: mean of the per-domain risks plus
    γ × the mean over pairs of training domains of :func:`coral_distance` on
    ``model.featurizer`` outputs. A domain with fewer than two samples in the
    batch has no covariance and is left out of the pairs.
    """

    family = "dg"
    protocols = frozenset({"supervised"})
    needs_domains = True
    hparams = dict(mmd_gamma=1.0)
    search_space = dict(mmd_gamma=LogUniform(1e-1, 1e1))

    def train_step(self, model: nn.Module, batch: Batch, engine: StepEngine, state: State) -> dict:
        features = model.featurizer(batch.x)
        logits = model.classifier(features)
        ids, inv = torch.unique(batch.domain, return_inverse=True)
        risks, _ = group_means(cross_entropy(logits, batch.y, reduction="none"), inv, len(ids))
        nll = risks.mean()
        members = [features[inv == k] for k in range(len(ids))]
        gaps = [coral_distance(a, b) for a, b in combinations([m for m in members if len(m) >= 2], 2)]
        penalty = torch.stack(gaps).mean() if gaps else nll.new_zeros(())
        loss = nll + self.hparams["mmd_gamma"] * penalty
        return {"loss": loss, "nll": nll.detach(), "penalty": penalty.detach()}
