"""Pure tensor helpers shared by method files.

Methods import from here, never from ``harness.protocols``: nothing in this module owns a loop, an optimizer
step, data movement or timing.
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import Tensor, nn

# --- unlearning ---


def frozen_copy(model: nn.Module) -> nn.Module:
    """A frozen copy in eval mode: the teacher of SCRUB and LAF."""
    return copy.deepcopy(model).eval().requires_grad_(False)


def distill_kl(student: Tensor, teacher: Tensor, temperature: float) -> Tensor:
    """KL(softmax(t/T) || softmax(s/T)) T², batch mean (Hinton's distillation term)."""
    log_s = F.log_softmax(student / temperature, dim=1)
    log_t = F.log_softmax(teacher / temperature, dim=1)
    return F.kl_div(log_s, log_t, log_target=True, reduction="batchmean") * temperature**2


def wrong_labels(y: Tensor, num_classes: int, generator: torch.Generator) -> Tensor:
    """A uniformly drawn label other than the true one, per sample."""
    shift = torch.randint(1, num_classes, y.shape, generator=generator, device=y.device)
    return (y + shift) % num_classes


def l1_norm(params: list[Tensor]) -> Tensor:
    """‖θ‖₁ over a list of tensors."""
    return torch.stack([p.abs().sum() for p in params]).sum()


def top_fraction_mask(scores: list[Tensor], keep: float) -> list[Tensor]:
    """Boolean masks (shaped like ``scores``) keeping exactly ``round(keep * n)`` of all n entries: the largest,
    ranked over all tensors together (ties broken arbitrarily)."""
    flat = torch.cat([s.flatten() for s in scores])
    chosen = torch.zeros_like(flat, dtype=torch.bool)
    chosen[torch.topk(flat, round(keep * flat.numel()), sorted=False).indices] = True
    return [m.view_as(s) for m, s in zip(torch.split(chosen, [s.numel() for s in scores]), scores)]
