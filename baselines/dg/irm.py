"""Invariant Risk Minimization (IRMv1)."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from harness.core.engine import StepEngine
from harness.core.functional import annealed_penalty_weight, cross_entropy
from harness.core.method import Batch, Method, State
from harness.core.registry import register_method
from harness.core.search import LogUniform


def irm_penalty(logits: Tensor, y: Tensor) -> Tensor:
    """Unbiased IRMv1 penalty of one domain: ∇_w R(w·f) at w = 1 on the even half times that on the odd half.

    The product of two independent half-batch estimates is unbiased for ‖∇_w R‖²
    (so it can be slightly negative on a batch); DomainBed uses the same split.
    """
    scale = torch.ones((), dtype=logits.dtype, device=logits.device, requires_grad=True)
    grad_even, = torch.autograd.grad(cross_entropy(logits[0::2] * scale, y[0::2]), scale, create_graph=True)
    grad_odd, = torch.autograd.grad(cross_entropy(logits[1::2] * scale, y[1::2]), scale, create_graph=True)
    return grad_even * grad_odd


@register_method("irm")
class IRM(Method):
    """IRMv1 (Arjovsky et al., "Invariant Risk Minimization", 2019), DomainBed's form.

    loss = mean_e R_e + λ·mean_e penalty_e. λ is 1 for the first ``anneal_frac``
    of the steps and ``lam`` after (DomainBed: 500 of 5000 steps, λ = 100).
    With ``reset_optimizer`` the optimizer's state is cleared when λ jumps, as
    DomainBed rebuilds Adam. A domain with fewer than two samples in the batch
    adds its risk but no penalty (it cannot be split).
    """

    family = "dg"
    protocols = frozenset({"supervised"})
    needs_domains = True
    hparams = dict(lam=100.0, anneal_frac=0.1, reset_optimizer=True)
    search_space = dict(lam=LogUniform(1e-1, 1e5), anneal_frac=LogUniform(2e-4, 1.0))

    def train_step(self, model: nn.Module, batch: Batch, engine: StepEngine, state: State) -> dict:
        h = self.hparams
        weight = annealed_penalty_weight(state, engine, h["lam"], h["anneal_frac"], h["reset_optimizer"])
        logits = model(batch.x)
        ids, inv = torch.unique(batch.domain, return_inverse=True)
        risks, penalties = [], []
        for k in range(len(ids)):  # a handful of domains, as DomainBed's loop over minibatches
            idx = (inv == k).nonzero().squeeze(1)
            risks.append(cross_entropy(logits[idx], batch.y[idx]))
            if len(idx) >= 2:
                penalties.append(irm_penalty(logits[idx], batch.y[idx]))
        nll = torch.stack(risks).mean()
        penalty = torch.stack(penalties).mean() if penalties else logits.new_zeros(())
        loss = nll + weight * penalty
        return {"loss": loss, "nll": nll.detach(), "penalty": penalty.detach(),
                "penalty_weight": torch.tensor(weight)}
