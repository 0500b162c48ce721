"""Tests of the domain-generalisation method plugins in ``baselines/dg``."""

from __future__ import annotations

import copy
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from baselines.dg.coral import coral_distance
from baselines.dg.irm import irm_penalty
from baselines.dg.mixup import mix
from baselines.dg.sam import ascend, restore, sam_step, trainable
from baselines.dg.udim import gradient_statistics_gap, sharpness_gradients
from baselines.dg.vrex import domain_risks
from harness.core.engine import StepEngine, run_train_step
from harness.core.functional import cross_entropy
from harness.core.method import Batch, State
from harness.core.models import mlp, small_cnn
from harness.core.registry import create_method, method_entries, method_names
from harness.errors import DataError, HparamError, Unsupported

DG_METHODS = ["erm", "sam", "udim", "groupdro", "vrex", "irm", "coral", "mixup"]


def make_state(step: int = 0, total_steps: int = 10, num_classes: int = 3, num_domains: int = 3,
               num_groups: int = 1, seed: int = 0) -> State:
    return State(step=step, epoch=0, total_steps=total_steps, device=torch.device("cpu"),
                 generator=torch.Generator().manual_seed(seed), num_classes=num_classes,
                 num_domains=num_domains, num_groups=num_groups, num_train=100)


def domain_batch(shape: tuple[int, ...], num_classes: int, domains: tuple[int, ...] = (0,) * 4 + (1,) * 4 + (2,) * 4,
                 seed: int = 0) -> Batch:
    g = torch.Generator().manual_seed(seed)
    n = len(domains)
    return Batch(x=torch.randn(n, *shape, generator=g), y=torch.randint(num_classes, (n,), generator=g),
                 domain=torch.tensor(domains))


def cnn(num_classes: int = 3) -> nn.Module:
    torch.manual_seed(0)
    return small_cnn(1, num_classes, width=8)


def binary_mlp() -> nn.Module:
    torch.manual_seed(0)
    return mlp(6, 2, hidden=(16,))


def params_of(model: nn.Module) -> list[torch.Tensor]:
    return [p.detach().clone() for p in model.parameters()]


# -- registry -----------------------------------------------------------------

def test_all_dg_methods_are_discovered():
    assert set(DG_METHODS) <= set(method_names("*"))
    entries = {e.name: e for e in method_entries("*")}
    for name in DG_METHODS:
        assert entries[name].family == "dg" and entries[name].protocols == ("supervised",)
        method = create_method(name)
        assert method.family == "dg" and method.name == name and "supervised" in method.protocols


# -- every method, one step ---------------------------------------------------

CASES = {
    "cnn-3class": (cnn, (1, 8, 8), 3),
    "mlp-binary": (binary_mlp, (6,), 2),
}


def one_step(name: str, case: str, step: int, domains: tuple[int, ...] | None = None) -> tuple[dict, list, list]:
    factory, shape, k = CASES[case]
    model = factory()
    before = params_of(model)
    batch = domain_batch(shape, k, **({} if domains is None else {"domains": domains}))
    method = create_method(name)
    state = make_state(step=step, num_classes=k)
    method.setup(None, state)
    logs = run_train_step(method, model, batch, torch.optim.SGD(model.parameters(), lr=0.1), state)
    return logs, before, params_of(model)


@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("name", DG_METHODS)
def test_one_step_is_finite_updates_and_is_deterministic(name, case):
    for step in (0, 5):  # step 5 of 10 is past every warm-up and anneal point
        logs, before, after = one_step(name, case, step)
        assert torch.isfinite(logs["loss"]) and logs["loss"].ndim == 0 and not logs["loss"].requires_grad
        assert any(not torch.equal(a, b) for a, b in zip(after, before)), "parameters did not move"
        _, _, again = one_step(name, case, step)
        assert all(torch.equal(a, b) for a, b in zip(after, again)), "same seed, different parameters"


@pytest.mark.parametrize("name", DG_METHODS)
def test_absent_domain_and_single_sample_domain(name):
    # domain 1 is missing and domain 2 has one sample: nothing may divide by zero or index out of range
    logs, before, after = one_step(name, "cnn-3class", 5, domains=(0, 0, 0, 0, 0, 2))
    assert torch.isfinite(logs["loss"])
    assert all(torch.isfinite(p).all() for p in after)


