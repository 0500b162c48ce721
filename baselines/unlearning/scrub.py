"""SCRUB: a student that moves away from its teacher on the forget set and stays with it on the retain set."""

from __future__ import annotations

from torch import nn

from harness.core.functional import cross_entropy, distill_kl, frozen_copy
from harness.core.method import Method, State
from harness.core.registry import register_method


@register_method("scrub")
class SCRUB(Method):
    """SCRUB (Kurmanji et al., "Towards Unbounded Machine Unlearning", NeurIPS 2023).

    The student starts as the original model; the teacher is a frozen copy. For ``rounds`` rounds:
      * max-step (first ``max_rounds`` rounds only): one pass over the forget set maximising KL(teacher || student)
        (at most half the budget over all max-steps);
      * min-step: retain batches minimising γ CE + α KL(teacher || student);
    the min-steps share what the max-steps leave of the budget. Defaults are the paper's CIFAR settings (T = 4,
    α = 0.001, γ = 0.99, max-steps in the first 2 rounds).
    """

    family = "unlearning"
    protocols = frozenset({"unlearn"})
    hparams = dict(temperature=4.0, alpha=0.001, gamma=0.99, rounds=4, max_rounds=2, lr_factor=0.3)
    # lr_factor: lowest mean gap, docs/tuning/unlearning__*__smoke__scrub.json

    def unlearn(self, model: nn.Module, forget, retain, state: State) -> nn.Module:
        h = self.hparams
        teacher = frozen_copy(model)
        engine = state.engine(model.parameters(), h["lr_factor"])  # one optimizer: max- and min-steps share Adam
        n_max = min(h["max_rounds"], h["rounds"])
        max_steps = min(forget.steps_per_epoch, state.budget.left // (2 * max(1, n_max)))  # keep half for min-steps
        min_steps = (state.budget.left - max_steps * n_max) // h["rounds"]

        def away(b):  # max-step: ascend the divergence from the teacher on forget data
            return -distill_kl(model(b.x), teacher(b.x), h["temperature"])

        def stay(b):  # min-step: fit the labels and the teacher on retain data
            return (h["gamma"] * cross_entropy(model(b.x), b.y)
                    + h["alpha"] * distill_kl(model(b.x), teacher(b.x), h["temperature"]))

        retain_batches = retain.forever()
        for r in range(h["rounds"]):
            if r < h["max_rounds"]:
                state.optimize(model, engine, away, forget.batches(), max_steps)
            state.optimize(model, engine, stay, retain_batches, min_steps)
        return model
