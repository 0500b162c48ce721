"""Maximum mean discrepancy between training domains (Gaussian kernels)."""

from __future__ import annotations

from collections.abc import Sequence
from itertools import combinations

import torch
from torch import Tensor, nn

from harness.core.engine import StepEngine
from harness.core.functional import cross_entropy, group_means
from harness.core.method import Batch, Method, State
from harness.core.registry import register_method
from harness.core.search import LogUniform
from harness.errors import HparamError

# DomainBed's fixed mixture of kernel widths: k(a, b) = Σ_γ exp(-γ‖a − b‖²)
KERNEL_GAMMAS = (0.001, 0.01, 0.1, 1.0, 10.0, 100.0, 1000.0)


def squared_distances(a: Tensor, b: Tensor) -> Tensor:
    """‖a_i − b_j‖² for every pair of rows, clamped at 0 (the expansion can round below it)."""
    sq = a.pow(2).sum(1, keepdim=True) + b.pow(2).sum(1)[None, :] - 2.0 * a @ b.T
    return sq.clamp_min(0.0)


def gaussian_kernel(a: Tensor, b: Tensor, gammas: Sequence[float] = KERNEL_GAMMAS) -> Tensor:
    """Sum over ``gammas`` of exp(-γ‖a_i − b_j‖²): a kernel matrix of shape (len(a), len(b))."""
    sq = squared_distances(a, b)
    return torch.stack([torch.exp(-g * sq) for g in gammas]).sum(0)


def gaussian_mmd(a: Tensor, b: Tensor, gammas: Sequence[float] = KERNEL_GAMMAS) -> Tensor:
    """Biased (V-statistic) estimate of MMD²(a, b): mean k(a, a') + mean k(b, b') − 2 mean k(a, b)."""
    wide = torch.promote_types(a.dtype, torch.float32)  # exp(-1000 d²) under bf16 or fp16 loses everything
    a, b = a.to(wide), b.to(wide)
    return (gaussian_kernel(a, a, gammas).mean() + gaussian_kernel(b, b, gammas).mean()
            - 2.0 * gaussian_kernel(a, b, gammas).mean())


def check_gammas(gammas: Sequence[float], owner: str) -> None:
    if not gammas or any(g <= 0 for g in gammas):
        raise HparamError(f"hparam kernel_gammas={tuple(gammas)!r} for {owner!r} must be a non-empty list of "
                          "positive numbers")


@register_method("mmd")
class MMD(Method):
    """MMD (Li et al., "Domain Generalization with Adversarial Feature Learning", CVPR 2018), DomainBed's form
    (its MMD-AAE without the autoencoder and the adversary).

    loss = mean_e R_e + γ·mean over pairs (e, e') of training domains of MMD²(φ_e, φ_e'), with φ the
    ``model.featurizer`` outputs of each domain's samples in the batch and the kernel Σ_s exp(-s‖a − b‖²) over
    the widths s in ``kernel_gammas`` (DomainBed's 10⁻³ … 10³). γ = ``mmd_gamma`` (DomainBed: 1).
    """

    family = "dg"
    protocols = frozenset({"supervised"})
    needs_domains = True
    hparams = dict(mmd_gamma=1.0, kernel_gammas=KERNEL_GAMMAS)
    search_space = dict(mmd_gamma=LogUniform(1e-1, 1e1))

    def __init__(self, hparams: dict | None = None) -> None:
        super().__init__(hparams)
        if self.hparams["mmd_gamma"] < 0:
            raise HparamError(f"hparam mmd_gamma={self.hparams['mmd_gamma']!r} for {self.name!r} must be >= 0")
        check_gammas(self.hparams["kernel_gammas"], self.name)

    def train_step(self, model: nn.Module, batch: Batch, engine: StepEngine, state: State) -> dict:
        features = model.featurizer(batch.x)
        logits = model.classifier(features)
        ids, inv = torch.unique(batch.domain, return_inverse=True)
        risks, _ = group_means(cross_entropy(logits, batch.y, reduction="none"), inv, len(ids))
        nll = risks.mean()
        members = [features[inv == k] for k in range(len(ids))]
        gammas = self.hparams["kernel_gammas"]
        gaps = [gaussian_mmd(a, b, gammas) for a, b in combinations(members, 2)]
        penalty = torch.stack(gaps).mean() if gaps else nll.new_zeros(())
        loss = nll + self.hparams["mmd_gamma"] * penalty
        return {"loss": loss, "nll": nll.detach(), "penalty": penalty.detach()}