# -- SAM ----------------------------------------------------------------------

def test_sam_ascent_raises_loss_and_restores_exactly():
    torch.manual_seed(0)
    model = mlp(10, 3)
    x, y = torch.randn(32, 10), torch.randint(3, (32,))
    params = trainable(model)
    theta = params_of(model)
    loss = cross_entropy(model(x), y)
    grads = torch.autograd.grad(loss, params)
    saved = ascend(params, grads, 0.05)
    step = torch.sqrt(sum(((p - t) ** 2).sum() for p, t in zip(params, theta)))
    assert step.item() == pytest.approx(0.05, rel=1e-4)
    assert cross_entropy(model(x), y).item() > loss.item()
    restore(params, saved)
    assert all(torch.equal(p, t) for p, t in zip(params, theta))

    # a zero learning rate leaves θ bitwise unchanged: the perturbation is fully undone
    engine = StepEngine(torch.optim.SGD(model.parameters(), lr=0.0))
    logs = engine.step(lambda: sam_step(model, x, y, engine, rho=0.05))
    assert all(torch.equal(p, t) for p, t in zip(model.parameters(), theta))
    assert logs["loss_perturbed"] > logs["loss"]

    # with plain SGD the update is θ − lr·∇L(θ + ε)
    shadow = copy.deepcopy(model)
    sp = trainable(shadow)
    ascend(sp, torch.autograd.grad(cross_entropy(shadow(x), y), sp), 0.05)
    g_perturbed = torch.autograd.grad(cross_entropy(shadow(x), y), sp)
    engine = StepEngine(torch.optim.SGD(model.parameters(), lr=0.5))
    engine.step(lambda: sam_step(model, x, y, engine, rho=0.05))
    for p, t, g in zip(model.parameters(), theta, g_perturbed):
        torch.testing.assert_close(p.detach(), t - 0.5 * g)


# -- GroupDRO -----------------------------------------------------------------

def test_groupdro_weights_move_to_worst_group():
    method = create_method("groupdro")
    state = make_state(num_groups=4)
    method.setup(None, state)
    group = torch.arange(4).repeat_interleave(4)
    y = torch.zeros(16, dtype=torch.long)
    logits = torch.zeros(16, 3)
    logits[:, 0] = 3.0
    logits[group == 2] = torch.tensor([0.0, 5.0, 0.0])  # group 2 is confidently wrong
    batch = Batch(x=torch.zeros(16, 1), y=y, domain=torch.zeros(16, dtype=torch.long), group=group)
    history = []
    for _ in range(5):
        loss = method.loss(logits, batch, state)
        history.append(state.q[2].item())
    q = state.q
    assert q.sum().item() == pytest.approx(1.0)
    assert q.argmax().item() == 2 and history == sorted(history) and history[0] > 0.25
    group_losses = torch.stack([F.cross_entropy(logits[group == g], y[group == g]) for g in range(4)])
    torch.testing.assert_close(loss, (q * group_losses).sum())


def test_groupdro_falls_back_to_domains_and_checks_task():
    method = create_method("groupdro")
    state = make_state(num_domains=3)
    method.setup(None, state)
    batch = domain_batch((4,), 3)
    method.loss(torch.randn(len(batch), 3), batch, state)
    assert state.q.shape == (3,)
    raw = Batch(x=batch.x, y=batch.y, domain=batch.domain + 1)  # ids 1..3 of 3 domains: not remapped
    fresh = make_state(num_domains=3)
    method.setup(None, fresh)
    with pytest.raises(DataError, match="0..2"):
        method.loss(torch.randn(len(batch), 3), raw, fresh)
    task = SimpleNamespace(protocol="supervised", num_classes=3, num_domains=1, num_groups=1, suite="s", case="c")
    with pytest.raises(Unsupported):
        method.check_task(task)
    method.check_task(SimpleNamespace(**{**vars(task), "num_groups": 4}))  # groups alone suffice


# -- VREx and IRM ---------------------------------------------------------------

