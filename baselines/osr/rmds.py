"""RMDS: the relative Mahalanobis distance, class-conditional minus background."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from baselines.osr.mahalanobis import Mahalanobis
from harness.core.method import State
from harness.core.registry import register_method


@register_method("rmds")
class RMDS(Mahalanobis):
    """RMDS (Ren, Fort, Liu, Guha Roy, Padhy & Lakshminarayanan, "A Simple Fix to Mahalanobis Distance for Improving
    Near-OOD Detection", arXiv 2106.09022, 2021), on the penultimate features z:

    1. Class-conditional Gaussians as Mahalanobis: mu_k = the mean of class k's training features,
       Sigma = (1/N) sum_k sum_{i in k} (z_i - mu_k)(z_i - mu_k)^T shared by all classes;
       MD_k(z) = (z - mu_k)^T Sigma^+ (z - mu_k).
    2. Background Gaussian fitted to all training features, labels ignored: mu_0 = mean, Sigma_0 = the covariance;
       MD_0(z) = (z - mu_0)^T Sigma_0^+ (z - mu_0).
    3. RMD_k(z) = MD_k(z) - MD_0(z); S(x) = -min_k RMD_k(z(x)).

    Pseudo-inverses (as sklearn's EmpiricalCovariance in the reference code, and as ``mahalanobis`` here), so fewer
    training samples than feature dimensions still give finite scores; but then the directions between the class
    means lie in the background's span and not in the within-class one, MD_k ignores them while MD_0 measures them,
    and the score rewards distance from the training mean along them: trust RMDS only with well over D training
    samples. No hyperparameters. Scores the closed-set model that ``trainer`` trains (default erm).
    """

    def calibrate(self, model: nn.Module, train, state: State) -> None:
        super().calibrate(model, train, state)  # Mahalanobis's class means and shared precision (step 1)
        z = train.features.double()
        self.background_mean = z.mean(dim=0)
        centred = z - self.background_mean
        self.background_precision = torch.linalg.pinv(centred.T @ centred / len(z), hermitian=True)

    def score(self, logits: Tensor, features: Tensor | None = None) -> Tensor:
        z = features.double()
        # (z - mu)^T P (z - mu) = z^T P z - 2 z^T P mu + mu^T P mu: N x D and N x K terms, never N x K x D
        zp = z @ self.precision
        class_distances = ((zp * z).sum(dim=1, keepdim=True) - 2 * zp @ self.means.T
                           + ((self.means @ self.precision) * self.means).sum(dim=1))
        b = z - self.background_mean
        background = ((b @ self.background_precision) * b).sum(dim=1)
        return -(class_distances - background[:, None]).min(dim=1).values
