"""Gradient ascent on the forget set."""

from __future__ import annotations

from torch import nn

from harness.core.functional import cross_entropy
from harness.core.method import Method, State
from harness.core.registry import register_method


@register_method("grad-ascent")
class GradAscent(Method):
    """GA (Thudi et al. 2022; the GA baseline of Jia et al. 2023 and SalUn): maximise the cross-entropy of the forget
    set, i.e. descend on -CE(f(x_f), y_f). Unbounded, so it runs a short share of the budget (``step_frac``) at a
    reduced learning rate; the retain set is never used."""

    family = "unlearning"
    protocols = frozenset({"unlearn"})
    hparams = dict(step_frac=0.25, lr_factor=0.1)  # lr_factor: docs/tuning/unlearning__*__smoke__grad-ascent.json

    def unlearn(self, model: nn.Module, forget, retain, state: State) -> nn.Module:
        steps = max(1, round(self.hparams["step_frac"] * state.total_steps))
        engine = state.engine(model.parameters(), self.hparams["lr_factor"])
        state.optimize(model, engine, lambda b: -cross_entropy(model(b.x), b.y), forget.forever(), steps)
        return model
