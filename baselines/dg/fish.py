"""Fish: gradient matching across training domains through a sequential inner loop."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from baselines.dg.andmask import gradient_as_loss
from baselines.dg.mldg import optimizer_like
from baselines.dg.sam import restore, trainable
from harness.core.engine import StepEngine
from harness.core.functional import cross_entropy
from harness.core.method import Batch, Method, State
from harness.core.registry import register_method
from harness.core.search import Choice
from harness.errors import HparamError


@register_method("fish")
class Fish(Method):
    """Fish (Shi et al., "Gradient Matching for Domain Generalization", ICLR 2022, Algorithm 2), DomainBed's form.

    Each step: θ̃ ← θ; for every training domain e in the batch in turn (DomainBed's fixed domain order),
    θ̃ ← θ̃ after one step of an inner optimiser on R_e(θ̃); then θ ← θ + ε(θ̃ − θ). To first order this
    follows the mean domain gradient plus a term that raises the inner product of the domains' gradients.
    The inner optimiser is of the run's kind at the run's current learning rate and, as DomainBed's inner Adam,
    keeps its state (moments) across steps, on ``state``. ε = ``meta_lr`` (DomainBed: 0.5).

    The harness's engine owns the update, so the meta step reaches θ as the gradient ε(θ − θ̃)/lr handed to the
    run's optimiser: exactly DomainBed's θ + ε(θ̃ − θ) under plain SGD; under Adam (DomainBed's outer update
    bypasses its optimiser) the same direction, normalised by the optimiser's moments. ``loss`` is the mean of
    the domain risks met along the inner loop; a lone domain in the batch is one inner step.
    """

    family = "dg"
    protocols = frozenset({"supervised"})
    needs_domains = True
    hparams = dict(meta_lr=0.5)
    search_space = dict(meta_lr=Choice((0.05, 0.1, 0.5)))

    def __init__(self, hparams: dict | None = None) -> None:
        super().__init__(hparams)
        if not self.hparams["meta_lr"] > 0:
            raise HparamError(f"hparam meta_lr={self.hparams['meta_lr']!r} for 'fish' must be > 0")

    def setup(self, task: Any, state: State) -> None:
        state.fish_inner = None  # the inner optimiser, made on the first step (it needs the parameters)

    def train_step(self, model: nn.Module, batch: Batch, engine: StepEngine, state: State) -> dict:
        params = trainable(model)
        inner = getattr(state, "fish_inner", None) or optimizer_like(engine.optimizer, params)
        state.fish_inner = inner
        theta_tilde = inner.param_groups[0]["params"]
        lr = engine.lr
        for group in inner.param_groups:
            group["lr"] = lr  # follow the run's schedule
        saved = [p.detach().clone() for p in params]
        with torch.no_grad():
            for t, p in zip(theta_tilde, params):
                t.copy_(p)
        ids, inv = torch.unique(batch.domain, return_inverse=True)
        risks = []
        for k in range(len(ids)):
            with torch.no_grad():  # the model evaluates at θ̃
                for p, t in zip(params, theta_tilde):
                    p.copy_(t)
            risk = cross_entropy(model(batch.x[inv == k]), batch.y[inv == k])
            for t, g in zip(theta_tilde, engine.grad(risk, params, allow_unused=True)):
                t.grad = g
            inner.step()  # not the model's weights: θ̃, a copy (the model moves below, by the engine)
            risks.append(risk.detach())
        restore(params, saved)
        scale = self.hparams["meta_lr"] / lr if lr > 0 else 0.0
        engine.backward(gradient_as_loss(params, [scale * (p.detach() - t) for p, t in zip(params, theta_tilde)]))
        return {"loss": torch.stack(risks).mean()}
