"""Sharpness-Aware Minimization, plus the weight-perturbation helpers UDIM reuses."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from harness.core.engine import StepEngine
from harness.core.functional import cross_entropy
from harness.core.method import Batch, Method, State
from harness.core.registry import register_method
from harness.core.search import Choice


def trainable(model: nn.Module) -> list[nn.Parameter]:
    return [p for p in model.parameters() if p.requires_grad]


@torch.no_grad()
def ascend(params: Sequence[nn.Parameter], grads: Sequence[Tensor | None], rho: float) -> list[Tensor]:
    """Move ``params`` in place to θ + ρ·g/‖g‖ (global L2 norm); return θ for :func:`restore`."""
    norm = torch.linalg.vector_norm(torch.stack([g.norm() for g in grads if g is not None]))
    scale = rho / (norm + 1e-12)
    saved = [p.detach().clone() for p in params]
    for p, g in zip(params, grads):
        if g is not None:  # a parameter the loss does not reach stays put
            p.add_(g * scale)
    return saved


@torch.no_grad()
def restore(params: Sequence[nn.Parameter], saved: Sequence[Tensor]) -> None:
    # copy back rather than subtract ε: θ + ε − ε is not bitwise θ in floating point
    for p, s in zip(params, saved):
        p.copy_(s)


def sam_step(model: nn.Module, x: Tensor, y: Tensor, engine: StepEngine, rho: float) -> dict:
    """One SAM update: gradient at θ + ε(θ), applied at θ by the engine."""
    params = trainable(model)
    loss = cross_entropy(model(x), y)
    grads = engine.grad(loss, params, allow_unused=True)
    saved = ascend(params, grads, rho)
    loss_perturbed = cross_entropy(model(x), y)
    engine.backward(loss_perturbed)
    restore(params, saved)
    return {"loss": loss.detach(), "loss_perturbed": loss_perturbed.detach()}


@register_method("sam")
class SAM(Method):
    """SAM (Foret et al., "Sharpness-Aware Minimization for Efficiently Improving Generalization", ICLR 2021).

    min_θ max_{‖ε‖≤ρ} L(θ+ε), with the first-order maximiser ε = ρ·∇L/‖∇L‖.
    Two forward/backward passes per step. ``loss`` is logged at θ.
    """

    family = "dg"
    protocols = frozenset({"supervised"})
    hparams = dict(rho=0.05)
    search_space = dict(rho=Choice((0.01, 0.02, 0.05, 0.1, 0.2, 0.5)))

    def train_step(self, model: nn.Module, batch: Batch, engine: StepEngine, state: State) -> dict:
        return sam_step(model, batch.x, batch.y, engine, self.hparams["rho"])