def test_vrex_penalty_is_population_variance_of_domain_risks():
    torch.manual_seed(0)
    model = mlp(4, 3, hidden=(8,))
    batch = domain_batch((4,), 3, domains=(0, 0, 0, 1, 1, 2, 2, 2, 2, 2))
    with torch.no_grad():
        logits = model(batch.x)
    risks = torch.stack([F.cross_entropy(logits[batch.domain == d], batch.y[batch.domain == d]) for d in range(3)])
    torch.testing.assert_close(domain_risks(logits, batch.y, batch.domain), risks)
    method = create_method("vrex")
    logs = run_train_step(method, model, batch, torch.optim.SGD(model.parameters(), lr=0.1), make_state(step=5))
    torch.testing.assert_close(logs["penalty"], torch.var(risks, unbiased=False))
    torch.testing.assert_close(logs["loss"], risks.mean() + 10.0 * torch.var(risks, unbiased=False))


@pytest.mark.parametrize("name, lam", [("vrex", 10.0), ("irm", 100.0)])
def test_penalty_anneal_and_optimizer_reset(name, lam):
    torch.manual_seed(0)
    model = mlp(4, 3, hidden=(8,))
    batch = domain_batch((4,), 3)
    for reset, adam_steps in ((True, 1), (False, 2)):
        method = create_method(name, {"reset_optimizer": reset, "anneal_frac": 0.1})
        opt = torch.optim.Adam(model.parameters(), lr=1e-3)
        weights = []
        for step in (0, 1):  # anneal point is int(0.1 * 10) = 1
            logs = run_train_step(method, model, batch, opt, make_state(step=step))
            weights.append(logs["penalty_weight"].item())
            torch.testing.assert_close(logs["loss"], logs["nll"] + weights[-1] * logs["penalty"])
        assert weights == [1.0, lam]
        first = next(iter(model.parameters()))
        assert opt.state[first]["step"].item() == adam_steps


def test_irm_penalty_vanishes_at_optimal_scale():
    torch.manual_seed(0)
    z = torch.randn(12, 3, dtype=torch.float64) * 2
    y = torch.randint(3, (12,))

    def dscale(w: float) -> torch.Tensor:
        scale = torch.tensor(w, dtype=torch.float64, requires_grad=True)
        return torch.autograd.grad(F.cross_entropy(z * scale, y), scale)[0]

    lo, hi = 1e-3, 50.0  # the risk is convex in the scale: bisect its derivative
    assert dscale(lo) < 0 < dscale(hi)
    for _ in range(200):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if dscale(mid) < 0 else (lo, mid)
    # duplicate every sample so the even and odd halves are the same data
    twin = torch.repeat_interleave(z, 2, dim=0)
    y2 = torch.repeat_interleave(y, 2)
    assert abs(irm_penalty(twin * lo, y2).item()) < 1e-10
    assert irm_penalty(twin, y2).item() == pytest.approx(dscale(1.0).item() ** 2)
    # binary scores: the same identity, and a positive penalty off the optimum
    f = torch.randn(12, dtype=torch.float64)
    t = (torch.rand(12) < 0.5).long()
    scale = torch.tensor(1.0, dtype=torch.float64, requires_grad=True)
    g = torch.autograd.grad(F.binary_cross_entropy_with_logits(f * scale, t.double()), scale)[0]
    pen = irm_penalty(torch.repeat_interleave(f, 2), torch.repeat_interleave(t, 2))
    assert pen.item() == pytest.approx(g.item() ** 2) and pen.item() > 0


# -- CORAL --------------------------------------------------------------------

def test_coral_penalty_zero_for_identical_domains_positive_otherwise():
    a = torch.randn(8, 5)
    assert coral_distance(a, a.clone()).item() == 0.0
    assert coral_distance(a, a * 2 + 1).item() > 0
    centred = a - a.mean(0)
    cov = torch.cov(centred.T)  # same mean: only the covariance term, (cov − 4·cov)² on average
    torch.testing.assert_close(coral_distance(centred, 2 * centred), 9 * cov.pow(2).mean())
    torch.manual_seed(0)
    model = mlp(4, 3, hidden=(8,))
    x = torch.randn(6, 4)
    y = torch.randint(3, (6,))
    same = Batch(x=torch.cat([x, x]), y=torch.cat([y, y]), domain=torch.tensor([0] * 6 + [1] * 6))
    method = create_method("coral")
    logs = run_train_step(method, copy.deepcopy(model), same, torch.optim.SGD(model.parameters(), lr=0.0), make_state())
    assert logs["penalty"].item() == 0.0
    other = Batch(x=torch.cat([x, 3 * x + 1]), y=same.y, domain=same.domain)
    logs = run_train_step(method, copy.deepcopy(model), other, torch.optim.SGD(model.parameters(), lr=0.0),
                          make_state())
    assert logs["penalty"].item() > 0
    torch.testing.assert_close(logs["loss"], logs["nll"] + logs["penalty"])


