"""Barlow Twins: make the cross-correlation of two views' embeddings the identity matrix."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from harness.core.functional import mlp_head
from harness.core.method import Method, State
from harness.core.registry import register_method
from harness.errors import HparamError


def standardize(z: Tensor, eps: float = 1e-5) -> Tensor:
    """Each dimension to mean 0 and variance 1 over the batch: the biased variance plus ``eps``, as the authors'
    ``BatchNorm1d(affine=False)`` in train mode computes it."""
    z = z - z.mean(dim=0)
    return z / torch.sqrt(z.pow(2).mean(dim=0) + eps)


def barlow_twins_loss(za: Tensor, zb: Tensor, lambd: float = 5e-3) -> Tensor:
    """sum_i (1 - C_ii)^2 + lambd * sum_{i != j} C_ij^2, with C = standardize(za)^T standardize(zb) / N the D x D
    cross-correlation of the two views' embeddings over the batch of N.

    The diagonal term makes each dimension invariant to the augmentation; the off-diagonal term decorrelates the
    dimensions, so the embedding cannot collapse to a few directions.
    """
    c = standardize(za).T @ standardize(zb) / len(za)
    on_diag = torch.diagonal(c)
    invariance = (1.0 - on_diag).pow(2).sum()
    redundancy = c.pow(2).sum() - on_diag.pow(2).sum()  # the squared off-diagonal entries
    return invariance + lambd * redundancy


@register_method("barlow-twins")
class BarlowTwins(Method):
    """Barlow Twins (Zbontar, Jing, Misra, LeCun & Deny, "Barlow Twins: Self-Supervised Learning via Redundancy
    Reduction", ICML 2021).

    For each batch, two views v1, v2; encoder f; projector g (three linear layers, BN-ReLU between):

    1. za = g(f(v1)), zb = g(f(v2)), both views through the network as one batch;
    2. standardise each embedding dimension over the batch (mean 0, std 1);
    3. C = za^T zb / N, the cross-correlation matrix;
    4. loss = sum_i (1 - C_ii)^2 + ``lambd`` sum_{i != j} C_ij^2 (``barlow_twins_loss``).

    No negatives, no predictor, no momentum encoder: the redundancy term alone prevents collapse. ``lambd`` is the
    paper's 5e-3; the projector is 512 wide instead of 8192 for CPU budgets (``lambd`` is kept, not rescaled for the
    smaller D). The projector is dropped after training: the probes read f.
    """

    family = "ssl"
    protocols = frozenset({"pretrain"})
    hparams = dict(proj_hidden=512, proj_dim=512, lambd=5e-3)

    def __init__(self, hparams: dict[str, Any] | None = None) -> None:
        super().__init__(hparams)
        h = self.hparams
        if h["proj_hidden"] < 1 or h["proj_dim"] < 1:
            raise HparamError(f"barlow-twins: proj_hidden={h['proj_hidden']} and proj_dim={h['proj_dim']} must be >= 1")
        if h["lambd"] < 0:
            raise HparamError(f"hparam lambd={h['lambd']!r} for 'barlow-twins' must be >= 0")

    def build(self, encoder: nn.Module, feature_dim: int, state: State) -> list[nn.Module]:
        h = self.hparams
        state.encoder = encoder
        state.projector = mlp_head([feature_dim, h["proj_hidden"], h["proj_hidden"], h["proj_dim"]]).to(state.device)
        return [encoder, state.projector]

    def pretrain_loss(self, views: list[Tensor], state: State) -> Tensor:
        # one batch through f and g, so BatchNorm sees both views; the loss standardises each view on its own
        za, zb = state.projector(state.encoder(torch.cat(views))).chunk(2)
        return barlow_twins_loss(za, zb, self.hparams["lambd"])
