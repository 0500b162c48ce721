"""MoCo v3: an online query network with a predictor contrasts against a momentum encoder's keys, in-batch."""

from __future__ import annotations

import copy
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from harness.core.functional import ema_momentum, ema_update, mlp_head
from harness.core.method import Method, State
from harness.core.registry import register_method
from harness.errors import HparamError


def moco_contrastive(q: Tensor, k: Tensor, tau: float) -> Tensor:
    """ctr(q, k) = 2 tau * mean_i -log exp(q_i . k_i / tau) / sum_j exp(q_i . k_j / tau), q and k L2-normalised.

    Query i's positive is key i (the other view of the same image); the other keys of the batch are its
    negatives. The keys are a fixed target. The factor 2 tau (the authors' code) makes the gradient's scale
    independent of tau.
    """
    q = F.normalize(q, dim=1)
    k = F.normalize(k.detach(), dim=1)
    logits = q @ k.T / tau
    return F.cross_entropy(logits, torch.arange(len(q), device=q.device)) * (2.0 * tau)


@register_method("moco-v3")
class MoCoV3(Method):
    """MoCo v3 (Chen, Xie & He, "An Empirical Study of Training Self-Supervised Vision Transformers", ICCV 2021).

    Query network: encoder f, projector g, predictor q; key network: an EMA copy of f and g (no predictor). For
    each batch, two views v1, v2:

    1. queries q1 = q(g(f(v1))), q2 = q(g(f(v2))); keys k1 = g'(f'(v1)), k2 = g'(f'(v2)), without gradient;
    2. loss = ctr(q1, k2) + ctr(q2, k1), the InfoNCE of ``moco_contrastive`` with temperature ``tau``: the
       negatives are the other keys of the same batch (no queue, unlike MoCo v1/v2);
    3. after each update the key network moves by EMA, momentum from ``base_momentum`` to 1 on a cosine.

    Heads as the authors' ResNet setup: projector and predictor Linear-BN-ReLU-Linear, the projector ending in a
    BatchNorm without affine parameters. ``base_momentum`` is the paper's 0.99. ``tau`` = 0.2: the paper's
    ResNet-50 value is 1.0 at batch 4096; 0.2 is its ViT value and solo-learn's CIFAR ResNet-18 value, better
    suited to the small batches here. Widths are scaled down from 4096/256 to 512/128 for CPU budgets.
    """

    family = "ssl"
    protocols = frozenset({"pretrain"})
    hparams = dict(proj_hidden=512, proj_dim=128, pred_hidden=512, tau=0.2, base_momentum=0.99)

    def __init__(self, hparams: dict[str, Any] | None = None) -> None:
        super().__init__(hparams)
        h = self.hparams
        if min(h["proj_hidden"], h["proj_dim"], h["pred_hidden"]) < 1:
            raise HparamError(f"moco-v3: proj_hidden, proj_dim and pred_hidden must be >= 1, got {h}")
        if h["tau"] <= 0:
            raise HparamError(f"hparam tau={h['tau']!r} for 'moco-v3' must be > 0")
        if not 0.0 <= h["base_momentum"] <= 1.0:
            raise HparamError(f"hparam base_momentum={h['base_momentum']!r} for 'moco-v3' must lie in [0, 1]")

    def build(self, encoder: nn.Module, feature_dim: int, state: State) -> list[nn.Module]:
        h = self.hparams
        projector = mlp_head([feature_dim, h["proj_hidden"], h["proj_dim"]]).append(
            nn.BatchNorm1d(h["proj_dim"], affine=False))
        state.online = nn.Sequential(encoder, projector).to(state.device)
        state.predictor = mlp_head([h["proj_dim"], h["pred_hidden"], h["proj_dim"]]).to(state.device)
        # the key network computes its own BatchNorm batch statistics (train mode); only EMA changes its parameters
        state.teacher = copy.deepcopy(state.online).requires_grad_(False).train()
        return [state.online, state.predictor]

    def pretrain_loss(self, views: list[Tensor], state: State) -> Tensor:
        x = torch.cat(views)
        q1, q2 = state.predictor(state.online(x)).chunk(2)  # q(g(f(v)))
        with torch.no_grad():
            k1, k2 = state.teacher(x).chunk(2)  # g'(f'(v)), fixed keys
        tau = self.hparams["tau"]
        return moco_contrastive(q1, k2, tau) + moco_contrastive(q2, k1, tau)

    def after_step(self, state: State) -> None:
        ema_update(state.teacher, state.online, ema_momentum(state, self.hparams["base_momentum"]))
