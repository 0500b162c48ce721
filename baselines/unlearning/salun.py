"""SalUn: random labelling restricted to the weights most salient for the forget set."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from baselines.unlearning.random_label import relabel_loss
from harness.method import Method, State, cross_entropy
from harness.protocols.unlearn import optimize
from harness.registry import register_method


def saliency_mask(model: nn.Module, forget, keep: float) -> list[Tensor]:
    """Masks (one per parameter) keeping exactly ``round(keep * n)`` of all n weights: those of largest
    |∇_θ CE(forget)|, the gradient of the mean forget loss at the original weights, ranked over the whole model."""
    params = [p for p in model.parameters() if p.requires_grad]
    model.eval()  # no batch-norm statistics move while measuring
    model.zero_grad(set_to_none=True)
    n = len(forget)
    for b in forget.batches(shuffle=False):
        (cross_entropy(model(b.x), b.y) * (len(b) / n)).backward()
    flat = torch.cat([(p.grad if p.grad is not None else torch.zeros_like(p)).abs().flatten() for p in params])
    model.zero_grad(set_to_none=True)
    chosen = torch.zeros_like(flat, dtype=torch.bool)
    chosen[torch.topk(flat, round(keep * flat.numel()), sorted=False).indices] = True  # exact count, ties arbitrary
    return list(torch.split(chosen, [p.numel() for p in params]))


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
    hparams = dict(keep=0.5, lr_factor=0.3)

    def unlearn(self, model: nn.Module, forget, retain, state: State) -> nn.Module:
        params = [p for p in model.parameters() if p.requires_grad]
        masks = [m.view_as(p).to(p.dtype) for m, p in zip(saliency_mask(model, forget, self.hparams["keep"]), params)]

        def mask_grads() -> None:
            for p, m in zip(params, masks):
                if p.grad is not None:
                    p.grad.mul_(m)

        optimize(model, lambda pair: relabel_loss(model, *pair, state), zip(forget.forever(), retain.forever()), state,
                 state.total_steps, state.optimizer(params, self.hparams["lr_factor"]), after_backward=mask_grads)
        return model
