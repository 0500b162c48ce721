"""Tests of the DomainBed algorithms added to ``baselines/dg``: SD, MMD, CausIRL (CORAL and MMD), AND-mask, RSC,
Fishr, EQRM, MLDG, Fish and IB-ERM."""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from baselines.dg.andmask import and_mask, gradient_as_loss
from baselines.dg.causirl_coral import random_domain_cut
from baselines.dg.coral import coral_distance
from baselines.dg.eqrm import kde_bandwidth, kde_cdf, kde_quantile
from baselines.dg.fishr import fishr_penalty, linear_head, sample_gradients
from baselines.dg.mldg import inner_update, meta_pairs
from baselines.dg.mmd import KERNEL_GAMMAS, gaussian_mmd
from baselines.dg.rsc import rsc_mask
from baselines.dg.sam import trainable
from harness.core.engine import StepEngine, run_train_step
from harness.core.functional import cross_entropy
from harness.core.method import Batch
from harness.core.models import mlp
from harness.core.registry import create_method, method_entries
from harness.errors import HparamError, MethodError
from tests.methods.test_dg_methods import CASES, binary_mlp, domain_batch, make_state, one_step, params_of

NEW_METHODS = ["sd", "mmd", "causirl-coral", "causirl-mmd", "andmask", "rsc", "fishr", "eqrm", "mldg", "fish",
               "ib-erm"]
# the step past every warm-up, anneal and burn-in point of a 10-step run (EQRM's burn-in ends at 5)
LATE = 6


def small_mlp(k: int = 3) -> nn.Module:
    torch.manual_seed(0)
    return mlp(4, k, hidden=(8,))


def sgd(model: nn.Module, lr: float = 0.1) -> torch.optim.Optimizer:
    return torch.optim.SGD(model.parameters(), lr=lr)


def assert_sgd_update(before: list, model: nn.Module, lr: float, grads: list) -> None:
    for b, p, g in zip(before, model.parameters(), grads):
        torch.testing.assert_close(p.detach(), b - lr * g, rtol=1e-4, atol=1e-6)


# -- registry, one step, hparams ------------------------------------------------------------------

def test_new_methods_are_registered_as_dg():
    entries = {e.name: e for e in method_entries("*")}
    for name in NEW_METHODS:
        assert entries[name].family == "dg" and entries[name].protocols == ("supervised",)
        method = create_method(name)
        assert method.family == "dg" and method.name == name
    assert not create_method("sd").needs_domains and not create_method("rsc").needs_domains
    assert all(create_method(n).needs_domains for n in NEW_METHODS if n not in ("sd", "rsc"))


@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("name", NEW_METHODS)
def test_one_step_is_finite_updates_and_is_deterministic(name, case):
    for step in (0, LATE):
        logs, before, after = one_step(name, case, step)
        assert torch.isfinite(logs["loss"]) and logs["loss"].ndim == 0 and not logs["loss"].requires_grad
        assert any(not torch.equal(a, b) for a, b in zip(after, before)), "parameters did not move"
        _, _, again = one_step(name, case, step)
        assert all(torch.equal(a, b) for a, b in zip(after, again)), "same seed, different parameters"


@pytest.mark.parametrize("name", NEW_METHODS)
def test_absent_domain_single_sample_domain_and_lone_domain(name):
    for domains in ((0, 0, 0, 0, 0, 2), (1,) * 6):  # domain 1 missing and domain 2 of one sample; one domain only
        logs, _, after = one_step(name, "cnn-3class", LATE, domains=domains)
        assert torch.isfinite(logs["loss"])
        assert all(torch.isfinite(p).all() for p in after)


