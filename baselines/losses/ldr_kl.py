"""LDR-KL: the label-distributionally robust loss with a KL penalty."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from harness.core.functional import is_binary
from harness.core.method import Batch, Method, State
from harness.core.registry import register_method


def ldr_margins(logits: Tensor, y: Tensor, c: float) -> Tensor:
    """u_k = f_k - f_y + c * 1[k != y], shape (N, K). A binary score f becomes the two logits [0, f]."""
    if is_binary(logits):
        logits = torch.stack([torch.zeros_like(logits), logits], dim=1)
    shift = c * (1.0 - F.one_hot(y, logits.shape[1]).to(logits.dtype))
    return logits - logits.gather(1, y[:, None]) + shift


def ldr_kl_per_sample(u: Tensor, lam: Tensor | float) -> Tensor:
    """lam * log((1/K) * sum_k exp(u_k / lam)) per row, via logsumexp so any scale of u stays finite.

    ``lam`` is a scalar or a per-sample tensor of shape (N,).
    """
    lam = torch.as_tensor(lam, dtype=u.dtype, device=u.device)
    lam_col = lam[:, None] if lam.ndim else lam
    return lam * (torch.logsumexp(u / lam_col, dim=1) - math.log(u.shape[1]))


@register_method("ldr-kl")
class LDRKL(Method):
    """LDR-KL loss (Zhu, Ying & Yang, "Label Distributionally Robust Losses for Multi-class Classification").

    l(x, y) = max_{p in simplex} sum_k p_k u_k - lam * KL(p || uniform)
            = lam * log((1/K) sum_k exp((f_k - f_y + c*1[k != y]) / lam)).

    It runs from the mean of u (lam -> inf) to the max of u, a Crammer-Singer
    hinge (lam -> 0+).
    """

    family = "loss"
    protocols = frozenset({"supervised"})
    hparams = dict(c=0.1, lam=10.0)
    multiclass_note = "native K-class loss; a binary score f is treated as the two logits [0, f] (K = 2)"

    def loss(self, logits: Tensor, batch: Batch, state: State) -> Tensor:
        u = ldr_margins(logits, batch.y, self.hparams["c"])
        return ldr_kl_per_sample(u, self.hparams["lam"]).mean()
