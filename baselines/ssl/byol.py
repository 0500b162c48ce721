"""BYOL: an online network predicts a slow-moving target network's projection of another view."""

from __future__ import annotations

import copy

import torch
from torch import Tensor, nn

from harness.core.functional import ema_momentum, ema_update, mlp_head, regression_loss
from harness.core.method import Method, State
from harness.core.registry import register_method


@register_method("byol")
class BYOL(Method):
    """BYOL (Grill et al., "Bootstrap Your Own Latent", NeurIPS 2020).

    Online network: encoder f, projector g, predictor q (each MLP Linear-BN-ReLU-Linear); target network: an EMA
    copy of f and g. Loss: regression_loss(q(g(f(v1))), g'(f'(v2))) + the same with the views swapped. After each
    optimiser step the target moves by EMA with momentum rising from ``base_momentum`` to 1 on a cosine schedule
    (``ema_momentum``). 0.99 is the CIFAR base used by solo-learn and MYOW's code (the paper's ImageNet value is
    0.996); widths are scaled down from 4096/256 for CPU budgets.
    """

    family = "ssl"
    protocols = frozenset({"pretrain"})
    hparams = dict(proj_hidden=512, proj_dim=128, base_momentum=0.99)

    def build(self, encoder: nn.Module, feature_dim: int, state: State) -> list[nn.Module]:
        h = self.hparams
        projector = mlp_head([feature_dim, h["proj_hidden"], h["proj_dim"]])
        state.predictor = mlp_head([h["proj_dim"], h["proj_hidden"], h["proj_dim"]]).to(state.device)
        state.online = nn.Sequential(encoder, projector).to(state.device)
        # the target computes its own BatchNorm batch statistics (train mode); only EMA changes its parameters
        state.teacher = copy.deepcopy(state.online).requires_grad_(False).train()
        return [state.online, state.predictor]

    def pretrain_loss(self, views: list[Tensor], state: State) -> Tensor:
        x = torch.cat(views)
        p1, p2 = state.predictor(state.online(x)).chunk(2)  # q(g(f(v)))
        with torch.no_grad():
            z1, z2 = state.teacher(x).chunk(2)  # g'(f'(v)), a fixed target
        return regression_loss(p1, z2) + regression_loss(p2, z1)

    def after_step(self, state: State) -> None:
        ema_update(state.teacher, state.online, ema_momentum(state, self.hparams["base_momentum"]))
