"""Group distributionally robust optimisation."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from harness.core.functional import cross_entropy, group_means
from harness.core.method import Batch, Method, State
from harness.core.registry import register_method
from harness.core.search import LogUniform
from harness.errors import DataError, Unsupported


@register_method("groupdro")
class GroupDRO(Method):
    """Group DRO (Sagawa et al., "Distributionally Robust Neural Networks", ICLR 2020).

    Online exponentiated-gradient ascent on weights q over groups,
    q_g ← q_g·exp(η·L_g), then descent on Σ_g q_g·L_g. Runs over ``batch.group``
    when the task has groups (the paper's setting) and over training domains
    otherwise (DomainBed's variant). A group absent from the batch has L_g = 0,
    so its weight is only renormalised, as in the paper's code.
    """

    family = "dg"
    protocols = frozenset({"supervised"})
    hparams = dict(eta=0.01)
    search_space = dict(eta=LogUniform(1e-3, 1e-1))

    def check_task(self, task: Any) -> None:
        super().check_task(task)
        if task.num_groups < 2 and task.num_domains < 2:
            raise Unsupported(f"groupdro needs at least 2 groups or training domains; {task.case} has neither")

    def setup(self, task: Any, state: State) -> None:
        state.q = None  # sized on the first batch, once we know whether groups or domains are used

    def loss(self, logits: Tensor, batch: Batch, state: State) -> Tensor:
        use_groups = batch.group is not None and state.num_groups > 1
        labels = batch.group if use_groups else batch.domain
        n = state.num_groups if use_groups else state.num_domains
        if state.q is None or len(state.q) != n:
            if int(labels.max()) >= n:  # checked once: domain-balanced batches hold every label
                kind = "group" if use_groups else "domain"
                raise DataError(f"groupdro: {kind} labels must be 0..{n - 1}, got {int(labels.max())}")
            state.q = torch.full((n,), 1.0 / n, device=logits.device)
        losses, _ = group_means(cross_entropy(logits, batch.y, reduction="none"), labels, n)
        q = state.q * torch.exp(self.hparams["eta"] * losses.detach())
        state.q = q / q.sum()
        return (state.q * losses).sum()