BAD_HPARAMS = [
    ("sd", {"sd_reg": -0.1}),
    ("mmd", {"mmd_gamma": -1.0}), ("mmd", {"kernel_gammas": (1.0, 0.0)}), ("mmd", {"kernel_gammas": ()}),
    ("causirl-coral", {"mmd_gamma": -1.0}),
    ("causirl-mmd", {"mmd_gamma": -1.0}), ("causirl-mmd", {"kernel_gammas": (-1.0,)}),
    ("andmask", {"tau": 1.5}), ("andmask", {"tau": -0.1}),
    ("rsc", {"f_drop_factor": 1.2}), ("rsc", {"b_drop_factor": -0.5}),
    ("fishr", {"lam": -1.0}), ("fishr", {"ema": 1.0}), ("fishr", {"anneal_frac": 2.0}),
    ("eqrm", {"quantile": 1.0}), ("eqrm", {"quantile": 0.0}), ("eqrm", {"burnin_frac": -0.1}),
    ("eqrm", {"lr_factor": 0.0}),
    ("mldg", {"beta": -1.0}), ("mldg", {"n_meta_test": 0}), ("fish", {"meta_lr": 0.0}),
    ("ib-erm", {"lam": -1.0}), ("ib-erm", {"anneal_frac": 1.5}),
    ("fishr", {"tau": 1.0}),  # unknown key
    ("mldg", {"n_meta_test": 1.5}),  # wrong type
]


@pytest.mark.parametrize("name, hparams", BAD_HPARAMS)
def test_bad_hparams_raise(name, hparams):
    with pytest.raises(HparamError) as err:
        create_method(name, hparams)
    assert "\n" not in str(err.value)


# -- SD -------------------------------------------------------------------------------------------

def test_sd_loss_and_update_match_hand_computation():
    model = small_mlp()
    batch = domain_batch((4,), 3)
    before = params_of(model)
    shadow = copy.deepcopy(model)
    logits = shadow(batch.x)
    by_hand = F.cross_entropy(logits, batch.y) + 0.5 * (logits**2).sum() / logits.numel()
    grads = torch.autograd.grad(by_hand, list(shadow.parameters()))
    logs = run_train_step(create_method("sd", {"sd_reg": 0.5}), model, batch, sgd(model), make_state())
    torch.testing.assert_close(logs["loss"], by_hand.detach())
    assert_sgd_update(before, model, 0.1, grads)


# -- MMD and CausIRL ------------------------------------------------------------------------------

def test_gaussian_mmd_matches_pairwise_sums():
    g = torch.Generator().manual_seed(1)
    a, b = torch.randn(3, 2, generator=g, dtype=torch.float64), torch.randn(4, 2, generator=g, dtype=torch.float64)

    def by_hand(gammas):
        def mean_k(u, v):
            d = [float(((x - y) ** 2).sum()) for x in u for y in v]
            return sum(math.exp(-s * e) for s in gammas for e in d) / len(d)
        return mean_k(a, a) + mean_k(b, b) - 2 * mean_k(a, b)

    assert gaussian_mmd(a, b).item() == pytest.approx(by_hand(KERNEL_GAMMAS), rel=1e-6)
    assert gaussian_mmd(a, b, (0.5,)).item() == pytest.approx(by_hand((0.5,)), rel=1e-6)
    assert gaussian_mmd(a, a.clone()).item() == pytest.approx(0.0, abs=1e-6)


def test_mmd_step_penalty_is_mean_over_domain_pairs():
    model = small_mlp()
    batch = domain_batch((4,), 3, domains=(0, 0, 0, 1, 1, 2, 2, 2, 2))
    with torch.no_grad():
        feats = model.featurizer(batch.x)
        logits = model.classifier(feats)
    parts = [feats[batch.domain == d] for d in range(3)]
    penalty = (gaussian_mmd(parts[0], parts[1]) + gaussian_mmd(parts[0], parts[2])
               + gaussian_mmd(parts[1], parts[2])) / 3
    risks = torch.stack([F.cross_entropy(logits[batch.domain == d], batch.y[batch.domain == d]) for d in range(3)])
    logs = run_train_step(create_method("mmd", {"mmd_gamma": 2.0}), model, batch, sgd(model, 0.0), make_state())
    torch.testing.assert_close(logs["penalty"], penalty)
    torch.testing.assert_close(logs["loss"], risks.mean() + 2.0 * penalty)


