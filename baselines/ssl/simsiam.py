"""SimSiam: a predictor and a stop-gradient, with no negatives and no momentum encoder."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from harness.core.functional import mlp_head
from harness.core.method import Method, State
from harness.core.registry import register_method
from harness.errors import HparamError


def negative_cosine(p: Tensor, z: Tensor) -> Tensor:
    """D(p, z) = -cos(p, stopgrad(z)), averaged over the batch."""
    return -F.cosine_similarity(p, z.detach(), dim=-1).mean()


def simsiam_loss(p1: Tensor, p2: Tensor, z1: Tensor, z2: Tensor) -> Tensor:
    """The symmetrised loss D(p1, z2) / 2 + D(p2, z1) / 2; z is a fixed target in each term. Its minimum is -1."""
    return negative_cosine(p1, z2) / 2 + negative_cosine(p2, z1) / 2


@register_method("simsiam")
class SimSiam(Method):
    """SimSiam (Chen & He, "Exploring Simple Siamese Representation Learning", CVPR 2021).

    Encoder f, projector g, predictor h; for each batch, two views v1, v2:

    1. z1 = g(f(v1)), z2 = g(f(v2)); p1 = h(z1), p2 = h(z2);
    2. loss = D(p1, stopgrad(z2)) / 2 + D(p2, stopgrad(z1)) / 2, D the negative cosine similarity (``simsiam_loss``).

    Both branches share all weights; the stop-gradient is what prevents collapse. Projector: the paper's CIFAR
    variant, two layers (Linear-BN-ReLU-Linear-BN, the output BN without affine parameters, as in the authors'
    code); predictor: a bottleneck Linear-BN-ReLU-Linear with a hidden width a quarter of the output. Widths are
    scaled down for CPU budgets (512 and 128 instead of 2048 and 512). Deviation: the paper keeps the predictor's
    learning rate fixed while the rest decays; here every module follows the budget's one schedule.
    """

    family = "ssl"
    protocols = frozenset({"pretrain"})
    hparams = dict(proj_hidden=512, proj_dim=512, pred_hidden=128)

    def __init__(self, hparams: dict[str, Any] | None = None) -> None:
        super().__init__(hparams)
        h = self.hparams
        if min(h["proj_hidden"], h["proj_dim"], h["pred_hidden"]) < 1:
            raise HparamError(f"simsiam: proj_hidden, proj_dim and pred_hidden must be >= 1, got {h}")

    def build(self, encoder: nn.Module, feature_dim: int, state: State) -> list[nn.Module]:
        h = self.hparams
        # the output BN has no affine parameters (the authors' code): it fixes the scale z's dimensions live at
        projector = mlp_head([feature_dim, h["proj_hidden"], h["proj_dim"]]).append(
            nn.BatchNorm1d(h["proj_dim"], affine=False))
        state.online = nn.Sequential(encoder, projector).to(state.device)
        state.predictor = mlp_head([h["proj_dim"], h["pred_hidden"], h["proj_dim"]]).to(state.device)
        return [state.online, state.predictor]

    def pretrain_loss(self, views: list[Tensor], state: State) -> Tensor:
        z = state.online(torch.cat(views))  # both views in one batch, so BatchNorm sees all 2N images
        p1, p2 = state.predictor(z).chunk(2)
        z1, z2 = z.chunk(2)
        return simsiam_loss(p1, p2, z1, z2)
