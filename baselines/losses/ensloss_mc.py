"""EnsLoss on the multiclass margin: this project's K-class extension of EnsLoss."""

from __future__ import annotations

from typing import Any

from torch import Tensor

from baselines.losses.ensloss import ensloss_derivatives
from harness.core.functional import is_binary
from harness.core.method import Batch, Method, State
from harness.core.registry import register_method
from harness.errors import Unsupported


def multiclass_margin(logits: Tensor, y: Tensor) -> Tensor:
    """z_i = f_y(x_i) - max_{k != y} f_k(x_i): positive iff sample i is classified correctly."""
    own = logits.gather(1, y[:, None]).squeeze(1)
    rivals = logits.scatter(1, y[:, None], float("-inf"))
    return own - rivals.max(dim=1).values


@register_method("ensloss-mc")
class EnsLossMC(Method):
    """EnsLoss's random calibrated derivative applied to the multiclass margin (this project's extension).

    Not in the paper (Ben Dai, "EnsLoss: Stochastic Calibrated Loss Ensembles
    for Preventing Overfitting in Classification", ICML 2025), which is binary
    only. Here the binary margin y~ f(x) becomes the multiclass margin
    z = f_y - max_{k != y} f_k, and each step draws the derivatives g with
    :func:`~baselines.losses.ensloss.ensloss_derivatives` (ranked over the
    batch) and minimises mean(stopgrad(g) * z). The gradient raises the label's
    logit and lowers the strongest rival's, so, unlike a one-vs-all extension,
    no column faces a 1:(K-1) imbalance that pushes every logit down.

    On a binary task this is ensloss itself, so it skips those cases rather
    than duplicate its rows.
    """

    family = "loss"
    protocols = frozenset({"supervised"})
    hparams = dict(lam=0.0)
    multiclass_note = ("this project's extension, not in the EnsLoss paper: the random calibrated derivative on the "
                       "multiclass margin f_y - max_{k!=y} f_k")

    def check_task(self, task: Any) -> None:
        super().check_task(task)
        if task.num_classes <= 2:
            raise Unsupported(f"ensloss-mc on the binary case {task.suite}/{task.case} is ensloss itself; run ensloss")

    def loss(self, logits: Tensor, batch: Batch, state: State) -> Tensor:
        if is_binary(logits):
            raise Unsupported("ensloss-mc needs K-class logits; for a binary score use ensloss")
        z = multiclass_margin(logits, batch.y)
        g = ensloss_derivatives(z, state.generator, self.hparams["lam"])
        return (g * z).mean()
