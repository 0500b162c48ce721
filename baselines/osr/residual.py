"""Residual: the norm of the feature's residual off the principal subspace of the training features."""

from __future__ import annotations

from torch import Tensor

from baselines.osr.vim import ViM
from harness.core.registry import register_method


@register_method("residual")
class Residual(ViM):
    """Residual (Wang, Li, Feng & Zhang, "ViM: Out-Of-Distribution with Virtual-logit Matching", CVPR 2022, its
    feature-only baseline), with classifier logits f = W z + b on penultimate features z:

    1. Origin o = -W^+ b; principal subspace P = the top-D eigenvectors of the uncentred covariance of the training
       features z - o.
    2. S(x) = -||(I - P P^T)(z(x) - o)||, the negated norm of the residual off P.

    This is ``vim`` without its logit term. ``dim`` = D; 0 takes the same rule as vim (:func:`principal_dim`:
    1000 from 2048-d features, 512 from 768-d, else half; OpenOOD fixes 512). Scores the closed-set model that
    ``trainer`` trains (default erm).
    """

    def score(self, logits: Tensor, features: Tensor | None = None) -> Tensor:
        return -self.residual(features)  # ViM's calibration (origin, subspace); its logit term left out
