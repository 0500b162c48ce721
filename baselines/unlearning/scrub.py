"""SCRUB: a student that moves away from its teacher on the forget set and stays with it on the retain set."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from harness.method import Method, State, cross_entropy
from harness.protocols.unlearn import frozen_copy, optimize
from harness.registry import register_method


def distill_kl(student: Tensor, teacher: Tensor, temperature: float) -> Tensor:
    """KL(softmax(t/T) || softmax(s/T)) T², batch mean (Hinton's distillation term)."""
    log_s = F.log_softmax(student / temperature, dim=1)
    log_t = F.log_softmax(teacher / temperature, dim=1)
    return F.kl_div(log_s, log_t, log_target=True, reduction="batchmean") * temperature**2


@register_method("scrub")
class SCRUB(Method):
    """SCRUB (Kurmanji et al., "Towards Unbounded Machine Unlearning", NeurIPS 2023).

    The student starts as the original model; the teacher is a frozen copy. For ``rounds`` rounds:
      * max-step (first ``max_rounds`` rounds only): one pass over the forget set maximising KL(teacher || student);
      * min-step: retain batches minimising γ CE + α KL(teacher || student);
    the min-steps share what the max-steps leave of the budget. Defaults are the paper's CIFAR settings (T = 4,
    α = 0.001, γ = 0.99, max-steps in the first 2 rounds).
    """

    family = "unlearning"
    protocols = frozenset({"unlearn"})
    hparams = dict(temperature=4.0, alpha=0.001, gamma=0.99, rounds=4, max_rounds=2, lr_factor=0.3)

    def unlearn(self, model: nn.Module, forget, retain, state: State) -> nn.Module:
        h = self.hparams
        teacher = frozen_copy(model)
        optimizer = state.optimizer(model.parameters(), h["lr_factor"])
        max_steps = forget.steps_per_epoch
        min_steps = max(1, (state.total_steps - max_steps * min(h["max_rounds"], h["rounds"])) // h["rounds"])

        def away(b):  # max-step: ascend the divergence from the teacher on forget data
            return -distill_kl(model(b.x), teacher(b.x), h["temperature"])

        def stay(b):  # min-step: fit the labels and the teacher on retain data
            return (h["gamma"] * cross_entropy(model(b.x), b.y)
                    + h["alpha"] * distill_kl(model(b.x), teacher(b.x), h["temperature"]))

        retain_batches = retain.forever()
        for r in range(h["rounds"]):
            if r < h["max_rounds"]:
                optimize(model, away, forget.batches(), state, max_steps, optimizer)
            optimize(model, stay, retain_batches, state, min_steps, optimizer)
        return model
