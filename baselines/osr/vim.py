"""ViM: virtual-logit matching, the feature residual off the principal subspace scaled to the logits."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from harness.core.method import Method, State
from harness.core.registry import register_method
from harness.errors import HarnessError, HparamError


def principal_dim(features: int) -> int:
    """The reference code's rule for the principal subspace: 1000 from 2048-d features, 512 from 768-d, else half."""
    return 1000 if features >= 2048 else 512 if features >= 768 else features // 2


@register_method("vim")
class ViM(Method):
    """ViM (Wang et al., "ViM: Out-Of-Distribution with Virtual-logit Matching", CVPR 2022), with classifier
    logits f = W z + b on penultimate features z:

    1. Origin o = -W^+ b; principal subspace P = the top-D eigenvectors of the uncentred covariance of the training
       features z - o; the residual of x is the projection of z(x) - o on the orthogonal complement of P.
    2. alpha = mean_i max_k f_k(x_i) / mean_i ||residual(x_i)|| over the training set.
    3. S(x) = log sum_k exp f_k(x) - alpha ||residual(x)||.

    ``dim`` = D; 0 takes the reference rule (:func:`principal_dim`). Scores the closed-set model that ``trainer``
    trains (default erm).
    """

    family = "osr"
    protocols = frozenset({"openset"})
    hparams = dict(trainer="erm", dim=0)

    def __init__(self, hparams: dict | None = None) -> None:
        super().__init__(hparams)
        if self.hparams["dim"] < 0:
            raise HparamError(f"hparam dim={self.hparams['dim']!r} for {self.name!r} must be >= 0 (0 = automatic)")

    def calibrate(self, model: nn.Module, train, state: State) -> None:
        head = model.classifier
        if not isinstance(head, nn.Linear):
            raise HarnessError(f"{self.name} needs a linear classifier head (model.classifier is an nn.Linear)")
        w, b = head.weight.detach().double().cpu(), head.bias.detach().double().cpu()
        z = train.features.double()
        dim = self.hparams["dim"] or principal_dim(z.shape[1])
        if not 0 < dim < z.shape[1]:
            raise HparamError(f"{self.name}: dim={dim} must lie between 0 and the feature size {z.shape[1]}")
        self.origin = -torch.linalg.pinv(w) @ b
        centred = z - self.origin
        _, vectors = torch.linalg.eigh(centred.T @ centred / len(z))  # eigenvalues ascending
        self.residual_basis = vectors[:, : z.shape[1] - dim]
        self.alpha = (train.logits.double().max(dim=1).values.mean() / self.residual(z).mean()).item()

    def residual(self, z: Tensor) -> Tensor:
        return ((z.double() - self.origin) @ self.residual_basis).norm(dim=1)

    def score(self, logits: Tensor, features: Tensor | None = None) -> Tensor:
        return logits.double().logsumexp(dim=1) - self.alpha * self.residual(features)
