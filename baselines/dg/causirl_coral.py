"""Causality-inspired invariant representation learning, with the CORAL distance."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from baselines.dg.coral import coral_distance
from harness.core.engine import StepEngine
from harness.core.functional import cross_entropy, group_means
from harness.core.method import Batch, Method, State
from harness.core.registry import register_method
from harness.core.search import LogUniform
from harness.errors import HparamError


def random_domain_cut(inv: Tensor, num_domains: int, generator: torch.Generator) -> Tensor:
    """Mask of the samples before a random cut in each domain: domain k's first c_k samples (in batch order), with
    c_k uniform on {0, …, n_k − 1}, so every domain keeps at least one sample on the other side."""
    counts = torch.bincount(inv, minlength=num_domains)
    u = torch.rand(num_domains, generator=generator, device=generator.device).to(inv.device)
    cuts = (u * counts).long().clamp_max(counts - 1)  # floor(u n_k) < n_k; the clamp only guards rounding
    rank = F.one_hot(inv, num_domains).cumsum(0).gather(1, inv[:, None]).squeeze(1) - 1  # position in its domain
    return rank < cuts[inv]


@register_method("causirl-coral")
class CausIRLCORAL(Method):
    """CausIRL-CORAL (Chevalley et al., "Invariant Causal Mechanisms through Distribution Matching",
    arXiv:2206.11646, 2022), DomainBed's form.

    Each step, every training domain in the batch is cut at a random point (its first c_e samples, c_e uniform on
    0 … n_e − 1); the pieces before the cuts form one pool P and the rest another Q, two random mixtures of the
    domains. loss = mean_e R_e + γ·d(φ(P), φ(Q)) with φ the ``model.featurizer`` outputs and d the CORAL distance
    (mean and covariance gaps, :func:`~baselines.dg.coral.coral_distance`): features whose distribution does not
    depend on the mixture of domains. The penalty is 0 when a pool holds fewer than two samples, as in
    DomainBed. γ = ``mmd_gamma`` (DomainBed: 1). The cuts are drawn from ``state.generator``.
    """

    family = "dg"
    protocols = frozenset({"supervised"})
    needs_domains = True
    hparams = dict(mmd_gamma=1.0)
    search_space = dict(mmd_gamma=LogUniform(1e-1, 1e1))

    def __init__(self, hparams: dict | None = None) -> None:
        super().__init__(hparams)
        if self.hparams["mmd_gamma"] < 0:
            raise HparamError(f"hparam mmd_gamma={self.hparams['mmd_gamma']!r} for {self.name!r} must be >= 0")

    def distance(self, a: Tensor, b: Tensor) -> Tensor:
        wide = torch.promote_types(a.dtype, torch.float32)  # covariances in at least fp32 under autocast
        return coral_distance(a.to(wide), b.to(wide))

    def train_step(self, model: nn.Module, batch: Batch, engine: StepEngine, state: State) -> dict:
        features = model.featurizer(batch.x)
        logits = model.classifier(features)
        ids, inv = torch.unique(batch.domain, return_inverse=True)
        risks, _ = group_means(cross_entropy(logits, batch.y, reduction="none"), inv, len(ids))
        nll = risks.mean()
        first = random_domain_cut(inv, len(ids), state.generator)
        pool_p, pool_q = features[first], features[~first]
        if len(pool_p) > 1 and len(pool_q) > 1:
            penalty = torch.nan_to_num(self.distance(pool_p, pool_q))
        else:
            penalty = nll.new_zeros(())
        loss = nll + self.hparams["mmd_gamma"] * penalty
        return {"loss": loss, "nll": nll.detach(), "penalty": penalty.detach()}
