"""Random labels on the forget set, together with the retain set."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from harness.method import Batch, Method, State, cross_entropy
from harness.protocols.unlearn import optimize
from harness.registry import register_method


def wrong_labels(y: Tensor, num_classes: int, generator: torch.Generator) -> Tensor:
    """A uniformly drawn label other than the true one, per sample."""
    shift = torch.randint(1, num_classes, y.shape, generator=generator, device=y.device)
    return (y + shift) % num_classes


def relabel_loss(model: nn.Module, forget: Batch, retain: Batch, state: State) -> Tensor:
    """CE of the forget batch against random wrong labels plus CE of the retain batch against its labels."""
    wrong = wrong_labels(forget.y, state.num_classes, state.generator)
    return cross_entropy(model(forget.x), wrong) + cross_entropy(model(retain.x), retain.y)


@register_method("random-label")
class RandomLabel(Method):
    """RL (Golatkar et al. 2020; the RL baseline of Jia et al. 2023 and SalUn): fine-tune on the forget set relabelled
    at random and on the retain set with its labels. Each step takes one forget and one retain batch and sums their
    mean losses (SalUn iterates over their union; this weights the forget set more when it is small)."""

    family = "unlearning"
    protocols = frozenset({"unlearn"})
    hparams = dict(lr_factor=0.3)

    def unlearn(self, model: nn.Module, forget, retain, state: State) -> nn.Module:
        optimizer = state.optimizer(model.parameters(), self.hparams["lr_factor"])
        optimize(model, lambda pair: relabel_loss(model, *pair, state), zip(forget.forever(), retain.forever()), state,
                 state.total_steps, optimizer)
        return model
