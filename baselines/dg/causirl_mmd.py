"""Causality-inspired invariant representation learning, with the Gaussian-kernel MMD."""

from __future__ import annotations

from torch import Tensor

from baselines.dg.causirl_coral import CausIRLCORAL
from baselines.dg.mmd import KERNEL_GAMMAS, check_gammas, gaussian_mmd
from harness.core.registry import register_method
from harness.core.search import LogUniform


@register_method("causirl-mmd")
class CausIRLMMD(CausIRLCORAL):
    """CausIRL-MMD (Chevalley et al., "Invariant Causal Mechanisms through Distribution Matching",
    arXiv:2206.11646, 2022), DomainBed's form.

    As :class:`~baselines.dg.causirl_coral.CausIRLCORAL` (two pools made by cutting every training domain of the
    batch at a random point), with the distance between the pools' features the MMD² of
    :func:`~baselines.dg.mmd.gaussian_mmd` (kernel widths ``kernel_gammas``, DomainBed's 10⁻³ … 10³).
    γ = ``mmd_gamma`` (DomainBed: 1).
    """

    family = "dg"
    protocols = frozenset({"supervised"})
    needs_domains = True
    hparams = dict(mmd_gamma=1.0, kernel_gammas=KERNEL_GAMMAS)
    search_space = dict(mmd_gamma=LogUniform(1e-1, 1e1))

    def __init__(self, hparams: dict | None = None) -> None:
        super().__init__(hparams)
        check_gammas(self.hparams["kernel_gammas"], self.name)

    def distance(self, a: Tensor, b: Tensor) -> Tensor:
        return gaussian_mmd(a, b, self.hparams["kernel_gammas"])
