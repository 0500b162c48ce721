"""Barlow Twins, SimSiam, MoCo v3, NNCLR and SwAV: each loss against lightly's (a test-only dependency) or a hand
computation, one pretraining step through each method's own hooks, hparam checks and registration."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch
import torch.nn.functional as F

from baselines.ssl.barlow_twins import BarlowTwins, barlow_twins_loss, standardize
from baselines.ssl.moco_v3 import MoCoV3, moco_contrastive
from baselines.ssl.nnclr import NNCLR, SupportQueue, nnclr_contrastive
from baselines.ssl.simsiam import SimSiam, simsiam_loss
from baselines.ssl.swav import SwAV, sinkhorn, swapped_prediction
from harness.core.engine import StepEngine
from harness.core.functional import conv_encoder, ema_momentum
from harness.core.method import State
from harness.core.registry import create_method, get_method_class, method_entries
from harness.errors import HparamError
from harness.protocols.kit import RunContext
from harness.protocols.pretrain import Pretrainer, build_encoder
from harness.suites import ssl

METHODS = {"barlow-twins": BarlowTwins, "simsiam": SimSiam, "moco-v3": MoCoV3, "nnclr": NNCLR, "swav": SwAV}
# small heads, so a step on CPU takes milliseconds
SMALL = {"barlow-twins": dict(proj_hidden=32, proj_dim=32), "simsiam": dict(proj_hidden=32, proj_dim=32, pred_hidden=8),
         "moco-v3": dict(proj_hidden=32, proj_dim=16, pred_hidden=32),
         "nnclr": dict(proj_hidden=32, proj_dim=16, pred_hidden=32, queue_size=20),
         "swav": dict(proj_hidden=32, proj_dim=16, num_prototypes=12)}


def randn(*shape: int, seed: int) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


# -- losses ---------------------------------------------------------------------------------------


def test_barlow_twins_loss_is_zero_at_the_identity_and_counts_a_flipped_diagonal():
    # two standardised, uncorrelated columns (mean 0, biased variance 1): C = I for za == zb and C = -I for zb = -za
    za = torch.tensor([[1.0, 1.0], [1.0, -1.0], [-1.0, 1.0], [-1.0, -1.0]], dtype=torch.float64)
    torch.testing.assert_close(standardize(za, eps=0.0), za)
    assert barlow_twins_loss(za, 3 * za + 1, lambd=0.5).item() == pytest.approx(0.0, abs=1e-4)  # eps only
    assert barlow_twins_loss(za, -za, lambd=0.5).item() == pytest.approx(2 * (1 - (-1)) ** 2, rel=1e-4)
    # one correlated pair of dimensions: C = [[1, 1], [1, 1]] -> two off-diagonal entries of 1
    zc = torch.tensor([[1.0, 1.0], [1.0, 1.0], [-1.0, -1.0], [-1.0, -1.0]], dtype=torch.float64)
    assert barlow_twins_loss(zc, zc, lambd=0.25).item() == pytest.approx(0.25 * 2, rel=1e-4)


def test_barlow_twins_loss_equals_lightly():
    from lightly.loss import BarlowTwinsLoss

    for lambd, seed in ((5e-3, 0), (0.1, 1)):
        za, zb = randn(16, 8, seed=seed), randn(16, 8, seed=seed + 10) + 0.5 * randn(16, 8, seed=seed)
        expected = BarlowTwinsLoss(lambda_param=lambd)(za, zb)
        assert barlow_twins_loss(za, zb, lambd).item() == pytest.approx(expected.item(), rel=1e-5)


def test_simsiam_loss_equals_lightly_and_stops_the_gradient_at_z():
    from lightly.loss import NegativeCosineSimilarity

    p1, p2 = randn(8, 6, seed=2).requires_grad_(True), randn(8, 6, seed=3).requires_grad_(True)
    z1, z2 = randn(8, 6, seed=4).requires_grad_(True), randn(8, 6, seed=5).requires_grad_(True)
    ncs = NegativeCosineSimilarity()
    expected = 0.5 * (ncs(p1, z2) + ncs(p2, z1))
    loss = simsiam_loss(p1, p2, z1, z2)
    assert loss.item() == pytest.approx(expected.item(), rel=1e-6)
    loss.backward()
    assert z1.grad is None and z2.grad is None and p1.grad is not None
    assert simsiam_loss(z1, z2, z1, z2).item() == pytest.approx(-(F.cosine_similarity(z1, z2).mean().item()))


def test_moco_contrastive_matches_the_per_query_sum_and_keys_get_no_gradient():
    q, k = randn(5, 4, seed=6).double().requires_grad_(True), randn(5, 4, seed=7).double().requires_grad_(True)
    uq, uk = F.normalize(q.detach(), dim=1), F.normalize(k.detach(), dim=1)
    for tau in (0.2, 1.0):
        total = 0.0
        for i in range(5):
            den = sum(math.exp(float(uq[i] @ uk[j]) / tau) for j in range(5))
            total += -math.log(math.exp(float(uq[i] @ uk[i]) / tau) / den)
        assert moco_contrastive(q, k, tau).item() == pytest.approx(2 * tau * total / 5, rel=1e-9)
    moco_contrastive(q, k, 0.2).backward()
    assert k.grad is None and q.grad is not None


def test_nnclr_contrastive_matches_the_per_neighbour_sum():
    nn_z, p = randn(6, 4, seed=8).double(), randn(6, 4, seed=9).double().requires_grad_(True)
    un, up = F.normalize(nn_z, dim=1), F.normalize(p.detach(), dim=1)
    tau = 0.1
    total = 0.0
    for i in range(6):  # row i: the neighbour of image i against every prediction of the batch
        den = sum(math.exp(float(un[i] @ up[k]) / tau) for k in range(6))
        total += -math.log(math.exp(float(un[i] @ up[i]) / tau) / den)
    assert nnclr_contrastive(nn_z, p, tau).item() == pytest.approx(total / 6, rel=1e-9)


def test_support_queue_is_a_fifo_of_normalised_rows_and_returns_the_nearest_entry():
    queue = SupportQueue(size=5, dim=2, device="cpu")
    assert len(queue) == 0
    queue.push(torch.tensor([[2.0, 0.0], [0.0, 3.0], [-1.0, 0.0]]))
    assert len(queue) == 3
    torch.testing.assert_close(queue.bank[:3], torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]]))
    # the nearest entry by cosine, returned as stored (unit length); the query's scale does not matter
    near = queue.nearest(torch.tensor([[0.1, 5.0], [-3.0, 0.5], [4.0, -0.1]]))
    torch.testing.assert_close(near, torch.tensor([[0.0, 1.0], [-1.0, 0.0], [1.0, 0.0]]))
    queue.push(torch.tensor([[0.0, -1.0], [1.0, 1.0], [3.0, 4.0]]))  # 6 pushed into 5: the oldest row goes
    assert len(queue) == 5 and queue.ptr == 1
    torch.testing.assert_close(queue.bank[0], torch.tensor([0.6, 0.8]))
    assert not any(torch.equal(row, torch.tensor([1.0, 0.0])) for row in queue.bank)
    queue.push(randn(12, 2, seed=10))  # more than the queue holds: only the last 5 are kept
    torch.testing.assert_close(queue.bank.sum(0), F.normalize(randn(12, 2, seed=10), dim=1)[-5:].sum(0))


def test_sinkhorn_and_swapped_prediction_equal_lightly():
    from lightly.loss import SwaVLoss
    from lightly.loss.swav_loss import sinkhorn as lightly_sinkhorn

    s1, s2 = [torch.tanh(randn(16, 10, seed=s)) for s in (11, 12)]  # cosine-like scores in (-1, 1)
    torch.testing.assert_close(sinkhorn(s1, 0.05, 3), lightly_sinkhorn(s1, iterations=3, epsilon=0.05))
    ours = swapped_prediction([s1, s2], [sinkhorn(s1), sinkhorn(s2)], 0.1)
    theirs = SwaVLoss(temperature=0.1, sinkhorn_iterations=3, sinkhorn_epsilon=0.05)([s1, s2], [])
    assert ours.item() == pytest.approx(theirs.item(), rel=1e-5)


def test_sinkhorn_codes_are_distributions_that_spread_the_batch_over_the_prototypes():
    scores = torch.tanh(randn(12, 4, seed=13))
    codes = sinkhorn(scores, epsilon=0.05, iterations=200)
    torch.testing.assert_close(codes.sum(1), torch.ones(12))  # each sample's code sums to 1
    torch.testing.assert_close(codes.sum(0), torch.full((4,), 3.0), atol=1e-3, rtol=0)  # B / K per prototype
    # all samples closest to one prototype: the argmax would put the batch in one cluster, the codes do not
    lopsided = torch.tensor([[0.9, 0.1, 0.0, 0.0]]).repeat(8, 1) + 0.01 * randn(8, 4, seed=14)
    assert (sinkhorn(lopsided, iterations=50).sum(0) > 1.5).all()


# -- one pretraining step through the method's hooks ----------------------------------------------


def make_state(total_steps: int = 10) -> State:
    return State(step=0, epoch=0, total_steps=total_steps, device=torch.device("cpu"),
                 generator=torch.Generator().manual_seed(0), num_classes=2, num_domains=1, num_groups=1, num_train=16)


def setup_run(name: str, total_steps: int = 10, **overrides):
    """A method with small heads around a tiny conv encoder, its state, and a step engine as the protocol builds
    them (AdamW over the returned modules, the method's after_step after each update)."""
    method = create_method(name, {**SMALL[name], **overrides})
    torch.manual_seed(0)
    encoder = conv_encoder(3, [4, 8], [1, 2])
    state = make_state(total_steps)
    modules = method.build(encoder, encoder.feature_dim, state)
    params = list({id(p): p for m in modules for p in m.parameters() if p.requires_grad}.values())
    engine = StepEngine(torch.optim.AdamW(params, lr=1e-2), state=state,
                        after_step=[lambda: method.after_step(state)])
    for module in modules:
        module.train()
    return method, encoder, state, engine


def views(seed: int, n: int = 8) -> list[torch.Tensor]:
    return [randn(n, 3, 12, 12, seed=seed), randn(n, 3, 12, 12, seed=seed + 1)]


def run_step(method, state: State, engine: StepEngine, seed: int) -> dict:
    """One engine step of the method's loss on two fresh views (as the protocol's Pretrainer.step)."""
    batch = views(seed)
    return engine.step(lambda: method.pretrain_loss(batch, state))


def snapshot(module: torch.nn.Module) -> list[torch.Tensor]:
    return [p.detach().clone() for p in module.parameters()]


@pytest.mark.parametrize("name", list(METHODS))
def test_one_pretraining_step_has_a_finite_loss_and_moves_the_encoder(name):
    method, encoder, state, engine = setup_run(name)
    before = snapshot(encoder)
    logs = run_step(method, state, engine, 20)
    assert math.isfinite(float(logs["loss"])) and state.step == 1
    assert any(not torch.equal(a, b) for a, b in zip(before, snapshot(encoder)))


def test_moco_v3_keys_move_only_by_ema_and_carry_no_predictor():
    method, encoder, state, engine = setup_run("moco-v3")
    teacher, online = state.teacher, state.online
    assert all(not p.requires_grad for p in teacher.parameters()) and teacher.training
    optimised = {id(p) for group in engine.optimizer.param_groups for p in group["params"]}
    assert not optimised & {id(p) for p in teacher.parameters()}
    assert len(list(teacher.parameters())) == len(list(online.parameters()))  # f' and g' only
    for step in range(2):
        before, m = snapshot(teacher), ema_momentum(state, method.hparams["base_momentum"])
        run_step(method, state, engine, 30 + step)
        for a, b, s in zip(snapshot(teacher), before, snapshot(online)):
            torch.testing.assert_close(a, m * b + (1 - m) * s, rtol=0, atol=1e-6)
        assert any(not torch.equal(a, b) for a, b in zip(snapshot(teacher), before))


def test_nnclr_enqueues_view_one_after_each_update_and_draws_positives_from_the_queue():
    method, _, state, engine = setup_run("nnclr")
    queue: SupportQueue = state.queue
    assert len(queue) == 0
    run_step(method, state, engine, 40)  # empty queue: the projections are the positives
    assert len(queue) == 8
    torch.testing.assert_close(queue.bank[:8], F.normalize(state.to_enqueue, dim=1))
    run_step(method, state, engine, 42)
    assert len(queue) == 16
    run_step(method, state, engine, 44)
    assert len(queue) == 20 and queue.ptr == 4  # 24 pushed into 20
    # a positive is always a stored entry
    z1 = state.online(torch.cat(views(46))).chunk(2)[0]
    near = queue.nearest(z1)
    assert all(any(torch.equal(row, entry) for entry in queue.bank) for row in near)


def test_swav_prototypes_stay_unit_vectors_and_are_frozen_at_first():
    method, _, state, engine = setup_run("swav", total_steps=4, freeze_prototypes_frac=0.5)
    weight = state.prototypes.weight
    torch.testing.assert_close(weight.norm(dim=1), torch.ones(12))
    start = weight.detach().clone()
    for step in range(4):
        before = weight.detach().clone()
        run_step(method, state, engine, 50 + 2 * step)
        torch.testing.assert_close(weight.norm(dim=1), torch.ones(12))
        if step < 2:  # steps 0 and 1 of 4 are the frozen half: no gradient, no update, no weight decay
            assert weight.grad is None
            torch.testing.assert_close(weight.detach(), start, rtol=0, atol=1e-7)  # renormalising: rounding only
        else:
            assert (weight.detach() - before).abs().max() > 1e-4


def test_barlow_twins_and_simsiam_train_every_head():
    for name, heads in (("barlow-twins", ("projector",)), ("simsiam", ("online", "predictor"))):
        method, _, state, engine = setup_run(name)
        before = {h: snapshot(getattr(state, h)) for h in heads}
        run_step(method, state, engine, 60)
        for h in heads:
            assert any(not torch.equal(a, b) for a, b in zip(before[h], snapshot(getattr(state, h)))), (name, h)


# -- hparams and registry -------------------------------------------------------------------------


@pytest.mark.parametrize("name, bad", [
    ("barlow-twins", dict(lambd=-0.1)), ("barlow-twins", dict(proj_dim=0)),
    ("simsiam", dict(pred_hidden=0)),
    ("moco-v3", dict(tau=0.0)), ("moco-v3", dict(base_momentum=1.5)), ("moco-v3", dict(proj_hidden=-1)),
    ("nnclr", dict(tau=-1.0)), ("nnclr", dict(queue_size=0)),
    ("swav", dict(epsilon=0.0)), ("swav", dict(tau=-0.1)), ("swav", dict(num_prototypes=0)),
    ("swav", dict(sinkhorn_iters=0)), ("swav", dict(freeze_prototypes_frac=2.0)),
    ("swav", dict(temperature=0.1)), ("nnclr", dict(queue_size="big")),
])
def test_bad_hparams_raise_one_line_hparam_errors(name, bad):
    with pytest.raises(HparamError) as err:
        create_method(name, bad)
    assert "\n" not in str(err.value)


def test_the_methods_are_registered_as_ssl_pretrain_methods():
    entries = {e.name: e for e in method_entries("*")}
    for name, cls in METHODS.items():
        assert get_method_class(name) is cls and cls.name == name
        assert entries[name].family == "ssl" and entries[name].protocols == ("pretrain",)
        assert cls.num_views == 2 and not cls.frozen_initial_teacher


# -- through the pretrain protocol's trainer ------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_task():
    base = next(s for s in ssl.case_specs("smoke") if s.case == "mnist5k")
    spec = dataclasses.replace(base, params=dict(base.params, caps=dict(pretrain=32, train=32, val=16, test=16)),
                               budget=dataclasses.replace(base.budget, epochs=1, batch_size=16))
    return spec.build(spec)


@pytest.mark.parametrize("name", list(METHODS))
def test_the_pretrain_protocols_trainer_runs_two_steps(tiny_task, name):
    method = create_method(name, SMALL[name])
    ctx = RunContext.create(tiny_task, method, torch.device("cpu"), 0)
    encoder = build_encoder(method.encoder_spec(tiny_task.info["encoder"], tiny_task.sealed()))
    trainer = Pretrainer.create(ctx, method, encoder)
    before = snapshot(encoder)
    trainer.train_mode()
    x = tiny_task.data.x[tiny_task.splits["pretrain"].indices[:16]]
    losses = [trainer.step(x), trainer.step(x)]
    assert all(math.isfinite(v) for v in losses) and trainer.state.step == 2
    assert any(not torch.equal(a, b) for a, b in zip(before, snapshot(encoder)))