def test_random_domain_cut_takes_a_prefix_of_every_domain():
    inv = torch.tensor([0, 1, 0, 2, 1, 0, 2, 1, 0, 0])
    for seed in range(20):
        first = random_domain_cut(inv, 3, torch.Generator().manual_seed(seed))
        u = torch.rand(3, generator=torch.Generator().manual_seed(seed))
        for k in range(3):
            members = first[inv == k]
            cut = int(u[k] * len(members))
            assert members.tolist() == [True] * cut + [False] * (len(members) - cut)  # a prefix, never all


@pytest.mark.parametrize("name", ["causirl-coral", "causirl-mmd"])
def test_causirl_penalty_compares_the_two_pools(name):
    model = small_mlp()
    batch = domain_batch((4,), 3, domains=(0,) * 6 + (1,) * 6 + (2,) * 6)
    with torch.no_grad():
        feats = model.featurizer(batch.x)
    first = random_domain_cut(batch.domain, 3, torch.Generator().manual_seed(2))
    p, q = feats[first], feats[~first]
    assert len(p) == 8 and len(q) == 10  # cuts at 3, 2 and 3 of 6
    expected = coral_distance(p, q) if name == "causirl-coral" else gaussian_mmd(p, q)
    logs = run_train_step(create_method(name), model, batch, sgd(model, 0.0), make_state(seed=2))
    torch.testing.assert_close(logs["penalty"], expected)
    torch.testing.assert_close(logs["loss"], logs["nll"] + logs["penalty"])
    # every sample the same input: both pools hold one feature vector, whatever the cuts
    same = Batch(x=batch.x[:1].repeat(18, 1), y=batch.y, domain=batch.domain)
    logs = run_train_step(create_method(name), model, same, sgd(model, 0.0), make_state(seed=2))
    assert logs["penalty"].item() == pytest.approx(0.0, abs=1e-6)
    # seed 3 cuts at 0, 0 and 1: a pool of one sample has no covariance, so no penalty (as DomainBed)
    logs = run_train_step(create_method(name), model, batch, sgd(model, 0.0), make_state(seed=3))
    assert logs["penalty"].item() == 0.0 and torch.isfinite(logs["loss"])


# -- AND-mask -------------------------------------------------------------------------------------

