"""SimCLR: contrastive learning with the NT-Xent loss."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from harness.core.functional import mlp_head
from harness.core.method import Method, State
from harness.core.registry import register_method


def nt_xent(z1: Tensor, z2: Tensor, tau: float) -> Tensor:
    """NT-Xent over the 2N projections of N pairs.

    With u the L2-normalised projections and s_ij = u_i . u_j / tau, sample i's loss is
    -log exp(s_ip) / sum_{k != i} exp(s_ik), p its positive (the other view of the same image); the loss is the
    mean over all 2N samples. A small tau sharpens the softmax over the negatives, so the hardest (most similar)
    negatives dominate the gradient.
    """
    n = len(z1)
    u = F.normalize(torch.cat([z1, z2]), dim=1)
    sim = (u @ u.T / tau).masked_fill(torch.eye(2 * n, dtype=torch.bool, device=u.device), float("-inf"))
    positives = torch.cat([torch.arange(n, 2 * n), torch.arange(n)]).to(u.device)
    return F.cross_entropy(sim, positives)


@register_method("simclr")
class SimCLR(Method):
    """SimCLR (Chen et al., "A Simple Framework for Contrastive Learning of Visual Representations", ICML 2020).

    Two augmented views per image, encoder f, projector g (Linear-BN-ReLU-Linear, as the CIFAR recipes use);
    minimise NT-Xent(g(f(v1)), g(f(v2))) with temperature ``tau`` (0.5, the paper's CIFAR value). Both views go
    through the network as one batch, so BatchNorm sees all 2N images. The projector is dropped after training:
    the probes read f.
    """

    family = "ssl"
    protocols = frozenset({"pretrain"})
    hparams = dict(tau=0.5, proj_hidden=512, proj_dim=128)

    def build(self, encoder: nn.Module, feature_dim: int, state: State) -> list[nn.Module]:
        h = self.hparams
        state.encoder = encoder
        state.projector = mlp_head([feature_dim, h["proj_hidden"], h["proj_dim"]]).to(state.device)
        return [encoder, state.projector]

    def pretrain_loss(self, views: list[Tensor], state: State) -> Tensor:
        z1, z2 = state.projector(state.encoder(torch.cat(views))).chunk(2)  # z = g(f(v)), both views in one batch
        return nt_xent(z1, z2, self.hparams["tau"])
