"""What the post-hoc scores that re-run or read the last layer share: the linear head's weights, and the per-sample
top-k count of the activation-shaping scores (ASH, SCALE). Not a method file (the leading underscore keeps the
registry from scanning it)."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from harness.errors import HarnessError


def linear_head(model: nn.Module, name: str) -> tuple[Tensor, Tensor]:
    """``(W, b)`` of ``model.classifier`` in float64 on the CPU, so logits = z @ W.T + b on the cached features."""
    head = getattr(model, "classifier", None)
    if not isinstance(head, nn.Linear):
        raise HarnessError(f"{name} needs a linear classifier head (model.classifier is an nn.Linear), "
                           f"got {type(head).__name__}")
    w = head.weight.detach().double().cpu()
    b = torch.zeros(len(w), dtype=torch.float64) if head.bias is None else head.bias.detach().double().cpu()
    return w, b


def check_nonnegative(features: Tensor, name: str) -> None:
    """Activation shaping sums and ranks post-ReLU activations; negative features would make its ratio meaningless."""
    if bool((features < 0).any()):
        raise HarnessError(f"{name} shapes non-negative (post-ReLU) penultimate features, but model.featurizer gave "
                           f"negative values (min {features.min().item():.3g})")


def kept_count(dim: int, percentile: float) -> int:
    """Activations kept per sample when the lowest ``percentile`` % are pruned: dim - round(dim * p / 100), at least 1
    (the reference code's rounding; at least one, so the kept sum is never empty)."""
    return max(1, dim - round(dim * percentile / 100.0))
