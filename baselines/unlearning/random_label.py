"""Random labels on the forget set, together with the retain set."""

from __future__ import annotations

from torch import Tensor, nn

from harness.core.functional import cross_entropy, wrong_labels
from harness.core.method import Batch, Method, State
from harness.core.registry import register_method


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
    hparams = dict(lr_factor=0.3)  # lr_factor: lowest mean gap, docs/tuning/unlearning__*__smoke__random-label.json

    def unlearn(self, model: nn.Module, forget, retain, state: State) -> nn.Module:
        engine = state.engine(model.parameters(), self.hparams["lr_factor"])
        state.optimize(model, engine, lambda pair: relabel_loss(model, *pair, state),
                       zip(forget.forever(), retain.forever()))
        return model