# -- Mixup --------------------------------------------------------------------

def test_mix_is_a_convex_combination():
    g = torch.Generator().manual_seed(0)
    xi, xj = torch.rand(4, 1, 5, 5, generator=g), torch.rand(4, 1, 5, 5, generator=g)
    for lam in (0.0, 0.3, 0.9, 1.0):
        out = mix(xi, xj, lam)
        torch.testing.assert_close(out, lam * xi + (1 - lam) * xj)
        eps = 1e-6
        assert (out >= torch.minimum(xi, xj) - eps).all() and (out <= torch.maximum(xi, xj) + eps).all()


def test_mixup_loss_matches_hand_computation():
    torch.manual_seed(0)
    model = mlp(4, 3, hidden=(8,))
    batch = domain_batch((4,), 3, domains=(0, 0, 0, 0, 2, 2, 2))
    method = create_method("mixup")
    pairs = method.draw_pairs(batch, make_state(seed=7))
    assert len(pairs) == 2
    by_hand = []
    for i, j, lam in pairs:
        assert 0.0 <= lam <= 1.0 and len(i) == len(j) == 3
        assert batch.domain[i].unique().numel() == 1 and batch.domain[i][0] != batch.domain[j][0]
        out = model(lam * batch.x[i] + (1 - lam) * batch.x[j])
        by_hand.append(lam * F.cross_entropy(out, batch.y[i]) + (1 - lam) * F.cross_entropy(out, batch.y[j]))
    expected = torch.stack(by_hand).mean()
    torch.testing.assert_close(method.objective(model, batch, pairs), expected)
    # train_step draws the same pairs from the same generator state
    logs = run_train_step(method, model, batch, torch.optim.SGD(model.parameters(), lr=0.1), make_state(seed=7))
    torch.testing.assert_close(logs["loss"], expected.detach())


# -- UDIM ---------------------------------------------------------------------

def test_udim_warmup_is_sam():
    batch = domain_batch((1, 8, 8), 3)
    models = [cnn(), cnn()]
    logs = []
    for model, name in zip(models, ("sam", "udim")):
        opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
        logs.append(run_train_step(create_method(name), model, batch, opt, make_state(step=1, total_steps=10)))
    assert all(torch.equal(a, b) for a, b in zip(models[0].parameters(), models[1].parameters()))
    assert torch.equal(logs[0]["loss"], logs[1]["loss"])


@pytest.mark.parametrize("case", list(CASES))
def test_udim_input_perturbation_normalised_over_the_batch(case):
    # the reference normalises the input gradient with F.normalize(dim=0): per input element, across the batch
    factory, shape, k = CASES[case]
    model = factory()
    batch = domain_batch(shape, k)
    ce, grads, x_tilde = sharpness_gradients(model, batch.x, batch.y, rho=0.05, eta=0.3)
    per_element = (x_tilde - batch.x).norm(dim=0)
    torch.testing.assert_close(per_element, torch.full_like(per_element, 0.3))
    assert not x_tilde.requires_grad
    torch.testing.assert_close(ce, cross_entropy(model(batch.x), batch.y).detach())
    expected = torch.autograd.grad(cross_entropy(model(batch.x), batch.y), trainable(model))
    for g, e in zip(grads, expected):
        torch.testing.assert_close(g, e)
    assert cross_entropy(model(x_tilde), batch.y) > ce  # the step is uphill for the loss


def _per_sample_head_grads(model, logits, y):
    head = model.classifier[0] if isinstance(model.classifier, nn.Sequential) else model.classifier
    ws, bs = [], []
    for i in range(len(y)):  # per-sample gradients the slow way
        gw, gb = torch.autograd.grad(cross_entropy(logits[i:i + 1], y[i:i + 1]), [head.weight, head.bias],
                                     retain_graph=True)
        ws.append(gw.flatten())
        bs.append(gb.flatten())
    return torch.stack(ws), torch.stack(bs)


