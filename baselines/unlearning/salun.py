"""SalUn: random labelling restricted to the weights most salient for the forget set."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from baselines.unlearning.random_label import relabel_loss
from harness.core.functional import cross_entropy, top_fraction_mask
from harness.core.method import Method, State
from harness.core.registry import register_method


def saliency_mask(model: nn.Module, forget, keep: float) -> list[Tensor]:
    """Masks (one per parameter) keeping exactly ``round(keep * n)`` of all n weights: those of largest
    |∇_θ CE(forget)|, the gradient of the mean forget loss at the original weights, ranked over the whole model."""
    params = [p for p in model.parameters() if p.requires_grad]
    was_training = model.training
    model.eval()  # no batch-norm statistics move while measuring
    n = len(forget)
    total = [torch.zeros_like(p) for p in params]
    for b in forget.batches(shuffle=False):
        grads = torch.autograd.grad(cross_entropy(model(b.x), b.y) * (len(b) / n), params, allow_unused=True)
        for t, g in zip(total, grads):
            if g is not None:
                t.add_(g)
    model.train(was_training)
    return top_fraction_mask([t.abs() for t in total], keep)


@register_method("salun")
class SalUn(Method):
    """SalUn (Fan et al., "SalUn: Empowering Machine Unlearning via Gradient-based Weight Saliency", ICLR 2024).

    1. Weight saliency: m = 1[|∇_θ ℓ_f(θ_o)| in the top ``keep`` fraction] (SalUn's 50% by default).
    2. Random labelling (as ``random-label``) on forget and retain data, updating only the salient weights:
       θ ← θ - η (m ⊙ ∇ℓ). Gradients are masked before the step, so with the cases' weight decay of 0 the other
       weights stay exactly at the original's.
    """

    family = "unlearning"
    protocols = frozenset({"unlearn"})
    hparams = dict(keep=0.5, lr_factor=0.3)  # lr_factor: lowest mean gap, docs/tuning/unlearning__*__smoke__salun.json

    def unlearn(self, model: nn.Module, forget, retain, state: State) -> nn.Module:
        params = [p for p in model.parameters() if p.requires_grad]
        masks = [m.view_as(p).to(p.dtype) for m, p in zip(saliency_mask(model, forget, self.hparams["keep"]), params)]

        engine = state.engine(params, self.hparams["lr_factor"])

        def masked_step(pair) -> Tensor:
            loss = relabel_loss(model, *pair, state)
            engine.backward(loss)
            for p, m in zip(params, masks):  # the update touches the salient weights only
                if p.grad is not None:
                    p.grad.mul_(m)
            return loss

        state.optimize(model, engine, masked_step, zip(forget.forever(), retain.forever()))
        return model
