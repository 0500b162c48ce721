"""Residual: the norm of the feature's residual off the principal subspace of the training features."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from baselines.osr._head import linear_head
from baselines.osr.vim import principal_dim
from harness.core.method import Method, State
from harness.core.registry import register_method
from harness.errors import HparamError


@register_method("residual")
class Residual(Method):
    """Residual (Wang, Li, Feng & Zhang, "ViM: Out-Of-Distribution with Virtual-logit Matching", CVPR 2022, its
    feature-only baseline), with classifier logits f = W z + b on penultimate features z:

    1. Origin o = -W^+ b; principal subspace P = the top-D eigenvectors of the uncentred covariance of the training
       features z - o.
    2. S(x) = -||(I - P P^T)(z(x) - o)||, the negated norm of the residual off P.

    This is ``vim`` without its logit term. ``dim`` = D; 0 takes the same rule as vim (:func:`principal_dim`:
    1000 from 2048-d features, 512 from 768-d, else half; OpenOOD fixes 512). Scores the closed-set model that
    ``trainer`` trains (default erm).
    """

    family = "osr"
    protocols = frozenset({"openset"})
    hparams = dict(trainer="erm", dim=0)

    def __init__(self, hparams: dict | None = None) -> None:
        super().__init__(hparams)
        if self.hparams["dim"] < 0:
            raise HparamError(f"hparam dim={self.hparams['dim']!r} for 'residual' must be >= 0 (0 = automatic)")

    def calibrate(self, model: nn.Module, train, state: State) -> None:
        w, b = linear_head(model, "residual")
        z = train.features.double()
        dim = self.hparams["dim"] or principal_dim(z.shape[1])
        if not 0 < dim < z.shape[1]:
            raise HparamError(f"residual: dim={dim} must lie between 0 and the feature size {z.shape[1]}")
        self.origin = -torch.linalg.pinv(w) @ b
        centred = z - self.origin
        _, vectors = torch.linalg.eigh(centred.T @ centred / len(z))  # eigenvalues ascending
        self.residual_basis = vectors[:, : z.shape[1] - dim]

    def score(self, logits: Tensor, features: Tensor | None = None) -> Tensor:
        return -((features.double() - self.origin) @ self.residual_basis).norm(dim=1)
