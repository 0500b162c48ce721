"""Inter-domain Mixup."""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor, nn

from harness.core.engine import StepEngine
from harness.core.functional import cross_entropy
from harness.core.method import Batch, Method, State
from harness.core.registry import register_method
from harness.core.search import LogUniform


def mix(x_i: Tensor, x_j: Tensor, lam: float) -> Tensor:
    return lam * x_i + (1 - lam) * x_j


@register_method("mixup")
class Mixup(Method):
    """Inter-domain Mixup (Xu et al., AAAI 2020; Yan et al., arXiv:2001.00677, 2020), as in DomainBed.

    The present training domains are put in a random cycle; each domain is mixed
    with the next (truncated to the shorter of the two) with its own
    λ ~ Beta(α, α), and the loss is λ·CE(f(x_mix), y_i) + (1−λ)·CE(f(x_mix), y_j),
    averaged over the pairs. A lone domain pairs with itself, i.e. plain ERM.
    """

    family = "dg"
    protocols = frozenset({"supervised"})
    needs_domains = True
    hparams = dict(alpha=0.2)
    search_space = dict(alpha=LogUniform(1e-1, 1e1))

    def draw_pairs(self, batch: Batch, state: State) -> list[tuple[Tensor, Tensor, float]]:
        """(indices of domain i, indices of domain j, λ) for each pair, from ``state.generator`` only."""
        ids, inv = torch.unique(batch.domain, return_inverse=True)
        members = [(inv == k).nonzero().squeeze(1) for k in range(len(ids))]
        gen = state.generator
        order = torch.randperm(len(members), generator=gen, device=gen.device).tolist()
        # torch has no generator-aware Beta sampler: seed numpy's from the run's generator
        seed = int(torch.randint(2**62, (1,), generator=gen, device=gen.device))
        alpha = self.hparams["alpha"]
        lams = np.random.default_rng(seed).beta(alpha, alpha, size=len(order))
        pairs = []
        for n, i in enumerate(order):
            a, b = members[i], members[order[(n + 1) % len(order)]]
            m = min(len(a), len(b))
            pairs.append((a[:m], b[:m], float(lams[n])))
        return pairs

    def objective(self, model: nn.Module, batch: Batch, pairs: list[tuple[Tensor, Tensor, float]]) -> Tensor:
        # one forward over all mixed pairs, sliced back per pair
        out = model(torch.cat([mix(batch.x[i], batch.x[j], lam) for i, j, lam in pairs]))
        total, start = out.new_zeros(()), 0
        for i, j, lam in pairs:
            o = out[start:start + len(i)]
            start += len(i)
            total = total + lam * cross_entropy(o, batch.y[i]) + (1 - lam) * cross_entropy(o, batch.y[j])
        return total / len(pairs)

    def train_step(self, model: nn.Module, batch: Batch, engine: StepEngine, state: State) -> dict:
        pairs = self.draw_pairs(batch, state)
        loss = self.objective(model, batch, pairs)
        return {"loss": loss}