def test_and_mask_by_hand():
    grads = torch.tensor([[1.0, 2.0, -1.0, 0.0], [2.0, 1.0, 1.0, 3.0], [3.0, 3.0, -2.0, 1.0]])
    torch.testing.assert_close(and_mask(grads, 1.0), torch.tensor([4.0, 4.0, 0.0, 0.0]), rtol=1e-6, atol=1e-6)
    # τ = 0.5: coordinate 3 (signs 0, +, +: |mean| = 2/3) joins, coordinate 2 (−, +, −: 1/3) does not
    expected = torch.tensor([2.0, 2.0, 0.0, 4.0 / 3.0]) / 0.75
    torch.testing.assert_close(and_mask(grads, 0.5), expected, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(and_mask(grads, 0.0), grads.mean(0))


def test_gradient_as_loss_puts_exactly_the_direction_in_grad():
    model = small_mlp()
    params = trainable(model)
    direction = [torch.randn_like(p) for p in params]
    engine = StepEngine(torch.optim.SGD(params, lr=1.0))
    before = params_of(model)
    engine.step(lambda: (engine.backward(gradient_as_loss(params, direction)), {"loss": torch.zeros(())})[1])
    assert_sgd_update(before, model, 1.0, direction)


def test_andmask_step_applies_the_masked_mean_of_domain_gradients():
    model = small_mlp()
    batch = domain_batch((4,), 3)
    shadow = copy.deepcopy(model)
    logits = shadow(batch.x)
    per_domain = [torch.autograd.grad(F.cross_entropy(logits[batch.domain == d], batch.y[batch.domain == d]),
                                      list(shadow.parameters()), retain_graph=True) for d in range(3)]
    for tau in (1.0, 0.3):
        expected = [and_mask(torch.stack(gs), tau) for gs in zip(*per_domain)]
        m = copy.deepcopy(model)
        before = params_of(m)
        run_train_step(create_method("andmask", {"tau": tau}), m, batch, sgd(m), make_state())
        assert_sgd_update(before, m, 0.1, expected)


# -- RSC ------------------------------------------------------------------------------------------

def test_rsc_mask_matches_numpy_percentiles():
    torch.manual_seed(0)
    model = small_mlp()
    features = torch.randn(9, 8)
    y = torch.randint(3, (9,))
    mask = rsc_mask(model, features, y, 1 / 3, 1 / 3)
    w = model.classifier.weight.detach()
    grad = w[y].numpy()  # ∂z_y/∂φ of a linear head is its row of W, per sample
    keep_f = grad < np.percentile(grad, 100 * 2 / 3, axis=1, keepdims=True)
    with torch.no_grad():
        p = model.classifier(features).softmax(1).gather(1, y[:, None]).squeeze(1)
        p_muted = model.classifier(features * torch.from_numpy(keep_f)).softmax(1).gather(1, y[:, None]).squeeze(1)
    change = (p - p_muted).numpy()
    keep_b = change < np.percentile(change, 100 * 2 / 3)
    expected = keep_f | keep_b[:, None]
    assert np.array_equal(mask.bool().numpy(), expected)
    assert (~expected).any() and keep_b.any()  # something muted, some samples untouched
    # binary: the signed score (2y − 1) f, whose feature gradient is ±w
    head = binary_mlp()
    yb = torch.tensor([0, 1, 1, 0, 1, 0])
    fb = torch.randn(6, 16)
    mask = rsc_mask(head, fb, yb, 0.25, 0.5).bool().numpy()
    wb = head.classifier[0].weight.detach()[0]
    signed = ((2 * yb - 1)[:, None] * wb[None, :]).numpy()
    keep_f = signed < np.percentile(signed, 75, axis=1, keepdims=True)
    muted = ~mask.all(1)  # the samples the batch-wise step chose mute exactly their top-quarter features
    assert muted.sum() == 3 and np.array_equal(mask[muted], keep_f[muted])


def test_rsc_loss_is_ce_on_masked_features():
    model = small_mlp()
    batch = domain_batch((4,), 3)
    with torch.no_grad():
        feats = model.featurizer(batch.x)
        mask = rsc_mask(model, feats, batch.y, 1 / 3, 1 / 3)
        expected = F.cross_entropy(model.classifier(feats * mask), batch.y)
    logs = run_train_step(create_method("rsc"), model, batch, sgd(model, 0.0), make_state())
    torch.testing.assert_close(logs["loss"], expected)
    assert logs["muted"].item() > 0


# -- Fishr ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("k", [3, 2])
def test_fishr_sample_gradients_match_autograd(k):
    model = small_mlp(k)
    x, y = torch.randn(5, 4), torch.randint(k, (5,))
    feats = model.featurizer(x)
    logits = model.classifier(feats)
    head = linear_head(model)
    rows = []
    for i in range(5):
        gw, gb = torch.autograd.grad(cross_entropy(logits[i:i + 1], y[i:i + 1]), [head.weight, head.bias],
                                     retain_graph=True)
        rows.append(torch.cat([gw.flatten(), gb.flatten()]))
    torch.testing.assert_close(sample_gradients(feats, logits, y), torch.stack(rows))


def test_fishr_penalty_ema_and_anneal():
    v = torch.tensor([[1.0, 2.0], [3.0, 6.0]])
    assert fishr_penalty(v).item() == pytest.approx(((1.0**2 + 2.0**2) * 2) / 4)  # gaps (±1, ±2) about the mean
    method = create_method("fishr", {"ema": 0.9})
    state = make_state()
    method.setup(None, state)
    v1, v2 = torch.tensor([1.0, 2.0]), torch.tensor([3.0, 5.0])
    torch.testing.assert_close(method.smoothed(state, 0, v1), v1)  # first update: (1 − β) v / (1 − β)
    torch.testing.assert_close(method.smoothed(state, 0, v2), 0.9 * v1 + v2)  # (β(1 − β) v1 + (1 − β) v2) / (1 − β)
    torch.testing.assert_close(method.smoothed(state, 1, v2), v2)  # every domain has its own average

    model = small_mlp()
    batch = domain_batch((4,), 3)
    weights = []
    for step in (0, 2, 3):  # anneal point int(0.3 * 10) = 3
        method = create_method("fishr")
        state = make_state(step=step)
        method.setup(None, state)
        logs = run_train_step(method, copy.deepcopy(model), batch, sgd(model, 0.0), state)
        weights.append(logs["penalty_weight"].item())
        torch.testing.assert_close(logs["loss"], logs["nll"] + weights[-1] * logs["penalty"])
    assert weights == [0.0, 0.0, 1000.0]
    # the penalty by hand, from a fresh average: the domains' plain gradient variances
    with torch.no_grad():
        feats = model.featurizer(batch.x)
        grads = sample_gradients(feats, model.classifier(feats), batch.y)
    variances = torch.stack([grads[batch.domain == d].var(0, unbiased=False) for d in range(3)])
    torch.testing.assert_close(logs["penalty"], fishr_penalty(variances))


def test_fishr_refuses_a_nonlinear_head():
    model = small_mlp()
    model.classifier = nn.Sequential(nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 3))
    with pytest.raises(MethodError, match="single nn.Linear"):
        run_train_step(create_method("fishr"), model, domain_batch((4,), 3), sgd(model), make_state())


