"""VICReg: variance-invariance-covariance regularisation of two views' embeddings."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from harness.core.functional import mlp_head
from harness.core.method import Method, State
from harness.core.registry import register_method


def variance_term(z: Tensor, eps: float) -> Tensor:
    """Mean over dimensions of max(0, 1 - sqrt(Var(z_d) + eps)), the unbiased variance over the batch."""
    return F.relu(1.0 - torch.sqrt(z.var(dim=0) + eps)).mean()


def covariance_term(z: Tensor) -> Tensor:
    """Sum of the squared off-diagonal entries of the batch covariance (n - 1 normalisation), divided by dim."""
    z = z - z.mean(dim=0)
    cov = z.T @ z / (len(z) - 1)
    off = cov - torch.diag(torch.diagonal(cov))
    return off.pow(2).sum() / z.shape[1]


def vicreg_loss(za: Tensor, zb: Tensor, lam: float = 25.0, mu: float = 25.0, nu: float = 1.0,
                eps: float = 1e-4) -> Tensor:
    """lam * MSE(za, zb) + mu * (v(za) + v(zb)) / 2 + nu * (c(za) + c(zb)), as in the authors' code."""
    invariance = F.mse_loss(za, zb)
    variance = (variance_term(za, eps) + variance_term(zb, eps)) / 2
    covariance = covariance_term(za) + covariance_term(zb)
    return lam * invariance + mu * variance + nu * covariance


@register_method("vicreg")
class VICReg(Method):
    """VICReg (Bardes, Ponce & LeCun, ICLR 2022).

    Encoder f, expander h (three linear layers, BN-ReLU between); loss ``vicreg_loss`` on h(f(v1)), h(f(v2))
    with the paper's lam = mu = 25, nu = 1. The expander is 512 wide instead of 8192 for CPU budgets.
    """

    family = "ssl"
    protocols = frozenset({"pretrain"})
    hparams = dict(expander=512, lam=25.0, mu=25.0, nu=1.0)

    def build(self, encoder: nn.Module, feature_dim: int, state: State) -> list[nn.Module]:
        width = self.hparams["expander"]
        state.encoder = encoder
        state.expander = mlp_head([feature_dim, width, width, width]).to(state.device)
        return [encoder, state.expander]

    def pretrain_loss(self, views: list[Tensor], state: State) -> Tensor:
        h = self.hparams
        za, zb = state.expander(state.encoder(torch.cat(views))).chunk(2)  # z = h(f(v)), both views in one batch
        return vicreg_loss(za, zb, h["lam"], h["mu"], h["nu"])
