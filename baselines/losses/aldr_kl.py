"""ALDR-KL: LDR-KL with a per-sample, adaptive temperature lambda_i."""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from baselines.losses.ldr_kl import ldr_kl_per_sample, ldr_margins
from harness.core.method import Batch, Method, State
from harness.core.registry import register_method
from harness.errors import HarnessError


@register_method("aldr-kl")
class ALDRKL(Method):
    """ALDR-KL loss (Zhu, Ying & Yang, "Label Distributionally Robust Losses for Multi-class Classification").

    Per sample, the worst case over both the label distribution p and the
    temperature lambda:

        max_{p, lambda} sum_k p_k u_k - lambda * KL(p || uniform) - beta * (lambda - lam0)^2,
        u_k = f_k - f_y + c * 1[k != y],  beta = alpha * log K / (2 * lam0).

    For fixed lambda the best p is softmax(u / lambda); for fixed p the best
    lambda is lam0 - KL(p || uniform) / (2 beta) = lam0 - lam0 * KL / (alpha log K).
    Each step does one round of this block ascent per sample in the batch:
    p_i from the stored lambda_i, then lambda_i from p_i (stored, detached),
    and the loss is LDR-KL at the new lambda_i minus the penalty. The penalty
    has no gradient w.r.t. the model; it is kept so the reported objective is
    the paper's.

    Since KL(p || uniform) <= log K, lambda_i >= lam0 * (1 - 1/alpha), which is
    lam0/2 for alpha = 2; the floor ``lambda_min`` only matters for alpha <= 1,
    where lambda could reach 0 and the loss would divide by it.

    Near LDR-KL at the losses suite's settings (issue 26: the committed standard
    records of mnist4v9-noise0.2 give aldr-kl and ldr-kl the same test accuracy
    on all 5 seeds). Not a wiring fault: the protocol's lambda moves and the
    scores differ (tests/methods/test_losses_methods.py). It is a near-degeneracy:
    with K = 2 and lam0 = 10 the adaptive lambda lies in [5, 10] and stays near
    10 while |u| / lambda is small, and the suite's MNIST cases keep the best
    validation epoch, which was epoch 2-3 of 15 on every seed there (both methods).
    Measured (standard, 5 seed streams, CPU): lambda quantiles p5/p50/p95 were
    8.3-8.8 / 9.9 / 10.0 at epoch 3 and 6.1-6.4 / 9.7 / 10.0 at epoch 14; the
    test scores (sd 6-13) differ by up to 10.9 but change sign on 0, 1, 16, 2
    and 8 of 200 test images, so accuracies tie on one seed (0.940 both) and
    differ by 0.005-0.03 on four. The committed tie was run with bare-index
    seeds (before per-case seed streams) and a 200-image test set (accuracy steps
    of 0.005); the other 11 standard cases differ on at least one seed.
    """

    family = "loss"
    protocols = frozenset({"supervised"})
    hparams = dict(lam0=10.0, alpha=2.0, c=0.1, lambda_min=1e-3)
    multiclass_note = "native K-class loss; a binary score f is treated as the two logits [0, f] (K = 2)"

    def setup(self, task: Any, state: State) -> None:
        state.aldr_lambda = torch.full((state.num_train,), self.hparams["lam0"], device=state.device)

    def loss(self, logits: Tensor, batch: Batch, state: State) -> Tensor:
        if batch.index is None:
            raise HarnessError("aldr-kl keeps a lambda per training sample and needs batch.index; the batch has none")
        lam0, alpha = self.hparams["lam0"], self.hparams["alpha"]
        u = ldr_margins(logits, batch.y, self.hparams["c"])
        log_k = math.log(u.shape[1])
        lam = state.aldr_lambda[batch.index].to(u.dtype)
        if torch.is_grad_enabled():  # an evaluation pass (no_grad) must not move the training state
            log_p = F.log_softmax(u.detach() / lam[:, None], dim=1)
            kl = (log_p.exp() * log_p).sum(dim=1) + log_k  # KL(p || uniform) = log K - H(p)
            lam = (lam0 - lam0 * kl / (alpha * log_k)).clamp_min(self.hparams["lambda_min"])
            state.aldr_lambda[batch.index] = lam.to(state.aldr_lambda.dtype)
        penalty = alpha * log_k / (2.0 * lam0) * (lam - lam0) ** 2
        return (ldr_kl_per_sample(u, lam) - penalty).mean()