# -- EQRM -----------------------------------------------------------------------------------------

def test_kde_quantile_by_hand_and_by_finite_differences():
    # two risks, the median: the midpoint by symmetry, moved equally by both
    r = torch.tensor([0.2, 1.0], dtype=torch.float64, requires_grad=True)
    k = kde_quantile(r, 0.5)
    assert k.item() == pytest.approx(0.6, abs=1e-12)
    torch.testing.assert_close(torch.autograd.grad(k, r)[0], torch.tensor([0.5, 0.5], dtype=torch.float64))
    # the KDE's CDF at the returned value is q, and the gradient is the implicit one (checked numerically)
    risks = torch.tensor([0.3, 0.9, 1.4, 0.5], dtype=torch.float64, requires_grad=True)
    for q in (0.25, 0.75, 0.95):
        k = kde_quantile(risks, q)
        h = kde_bandwidth(risks.detach())
        assert h.item() == pytest.approx(1.06 * float(np.std(risks.detach().numpy(), ddof=1)) * 4 ** -0.2)
        assert kde_cdf(k.detach(), risks.detach(), h).item() == pytest.approx(q, abs=1e-12)
        assert torch.autograd.gradcheck(lambda t, q=q: kde_quantile(t, q), (risks,))
    assert kde_quantile(risks, 0.95) > risks.max() > kde_quantile(risks, 0.75) > kde_quantile(risks, 0.25)
    equal = torch.tensor([0.7, 0.7, 0.7])
    assert kde_quantile(equal, 0.9).item() == pytest.approx(0.7)  # no spread: the mean


