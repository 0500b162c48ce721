"""Empirical Quantile Risk Minimization."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from harness.core.engine import StepEngine
from harness.core.functional import cross_entropy, group_means
from harness.core.method import Batch, Method, State
from harness.core.registry import register_method
from harness.core.search import LogUniform, Uniform
from harness.errors import HparamError

BISECTION_STEPS = 64  # halvings of the bracket, in float64: far below the risks' own precision


def kde_bandwidth(risks: Tensor) -> Tensor:
    """The Gaussian-optimal rule of thumb h = 1.06·σ̂·n^(−1/5) (σ̂ the unbiased std), DomainBed's choice."""
    return 1.06 * risks.std() * len(risks) ** -0.2


def kde_cdf(k: Tensor, risks: Tensor, bandwidth: Tensor) -> Tensor:
    """CDF at ``k`` of the Gaussian KDE of ``risks``: mean_i Φ((k − r_i)/h)."""
    return torch.special.ndtr((k - risks) / bandwidth).mean()


def kde_quantile(risks: Tensor, q: float) -> Tensor:
    """The q-quantile of a Gaussian KDE of the per-domain risks, differentiable in them.

    The value comes from bisection on the KDE's CDF F (no gradient). The gradient is the implicit one,
    ∂k/∂r = −(∂F/∂r)/(∂F/∂k) at F(k) = q (through the bandwidth too): each risk is weighted by its kernel's density
    at the quantile, so the domains near it move it most. Fewer than two risks, or risks all equal, have no
    spread to smooth: their mean is returned.
    """
    if len(risks) < 2:
        return risks.mean()
    r = risks.double()
    h = kde_bandwidth(r)
    if not bool(h > 0):
        return risks.mean()
    with torch.no_grad():
        shift = h * torch.special.ndtri(torch.tensor(q, dtype=r.dtype, device=r.device))
        lo, hi = r.min() + shift, r.max() + shift  # F(lo) ≤ q ≤ F(hi): every kernel's own q-quantile lies between
        for _ in range(BISECTION_STEPS):
            mid = (lo + hi) / 2
            below = kde_cdf(mid, r, h) < q
            lo, hi = torch.where(below, mid, lo), torch.where(below, hi, mid)
        k = (lo + hi) / 2
        density = (torch.exp(-0.5 * ((k - r) / h) ** 2) / (h * (2 * torch.pi) ** 0.5)).mean()
    # value k (F(k) − q is zero to the bisection's precision); gradient −∇F / F'(k)
    return (k - (kde_cdf(k, r, h) - q) / density).to(risks.dtype)


def scale_learning_rate(engine: StepEngine, factor: float) -> None:
    """Run this update at ``factor`` × the learning rate the run's schedule gives it.

    With a schedule, the scheduler's last learning rate is scaled (its next step sets the following one afresh);
    without one, the learning rate a parameter group had the first time is kept in the group (``eqrm_base_lr``,
    as a scheduler keeps ``initial_lr``) and scaled, so the factor never compounds across steps.
    """
    groups = engine.optimizer.param_groups
    base = [group.setdefault("eqrm_base_lr", group["lr"]) for group in groups]
    if engine.scheduler is not None:
        base = engine.scheduler.get_last_lr()
    for group, lr in zip(groups, base):
        group["lr"] = lr * factor


@register_method("eqrm")
class EQRM(Method):
    """EQRM (Eastwood et al., "Probable Domain Generalization via Quantile Risk Minimization", NeurIPS 2022,
    Algorithm 1), DomainBed's form.

    The training domains' risks R_e in the batch are treated as draws from a distribution of risks over
    domains; EQRM minimises its α-quantile, estimated with a Gaussian KDE (bandwidth 1.06·σ̂·n^(−1/5)), so
    that the predictor performs well on a fraction α of domains with high probability (α → 1 approaches the
    worst case, α = 0.5 the median). α = ``quantile`` (DomainBed: 0.75). The first ``burnin_frac`` of the steps
    minimise mean_e R_e (ERM; DomainBed: 2500 of 5000 steps). At the switch the optimiser's state is cleared
    (``reset_optimizer``, as DomainBed rebuilds Adam), and from then on each update runs at ``lr_factor`` × the
    run's learning rate: DomainBed's new Adam uses ``eqrm_lr`` = 10⁻⁶ against its lr of 5·10⁻⁵, a factor of
    0.02 (a ratio, so that the harness's per-case learning rates keep their scale). See :func:`kde_quantile`
    for the quantile's gradient.
    """

    family = "dg"
    protocols = frozenset({"supervised"})
    needs_domains = True
    hparams = dict(quantile=0.75, burnin_frac=0.5, lr_factor=0.02, reset_optimizer=True)
    search_space = dict(quantile=Uniform(0.5, 0.99), burnin_frac=LogUniform(10**2.5 / 5000, 10**3.5 / 5000),
                        lr_factor=LogUniform(1e-7 / 5e-5, 1e-5 / 5e-5))

    def __init__(self, hparams: dict | None = None) -> None:
        super().__init__(hparams)
        h = self.hparams
        if not 0.0 < h["quantile"] < 1.0:
            raise HparamError(f"hparam quantile={h['quantile']!r} for 'eqrm' must lie strictly between 0 and 1")
        if not 0.0 <= h["burnin_frac"] <= 1.0:
            raise HparamError(f"hparam burnin_frac={h['burnin_frac']!r} for 'eqrm' must lie in [0, 1]")
        if h["lr_factor"] <= 0:
            raise HparamError(f"hparam lr_factor={h['lr_factor']!r} for 'eqrm' must be > 0")

    def train_step(self, model: nn.Module, batch: Batch, engine: StepEngine, state: State) -> dict:
        h = self.hparams
        burnin = int(h["burnin_frac"] * state.total_steps)
        ids, inv = torch.unique(batch.domain, return_inverse=True)
        risks, _ = group_means(cross_entropy(model(batch.x), batch.y, reduction="none"), inv, len(ids))
        if state.step < burnin:
            return {"loss": risks.mean(), "mean_risk": risks.mean().detach()}
        if state.step == burnin and h["reset_optimizer"]:
            engine.reset_optimizer_state()
        if h["lr_factor"] != 1.0:
            scale_learning_rate(engine, h["lr_factor"])
        loss = kde_quantile(risks, h["quantile"])
        return {"loss": loss, "mean_risk": risks.mean().detach()}
