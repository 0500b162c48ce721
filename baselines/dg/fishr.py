"""Fishr: match the per-domain variances of the classifier's gradients."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from harness.core.engine import StepEngine
from harness.core.functional import cross_entropy, is_binary
from harness.core.method import Batch, Method, State
from harness.core.registry import register_method
from harness.core.search import LogUniform, Uniform
from harness.errors import HparamError, MethodError


def linear_head(model: nn.Module) -> nn.Linear:
    """The one ``nn.Linear`` that holds every parameter of ``model.classifier`` (the harness's heads)."""
    linears = [m for m in model.classifier.modules() if isinstance(m, nn.Linear)]
    n_params = sum(1 for _ in model.classifier.parameters())
    if len(linears) != 1 or n_params != sum(1 for _ in linears[0].parameters()):
        raise MethodError("fishr computes per-sample gradients in closed form and needs model.classifier to be a "
                          "single nn.Linear (optionally followed by parameter-free layers)")
    return linears[0]


def sample_gradients(features: Tensor, logits: Tensor, y: Tensor, bias: bool = True) -> Tensor:
    """Per-sample gradients of CE_i with respect to a linear head's (weight, bias), flattened: shape (N, P).

    With r_i = softmax(z_i) − onehot(y_i) (binary: σ(f_i) − y_i), ∂CE_i/∂W = r_i h_iᵀ and ∂CE_i/∂b = r_i, h_i the
    head's input. Differentiable in ``features`` and ``logits``, so a penalty on them trains the featurizer too.
    """
    wide = torch.promote_types(logits.dtype, torch.float32)  # at least fp32 under autocast
    logits, features = logits.to(wide), features.to(wide)
    if is_binary(logits):
        r = (torch.sigmoid(logits) - y.to(logits.dtype))[:, None]
    else:
        r = logits.softmax(1) - F.one_hot(y, logits.shape[1]).to(logits.dtype)
    weight = (r[:, :, None] * features[:, None, :]).flatten(1)
    return torch.cat([weight, r], dim=1) if bias else weight


def centred_second_moment(grads: Tensor) -> Tensor:
    """Per-coordinate variance (population, over the rows) of a domain's per-sample gradients."""
    return (grads - grads.mean(0)).pow(2).mean(0)


def fishr_penalty(variances: Tensor) -> Tensor:
    """mean_e mean_j (v_e,j − v̄_j)², with v̄ the mean over the domains (rows) of ``variances``."""
    return (variances - variances.mean(0)).pow(2).mean()


@register_method("fishr")
class Fishr(Method):
    """Fishr (Rame et al., "Fishr: Invariant Gradient Variances for Out-of-Distribution Generalization", ICML 2022),
    DomainBed's form.

    For each training domain e in the batch, v_e is the per-coordinate variance of the per-sample gradients of
    CE with respect to the classifier's weight and bias (closed form for the linear head,
    :func:`sample_gradients`; DomainBed uses BackPACK). Each v_e is smoothed over steps by an exponential moving
    average kept on ``state`` (m_e ← β m_e + (1 − β) v_e, the stored m_e detached; the penalty sees
    m_e / (1 − β), DomainBed's correction that keeps the gradient through v_e independent of β).
    loss = CE + λ·mean_e ‖m_e/(1 − β) − mean_e' m_e'/(1 − β)‖², the squared norm a mean over coordinates.
    λ = 0 for the first ``anneal_frac`` of the steps and ``lam`` after (DomainBed: 1500 of 5000 steps,
    λ = 1000, β = ``ema`` = 0.95); with ``reset_optimizer`` the optimiser's state is cleared when λ jumps, as
    DomainBed rebuilds Adam. Only the domains present in a batch update their averages and enter the penalty.
    """

    family = "dg"
    protocols = frozenset({"supervised"})
    needs_domains = True
    hparams = dict(lam=1000.0, anneal_frac=0.3, ema=0.95, reset_optimizer=True)
    search_space = dict(lam=LogUniform(1e1, 1e4), anneal_frac=Uniform(0.0, 1.0), ema=Uniform(0.90, 0.99))

    def __init__(self, hparams: dict | None = None) -> None:
        super().__init__(hparams)
        h = self.hparams
        if h["lam"] < 0:
            raise HparamError(f"hparam lam={h['lam']!r} for 'fishr' must be >= 0")
        if not 0.0 <= h["anneal_frac"] <= 1.0:
            raise HparamError(f"hparam anneal_frac={h['anneal_frac']!r} for 'fishr' must lie in [0, 1]")
        if not 0.0 <= h["ema"] < 1.0:
            raise HparamError(f"hparam ema={h['ema']!r} for 'fishr' must lie in [0, 1)")

    def setup(self, task: Any, state: State) -> None:
        state.fishr_ema = {}  # domain id -> moving average of its gradient variances (detached)

    def smoothed(self, state: State, domain: int, variance: Tensor) -> Tensor:
        beta = self.hparams["ema"]
        averages = vars(state).setdefault("fishr_ema", {})
        previous = averages.get(domain)
        current = (1.0 - beta) * variance if previous is None else beta * previous + (1.0 - beta) * variance
        averages[domain] = current.detach()
        return current / (1.0 - beta)

    def train_step(self, model: nn.Module, batch: Batch, engine: StepEngine, state: State) -> dict:
        h = self.hparams
        anneal = int(h["anneal_frac"] * state.total_steps)
        if state.step == anneal and anneal > 0 and h["reset_optimizer"]:
            engine.reset_optimizer_state()
        weight = h["lam"] if state.step >= anneal else 0.0
        head = linear_head(model)
        features = model.featurizer(batch.x)
        logits = model.classifier(features)
        nll = cross_entropy(logits, batch.y)
        grads = sample_gradients(features, logits, batch.y, bias=head.bias is not None)
        ids, inv = torch.unique(batch.domain, return_inverse=True)
        variances = torch.stack([self.smoothed(state, int(d), centred_second_moment(grads[inv == k]))
                                 for k, d in enumerate(ids.tolist())])
        penalty = fishr_penalty(variances)
        loss = nll + weight * penalty
        return {"loss": loss, "nll": nll.detach(), "penalty": penalty.detach(),
                "penalty_weight": torch.tensor(weight)}