def test_eqrm_burnin_then_quantile_at_reduced_learning_rate():
    model = small_mlp()
    batch = domain_batch((4,), 3)
    shadow = copy.deepcopy(model)
    logits = shadow(batch.x)
    risks = torch.stack([F.cross_entropy(logits[batch.domain == d], batch.y[batch.domain == d]) for d in range(3)])
    before = params_of(model)
    # burn-in (steps < 5 of 10): ERM on the mean risk at the run's learning rate
    m = copy.deepcopy(model)
    logs = run_train_step(create_method("eqrm"), m, batch, sgd(m), make_state(step=4))
    torch.testing.assert_close(logs["loss"], risks.mean().detach())
    assert_sgd_update(before, m, 0.1, torch.autograd.grad(risks.mean(), list(shadow.parameters()), retain_graph=True))
    # after: the 0.75-quantile of the KDE, at lr_factor × lr, and the factor never compounds
    quantile = kde_quantile(risks, 0.75)
    grads = torch.autograd.grad(quantile, list(shadow.parameters()))
    method, state, opt = create_method("eqrm", {"lr_factor": 0.5}), make_state(step=5), sgd(model)
    method.setup(None, state)
    logs = run_train_step(method, model, batch, opt, state)
    torch.testing.assert_close(logs["loss"], quantile.detach())
    assert_sgd_update(before, model, 0.05, grads)
    for step in (6, 7):
        run_train_step(method, model, batch, opt, make_state(step=step))
        assert opt.param_groups[0]["lr"] == pytest.approx(0.05)
    # with a schedule, each update runs at the factor times the scheduled rate
    m = copy.deepcopy(model)
    opt = sgd(m)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0 / (s + 1))
    engine = StepEngine(opt, scheduler=sched, state=make_state(step=5), count=False)
    seen = []

    def step() -> dict:
        logs = method.train_step(m, batch, engine, engine.state)
        seen.append(opt.param_groups[0]["lr"])  # the rate this update is applied at
        return logs

    for _ in range(3):
        engine.step(step)
    assert seen == pytest.approx([0.05, 0.025, 0.05 / 3])
    assert opt.param_groups[0]["lr"] == pytest.approx(0.1 / 4)  # the schedule's own rate, set afresh by it


def test_eqrm_resets_optimizer_at_the_switch():
    model = small_mlp()
    batch = domain_batch((4,), 3)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    for step in (3, 4, 5):
        run_train_step(create_method("eqrm"), model, batch, opt, make_state(step=step))
    assert opt.state[next(iter(model.parameters()))]["step"].item() == 1


# -- MLDG -----------------------------------------------------------------------------------------

def test_meta_pairs_split_and_pair_the_domains():
    inv = torch.tensor([0, 0, 0, 1, 1, 2, 2, 2, 2, 3, 3, 3])
    for seed in range(10):
        pairs = meta_pairs(inv, 4, 2, torch.Generator().manual_seed(seed))
        assert len(pairs) == 2
        train = [int(inv[i[0]]) for i, _ in pairs]
        test = [int(inv[j[0]]) for _, j in pairs]
        assert len(set(train + test)) == 4  # two meta-train domains, each with its own meta-test domain
        for i, j in pairs:
            assert len(i) == len(j) and inv[i].unique().numel() == 1 and inv[j].unique().numel() == 1
    # two domains: at most all but one are meta-test, so one pair
    assert len(meta_pairs(torch.tensor([0, 1, 0, 1]), 2, 2, torch.Generator().manual_seed(0))) == 1


def test_inner_update_is_one_fresh_optimizer_step():
    p = [nn.Parameter(torch.tensor([1.0, -2.0, 3.0])), nn.Parameter(torch.ones(2))]
    g = [torch.tensor([0.5, -4.0, 0.0]), None]
    (a, b) = inner_update(torch.optim.SGD(p, lr=0.1, momentum=0.9), p, g)
    torch.testing.assert_close(a, torch.tensor([0.95, -1.6, 3.0]))
    torch.testing.assert_close(b, torch.ones(2))
    (a, _) = inner_update(torch.optim.Adam(p, lr=0.01), p, g)  # first Adam step: lr·g/(|g| + ε)
    torch.testing.assert_close(a, torch.tensor([0.99, -1.99, 3.0]))
    opt = torch.optim.AdamW(p, lr=0.01, weight_decay=0.1)  # its constructor takes fewer options than Adam's
    (a, _) = inner_update(opt, p, g)
    torch.testing.assert_close(a, torch.tensor([1.0, -2.0, 3.0]) * (1 - 0.001) - torch.tensor([0.01, -0.01, 0.0]))
    assert torch.equal(p[0].detach(), torch.tensor([1.0, -2.0, 3.0]))  # the model's parameters are left alone


