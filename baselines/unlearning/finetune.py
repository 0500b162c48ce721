"""Fine-tuning on the retain set: forgetting by catastrophic forgetting."""

from __future__ import annotations

from torch import nn

from harness.core.functional import cross_entropy
from harness.core.method import Method, State
from harness.core.registry import register_method


@register_method("finetune")
class Finetune(Method):
    """FT (Warnecke et al. 2023; the FT baseline of Jia et al. 2023 and SalUn): continue training on the retain set
    only, with cross-entropy, for the step budget, and hope the forget set fades."""

    family = "unlearning"
    protocols = frozenset({"unlearn"})
    hparams = dict(lr_factor=0.3)  # lr_factor: lowest mean gap, docs/tuning/unlearning__*__smoke__finetune.json

    def unlearn(self, model: nn.Module, forget, retain, state: State) -> nn.Module:
        engine = state.engine(model.parameters(), self.hparams["lr_factor"])
        state.optimize(model, engine, lambda b: cross_entropy(model(b.x), b.y), retain.forever())
        return model
