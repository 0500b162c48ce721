"""fDBD: the mean feature-space distance to the decision boundaries, relative to the distance from the training mean."""

from __future__ import annotations

from torch import Tensor, nn

from baselines.osr._head import linear_head
from harness.core.method import Method, State
from harness.core.registry import register_method

TINY = 1e-12  # floor of the norms divided by: a zero weight difference or a feature on the mean stays finite


@register_method("fdbd")
class FDBD(Method):
    """fDBD (Liu & Qin, "Fast Decision Boundary based Out-of-Distribution Detector", ICML 2024), with classifier
    logits f = W z + b (rows w_k) on penultimate features z and K classes:

    1. y_hat = argmax_k f_k(x). The boundary between y_hat and class c is the hyperplane f_y_hat = f_c, at feature
       distance |f_y_hat(x) - f_c(x)| / ||w_y_hat - w_c|| from z(x).
    2. S(x) = (1 / (K - 1)) sum_{c != y_hat} |f_y_hat(x) - f_c(x)| / ||w_y_hat - w_c|| / ||z(x) - mu||, with mu the
       mean training feature: known samples sit far from the boundaries relative to how far they are from the mean.

    ``distance_to_mean`` = True is the paper's normaliser ||z - mu||; False divides by ||z|| instead, the alternative
    OpenOOD selects between on validation data. No other hyperparameters. Scores the closed-set model that ``trainer``
    trains (default erm).
    """

    family = "osr"
    protocols = frozenset({"openset"})
    hparams = dict(trainer="erm", distance_to_mean=True)

    def calibrate(self, model: nn.Module, train, state: State) -> None:
        w, _ = linear_head(model, "fdbd")
        self.weight_gaps = (w[:, None, :] - w[None, :, :]).norm(dim=2).clamp(min=TINY)  # K x K: ||w_j - w_c||
        self.mean = train.features.double().mean(dim=0) if self.hparams["distance_to_mean"] else None

    def score(self, logits: Tensor, features: Tensor | None = None) -> Tensor:
        f = logits.double()
        top, pred = f.max(dim=1)
        # the c = y_hat term is |0| / gap = 0, so summing over all K classes and dividing by K - 1 is the mean over c
        boundary = ((top[:, None] - f) / self.weight_gaps[pred]).sum(dim=1) / (f.shape[1] - 1)
        z = features.double()
        norm = (z if self.mean is None else z - self.mean).norm(dim=1).clamp(min=TINY)
        return boundary / norm