def test_mldg_update_matches_first_order_hand_computation():
    model = small_mlp()
    batch = domain_batch((4,), 3, domains=(0,) * 3 + (1,) * 4 + (2,) * 5)
    lr, beta = 0.1, 0.5
    ids, inv = torch.unique(batch.domain, return_inverse=True)
    pairs = meta_pairs(inv, 3, 2, torch.Generator().manual_seed(0))
    assert len(pairs) == 1
    (i, j), = pairs
    shadow = copy.deepcopy(model)
    g_i = torch.autograd.grad(F.cross_entropy(shadow(batch.x[i]), batch.y[i]), list(shadow.parameters()))
    inner = copy.deepcopy(model)
    with torch.no_grad():
        for p, g in zip(inner.parameters(), g_i):
            p.sub_(lr * g)  # a fresh plain SGD's step
    loss_j = F.cross_entropy(inner(batch.x[j]), batch.y[j])
    g_j = torch.autograd.grad(loss_j, list(inner.parameters()))
    before = params_of(model)
    logs = run_train_step(create_method("mldg", {"beta": beta}), model, batch, sgd(model, lr), make_state())
    assert_sgd_update(before, model, lr, [(a + beta * b) / 3 for a, b in zip(g_i, g_j)])
    expected = (F.cross_entropy(shadow(batch.x[i]), batch.y[i]) + beta * loss_j) / 3
    torch.testing.assert_close(logs["loss"], expected.detach())


# -- Fish -----------------------------------------------------------------------------------------

def test_fish_update_matches_the_sequential_inner_loop():
    model = small_mlp()
    batch = domain_batch((4,), 3, domains=(2,) * 3 + (0,) * 4 + (1,) * 5)
    lr, eps = 0.1, 0.5
    inner = copy.deepcopy(model)
    risks = []
    for d in range(3):  # DomainBed's fixed domain order, one plain SGD step each
        risk = F.cross_entropy(inner(batch.x[batch.domain == d]), batch.y[batch.domain == d])
        grads = torch.autograd.grad(risk, list(inner.parameters()))
        with torch.no_grad():
            for p, g in zip(inner.parameters(), grads):
                p.sub_(lr * g)
        risks.append(risk.detach())
    before = params_of(model)
    method, state = create_method("fish", {"meta_lr": eps}), make_state()
    method.setup(None, state)
    logs = run_train_step(method, model, batch, sgd(model, lr), state)
    for b, p, t in zip(before, model.parameters(), inner.parameters()):
        torch.testing.assert_close(p.detach(), b + eps * (t.detach() - b), rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(logs["loss"], torch.stack(risks).mean())


def test_fish_inner_optimizer_keeps_its_state_across_steps():
    model = small_mlp()
    batch = domain_batch((4,), 3)
    method, state = create_method("fish"), make_state()
    method.setup(None, state)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    for _ in range(2):
        run_train_step(method, model, batch, opt, state)
    inner = state.fish_inner
    assert isinstance(inner, torch.optim.Adam) and inner.param_groups[0]["lr"] == 1e-3
    assert inner.state[inner.param_groups[0]["params"][0]]["step"].item() == 6  # 3 domains × 2 steps
    assert opt.state[next(iter(model.parameters()))]["step"].item() == 2


# -- IB-ERM ---------------------------------------------------------------------------------------

def test_ib_erm_penalty_is_mean_feature_variance_per_domain():
    model = small_mlp()
    batch = domain_batch((4,), 3, domains=(0, 0, 0, 1, 1, 2, 2, 2, 2, 2))
    with torch.no_grad():
        feats = model.featurizer(batch.x)
        logits = model.classifier(feats)
    variance = torch.stack([feats[batch.domain == d].var(0).mean() for d in range(3)]).mean()
    risks = torch.stack([F.cross_entropy(logits[batch.domain == d], batch.y[batch.domain == d]) for d in range(3)])
    for step, weight in ((0, 0.0), (1, 100.0)):  # anneal point int(0.1 * 10) = 1
        logs = run_train_step(create_method("ib-erm"), copy.deepcopy(model), batch, sgd(model, 0.0),
                              make_state(step=step))
        torch.testing.assert_close(logs["penalty"], variance)
        torch.testing.assert_close(logs["loss"], risks.mean() + weight * variance)
        assert logs["penalty_weight"].item() == weight
