"""Meta-Learning Domain Generalization (first-order)."""

from __future__ import annotations

import inspect
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from baselines.dg.andmask import gradient_as_loss
from baselines.dg.sam import restore, trainable
from harness.core.engine import StepEngine
from harness.core.functional import cross_entropy
from harness.core.method import Batch, Method, State
from harness.core.registry import register_method
from harness.core.search import Choice, LogUniform
from harness.errors import HparamError


def optimizer_like(optimizer: torch.optim.Optimizer, params: Sequence[Tensor]) -> torch.optim.Optimizer:
    """A fresh optimiser of ``optimizer``'s class and hyper-parameters, at its current learning rate, over detached
    copies of ``params`` (an inner loop's own weights)."""
    accepted = inspect.signature(type(optimizer)).parameters  # AdamW takes fewer options than its defaults hold
    hyper = {k: v for k, v in optimizer.defaults.items() if k in accepted}
    hyper["lr"] = optimizer.param_groups[0]["lr"]
    return type(optimizer)([p.detach().clone() for p in params], **hyper)


def inner_update(optimizer: torch.optim.Optimizer, params: Sequence[Tensor],
                 grads: Sequence[Tensor | None]) -> list[Tensor]:
    """θ' after one step on ``grads`` of a fresh optimiser of the run's kind (:func:`optimizer_like`), as
    DomainBed's fresh inner Adam; ``params`` are left alone. A fresh Adam's first step is lr·g/(|g| + ε) per
    coordinate, a fresh SGD's lr·g."""
    inner = optimizer_like(optimizer, params)
    theta = inner.param_groups[0]["params"]
    for t, g in zip(theta, grads):
        t.grad = None if g is None else g.detach().clone()  # no gradient: the optimiser leaves it in place
    inner.step()  # not the model's weights: θ', a copy (returned, applied by the engine)
    return theta


def meta_pairs(inv: Tensor, num_domains: int, num_test: int, generator: torch.Generator) -> list[tuple[Tensor, Tensor]]:
    """(meta-train indices, meta-test indices) per pair, as DomainBed's ``split_meta_train_test``.

    The domains present are shuffled; the last ``num_test`` (at most all but one) are meta-test, and each
    meta-train domain is paired with the next meta-test domain in turn. Both sides are cut to the shorter one.
    """
    num_test = min(num_test, num_domains - 1)
    order = torch.randperm(num_domains, generator=generator, device=generator.device).tolist()
    train, test = order[:num_domains - num_test], order[num_domains - num_test:]
    members = [(inv == k).nonzero().squeeze(1) for k in range(num_domains)]
    pairs = []
    for n, i in enumerate(train):
        a, b = members[i], members[test[n % num_test]]
        m = min(len(a), len(b))
        pairs.append((a[:m], b[:m]))
    return pairs


@register_method("mldg")
class MLDG(Method):
    """MLDG (Li et al., "Learning to Generalize: Meta-Learning for Domain Generalization", AAAI 2018,
    Algorithm 1), DomainBed's first-order form.

    Each step the training domains in the batch are split at random into meta-train and meta-test
    (``n_meta_test`` of them meta-test, DomainBed: 2, at most all but one here) and paired. For a pair (i, j):
    G_i = ∇_θ R_i(θ); θ' = θ after one step of a fresh copy of the run's optimiser on G_i
    (:func:`inner_update`); G_j = ∇ R_j at θ' (first order: no derivative through θ'). The run's optimiser then
    steps on Σ_pairs (G_i + β·G_j) / E, E the number of domains in the batch, as in DomainBed.
    β = ``beta`` (DomainBed's ``mldg_beta``: 1). A lone domain in the batch is plain ERM. ``loss`` is
    Σ_pairs (R_i(θ) + β R_j(θ')) / E. The meta-test forward runs at θ' on the model itself (θ is restored after).
    """

    family = "dg"
    protocols = frozenset({"supervised"})
    needs_domains = True
    hparams = dict(beta=1.0, n_meta_test=2)
    search_space = dict(beta=LogUniform(1e-1, 1e1), n_meta_test=Choice((1, 2)))

    def __init__(self, hparams: dict | None = None) -> None:
        super().__init__(hparams)
        if self.hparams["beta"] < 0:
            raise HparamError(f"hparam beta={self.hparams['beta']!r} for 'mldg' must be >= 0")
        if self.hparams["n_meta_test"] < 1:
            raise HparamError(f"hparam n_meta_test={self.hparams['n_meta_test']!r} for 'mldg' must be >= 1")

    def train_step(self, model: nn.Module, batch: Batch, engine: StepEngine, state: State) -> dict:
        ids, inv = torch.unique(batch.domain, return_inverse=True)
        if len(ids) < 2:
            return {"loss": cross_entropy(model(batch.x), batch.y)}
        beta, params = self.hparams["beta"], trainable(model)
        direction: list[Tensor | None] = [None] * len(params)
        objective = 0.0
        for i, j in meta_pairs(inv, len(ids), self.hparams["n_meta_test"], state.generator):
            loss_i = cross_entropy(model(batch.x[i]), batch.y[i])
            g_i = engine.grad(loss_i, params, allow_unused=True)
            saved = [p.detach().clone() for p in params]
            with torch.no_grad():
                for p, t in zip(params, inner_update(engine.optimizer, params, g_i)):
                    p.copy_(t)
            loss_j = cross_entropy(model(batch.x[j]), batch.y[j])
            g_j = engine.grad(loss_j, params, allow_unused=True)
            restore(params, saved)
            for n, pair in enumerate(zip(g_i, g_j)):
                for g, weight in zip(pair, (1.0, beta)):
                    if g is not None:  # a parameter the loss does not reach gets no direction from it
                        direction[n] = weight * g if direction[n] is None else direction[n] + weight * g
            objective = objective + loss_i.detach() + beta * loss_j.detach()
        scale = 1.0 / len(ids)
        engine.backward(gradient_as_loss(params, [None if d is None else d * scale for d in direction]))
        return {"loss": objective * scale}
