"""Fine-tuning with an l1 sparsity penalty."""

from __future__ import annotations

from torch import nn

from harness.core.functional import cross_entropy, l1_norm
from harness.core.method import Method, State
from harness.core.registry import register_method


@register_method("l1-sparse")
class L1Sparse(Method):
    """ℓ1-sparse unlearning (Jia et al., "Model Sparsity Can Simplify Machine Unlearning", NeurIPS 2023): fine-tune on
    the retain set with CE + γ_t ‖θ‖₁, the penalty decaying linearly, γ_t = γ (1 - t/T), over the T steps of the
    budget (their ``linear`` schedule), so sparsity is pushed early and accuracy repaired late."""

    family = "unlearning"
    protocols = frozenset({"unlearn"})
    hparams = dict(gamma=5e-4, lr_factor=1.0)  # lr_factor: docs/tuning/unlearning__*__smoke__l1-sparse.json

    def unlearn(self, model: nn.Module, forget, retain, state: State) -> nn.Module:
        params = [p for p in model.parameters() if p.requires_grad]
        total = state.total_steps

        def loss(b):
            gamma = self.hparams["gamma"] * (1.0 - state.step / total)
            return cross_entropy(model(b.x), b.y) + gamma * l1_norm(params)

        state.optimize(model, state.engine(params, self.hparams["lr_factor"]), loss, retain.forever())
        return model