@pytest.mark.parametrize("case", list(CASES))
def test_udim_penalty_matches_the_reference_formula_by_autograd(case):
    factory, shape, k = CASES[case]
    model = factory()
    batch = domain_batch(shape, k)
    _, _, x_tilde = sharpness_gradients(model, batch.x, batch.y, rho=0.05, eta=2.0)
    x, y, n = torch.cat([batch.x, x_tilde]), torch.cat([batch.y, batch.y]), len(batch)
    feats = model.featurizer(x)
    logits = model.classifier(feats)
    gap = gradient_statistics_gap(feats, logits, y, n)
    w, b = _per_sample_head_grads(model, logits, y)
    grads = torch.cat([w, b], dim=1)
    centre = grads[:n].mean(0)
    v_clean, v_pert = (grads[:n] - centre).pow(2).mean(0), (grads[n:] - centre).pow(2).mean(0)
    # the reference: mean over the two sides of mean_j (v_side - (v_clean + v_pert) / 2)^2
    middle = (v_clean + v_pert) / 2
    var_term = ((v_clean - middle).pow(2).mean() + (v_pert - middle).pow(2).mean()) / 2
    norm_term = w[n:].pow(2).sum(1).mean() / w.shape[1] + b[n:].pow(2).sum(1).mean() / b.shape[1]
    torch.testing.assert_close(gap, var_term + norm_term)
    assert var_term.item() > 0
    same = gradient_statistics_gap(feats[:n].repeat(2, 1), logits[:n].repeat(2, *[1] * (logits.ndim - 1)), y, n)
    clean_norms = w[:n].pow(2).sum(1).mean() / w.shape[1] + b[:n].pow(2).sum(1).mean() / b.shape[1]
    torch.testing.assert_close(same, clean_norms)  # identical sides: no variance gap, only the norm term


def test_udim_without_penalty_is_sam_on_the_clean_batch():
    # the reference builds ε from the clean batch's gradient (before perturbing x): with λ = 0 UDIM is SAM
    batch = domain_batch((1, 8, 8), 3)
    models = [cnn(), cnn()]
    engine = StepEngine(torch.optim.SGD(models[0].parameters(), lr=0.5))
    engine.step(lambda: sam_step(models[0], batch.x, batch.y, engine, 0.05))
    run_train_step(create_method("udim", {"lam": 0.0}),
        models[1], batch, torch.optim.SGD(models[1].parameters(), lr=0.5), make_state(step=2))
    for a, b in zip(models[0].parameters(), models[1].parameters()):
        torch.testing.assert_close(a, b)


def test_udim_penalty_scope_batch_or_per_domain():
    model, batch = cnn(), domain_batch((1, 8, 8), 3)
    _, _, x_tilde = sharpness_gradients(model, batch.x, batch.y, rho=0.05, eta=2.0)
    per_domain = create_method("udim", {"penalty_scope": "domain"}).penalty(model, batch.x, x_tilde, batch.y,
                                                                            batch.domain)
    expected = 0.0
    for d in range(3):
        idx = (batch.domain == d).nonzero().squeeze(1)
        feats = model.featurizer(torch.cat([batch.x[idx], x_tilde[idx]]))
        expected = expected + gradient_statistics_gap(feats, model.classifier(feats), batch.y[idx].repeat(2), len(idx))
    torch.testing.assert_close(per_domain, expected)
    whole = create_method("udim").penalty(model, batch.x, x_tilde, batch.y, batch.domain)
    assert not torch.allclose(whole, per_domain)
    assert create_method("udim").hparams["penalty_scope"] == "batch"  # the reference scripts' choice, in records
    with pytest.raises(HparamError):
        create_method("udim", {"penalty_scope": "per-sample"})


def test_udim_after_warmup_logs_penalty():
    model = cnn()
    logs = run_train_step(create_method("udim", {"lam": 2.0}),
        model, domain_batch((1, 8, 8), 3), torch.optim.SGD(model.parameters(), lr=0.1), make_state(step=2))
    assert {"loss", "ce", "loss_perturbed", "penalty"} <= set(logs)
    assert torch.isfinite(logs["loss"]) and logs["penalty"] >= 0
    torch.testing.assert_close(logs["loss"], logs["ce"] + 2.0 * logs["penalty"])
