"""AND-mask: keep only the gradient components whose sign every training domain agrees on."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from baselines.dg.sam import trainable
from harness.core.engine import StepEngine
from harness.core.functional import cross_entropy
from harness.core.method import Batch, Method, State
from harness.core.registry import register_method
from harness.core.search import Uniform
from harness.errors import HparamError


def gradient_as_loss(params: Sequence[Tensor], grads: Sequence[Tensor | None]) -> Tensor:
    """Σ_p ⟨p, g_p⟩ with g held fixed: a loss whose gradient is exactly ``grads``.

    ``engine.backward`` of it puts ``grads`` into ``.grad`` through the engine (scaled under fp16 like any loss),
    so a method that builds its update direction itself never writes ``.grad`` by hand.
    """
    terms = [(p * g.detach().to(p.dtype)).sum() for p, g in zip(params, grads) if g is not None]
    return torch.stack(terms).sum()


def and_mask(domain_grads: Tensor, tau: float) -> Tensor:
    """The AND-masked mean of one parameter's per-domain gradients (shape (E, *param)).

    A component is kept where |mean_e sign(g_e)| ≥ τ (τ = 1: every domain's gradient has the same, non-zero sign);
    the masked mean is rescaled by 1 / (fraction kept), per parameter tensor, so the step size does not shrink
    with the mask.
    """
    mask = (torch.sign(domain_grads).mean(0).abs() >= tau).to(domain_grads.dtype)
    kept = mask.sum() / mask.numel()
    return mask * domain_grads.mean(0) / (kept + 1e-10)


@register_method("andmask")
class ANDMask(Method):
    """AND-mask (Parascandolo et al., "Learning Explanations that are Hard to Vary", ICLR 2021), DomainBed's form.

    Per step: the gradient g_e = ∇_θ R_e of each training domain's risk in the batch; for every parameter
    tensor, the update direction is the mean over domains of g_e masked to the components where the domains'
    signs agree (:func:`and_mask`, agreement threshold τ = ``tau``, DomainBed: 1), rescaled by the inverse of
    the fraction kept. The masked direction goes to the run's optimiser through the step engine. All domains
    pass the network in one forward (DomainBed runs one per domain); a lone domain in the batch is plain ERM
    with the mask's rescaling. ``loss`` is the mean of the domain risks.
    """

    family = "dg"
    protocols = frozenset({"supervised"})
    needs_domains = True
    hparams = dict(tau=1.0)
    search_space = dict(tau=Uniform(0.5, 1.0))

    def __init__(self, hparams: dict | None = None) -> None:
        super().__init__(hparams)
        if not 0.0 <= self.hparams["tau"] <= 1.0:
            raise HparamError(f"hparam tau={self.hparams['tau']!r} for 'andmask' must lie in [0, 1]")

    def train_step(self, model: nn.Module, batch: Batch, engine: StepEngine, state: State) -> dict:
        params = trainable(model)
        logits = model(batch.x)
        ids, inv = torch.unique(batch.domain, return_inverse=True)
        risks = [cross_entropy(logits[inv == k], batch.y[inv == k]) for k in range(len(ids))]
        per_domain = [engine.grad(risk, params, retain_graph=k < len(risks) - 1, allow_unused=True)
                      for k, risk in enumerate(risks)]
        masked: list[Tensor | None] = []
        for grads in zip(*per_domain):  # one parameter's gradients, one per domain
            present = [g for g in grads if g is not None]
            masked.append(and_mask(torch.stack(present), self.hparams["tau"]) if present else None)
        engine.backward(gradient_as_loss(params, masked))
        return {"loss": torch.stack(risks).mean().detach()}
