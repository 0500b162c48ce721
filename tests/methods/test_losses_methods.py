"""Tests for the loss-family methods in baselines/losses."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch

from baselines.losses.ensloss import ensloss_derivatives
from baselines.losses.ensloss_mc import multiclass_margin
from baselines.losses.ldr_kl import ldr_margins
from harness.core.functional import signed_margin_targets
from harness.core.method import Batch, State
from harness.core.models import mlp
from harness.core.registry import create_method, method_names
from harness.errors import HparamError, Unsupported
from harness.running.runner import run_case
from harness.suites import losses as losses_suite

NAMES = ["bce", "hinge", "exponential", "focal", "ensloss", "ensloss-mc", "ldr-kl", "aldr-kl"]
MARGIN_LOSSES = ["bce", "hinge", "exponential", "focal", "ensloss", "ldr-kl"]
BINARY_ONLY, MULTICLASS_ONLY = {"ensloss"}, {"ensloss-mc"}
ONE_VS_ALL = ["bce", "hinge", "exponential"]
N, K = 64, 5


def make_state(seed: int = 0, num_train: int = N, num_classes: int = K) -> State:
    return State(step=0, epoch=0, total_steps=10, device=torch.device("cpu"),
                 generator=torch.Generator().manual_seed(seed), num_classes=num_classes,
                 num_domains=1, num_groups=1, num_train=num_train)


def make_data(binary: bool, seed: int = 0, scale: float = 2.0) -> tuple[torch.Tensor, Batch]:
    gen = torch.Generator().manual_seed(seed)
    if binary:
        logits = scale * torch.randn(N, generator=gen, dtype=torch.float64)
        y = torch.randint(0, 2, (N,), generator=gen)
    else:
        logits = scale * torch.randn(N, K, generator=gen, dtype=torch.float64)
        y = torch.randint(0, K, (N,), generator=gen)
    x = torch.zeros(N, 1)
    return logits, Batch(x=x, y=y, index=torch.arange(N))


def run_loss(name: str, logits: torch.Tensor, batch: Batch, seed: int = 0, **hp: object) -> torch.Tensor:
    method = create_method(name, hp)
    state = make_state(seed, num_classes=2 if logits.ndim == 1 else logits.shape[1])
    method.setup(None, state)
    return method.loss(logits, batch, state)


# -- registry -------------------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
def test_registered_and_created(name: str) -> None:
    assert name in method_names()
    method = create_method(name)
    assert method.name == name
    assert method.family == "loss"
    assert "supervised" in method.protocols


def test_bad_hparams_raise() -> None:
    with pytest.raises(HparamError):
        create_method("focal", {"gamma": "abc"})
    with pytest.raises(HparamError):
        create_method("focal", {"gama": 1.0})
    with pytest.raises(HparamError):
        create_method("focal", {"alpha": "abc"})
    with pytest.raises(HparamError):
        create_method("ensloss", {"lamb": 0.5})
    assert create_method("focal", {"gamma": "1.5"}).hparams["gamma"] == 1.5


def _task(num_classes: int) -> SimpleNamespace:
    return SimpleNamespace(protocol="supervised", num_classes=num_classes, num_domains=1, unlabeled_split=None,
                           suite="s", case="c")


def test_ensloss_is_binary_only_and_ensloss_mc_multiclass_only() -> None:
    ensloss, mc = create_method("ensloss"), create_method("ensloss-mc")
    ensloss.check_task(_task(2))
    with pytest.raises(Unsupported, match="binary-only"):
        ensloss.check_task(_task(10))
    with pytest.raises(Unsupported, match="ensloss-mc"):
        ensloss.loss(torch.zeros(4, 3), Batch(x=torch.zeros(4, 1), y=torch.zeros(4, dtype=torch.long)), make_state())
    mc.check_task(_task(10))
    with pytest.raises(Unsupported, match="ensloss itself"):
        mc.check_task(_task(2))
    assert "extension" in mc.multiclass_note and not ensloss.multiclass_note


PRIOR_BIAS = {"bce": -math.log(9), "hinge": -1.0, "exponential": -0.5 * math.log(9)}  # K = 10


@pytest.mark.parametrize("name", ONE_VS_ALL)
def test_one_vs_all_losses_start_at_their_prior_bias(name: str) -> None:
    method = create_method(name)
    model = mlp(6, 10, hidden=(8,))
    method.init_model(model, _task(10))
    torch.testing.assert_close(model.classifier.bias.detach(), torch.full((10,), PRIOR_BIAS[name]))
    assert "best constant for the 1:(K-1) prior" in method.multiclass_note  # the records' notes say so
    # the bias is the best constant score of a column whose positive rate is 1/K, under this loss
    b = torch.linspace(-4, 2, 6001, dtype=torch.float64)
    y = torch.tensor([1] + [0] * 9)
    scores = torch.stack([run_loss(name, torch.full((10,), float(v), dtype=torch.float64), Batch(
        x=torch.zeros(10, 1), y=y, index=torch.arange(10))) for v in b])
    assert float(b[scores.argmin()]) == pytest.approx(PRIOR_BIAS[name], abs=2e-3)
    binary = mlp(6, 2, hidden=(8,))
    before = binary.classifier[0].bias.detach().clone()
    method.init_model(binary, _task(2))
    assert torch.equal(binary.classifier[0].bias, before)  # a binary score needs no prior


@pytest.mark.parametrize("name", ["focal", "ldr-kl", "ensloss-mc"])
def test_softmax_style_losses_keep_the_default_bias(name: str) -> None:
    torch.manual_seed(0)
    model = mlp(6, 10, hidden=(8,))
    before = model.classifier.bias.detach().clone()
    create_method(name).init_model(model, _task(10))
    assert torch.equal(model.classifier.bias, before)


def test_exponential_clips_gradients_as_the_reference() -> None:
    assert create_method("exponential").budget_overrides == {"grad_clip": 10.0}
    assert all(not create_method(n).budget_overrides for n in NAMES if n != "exponential")


# -- EnsLoss derivatives --------------------------------------------------------


def _margins(seed: int = 1, n: int = 500) -> torch.Tensor:
    return 3.0 * torch.randn(n, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


@pytest.mark.parametrize("lam", [0.0, 0.5, -0.5])
def test_ensloss_derivatives_negative_bounded_monotone(lam: float) -> None:
    z = _margins()
    g = ensloss_derivatives(z, torch.Generator().manual_seed(0), lam)
    assert torch.isfinite(g).all()
    assert (g < 0).all()
    assert (g >= -1.0 - 1e-6 - 1e-12).all()
    by_margin = g[torch.argsort(z)]
    assert (by_margin.diff() >= 0).all()


def test_ensloss_derivatives_clip_at_minus_one() -> None:
    z = _margins(n=2000)
    g = ensloss_derivatives(z, torch.Generator().manual_seed(0))
    at_floor = (g + 1.0 + 1e-6).abs() < 1e-12
    # lam = 0: g~ = -exp(eps) < -1 iff eps > 0, so about half the draws are clipped to -1
    assert 0.4 < at_floor.double().mean() < 0.6
    # the clipped ones go to the smallest margins, none with z > 1 (those are decayed)
    assert z[at_floor].max() < z[~at_floor].min()


@pytest.mark.parametrize("lam", [0.0, 0.5])
def test_ensloss_derivatives_follow_the_procedure(lam: float) -> None:
    z = _margins()
    g = ensloss_derivatives(z, torch.Generator().manual_seed(4), lam)
    eps = torch.randn(z.shape, generator=torch.Generator().manual_seed(4), dtype=z.dtype)
    drawn = -torch.exp(eps) if lam == 0.0 else -(lam * eps + 1.0).clamp_min(0.0) ** (1.0 / lam)
    by_rank = drawn.sort().values.clamp_min(-1.0)  # most negative first, for the smallest margin
    expected = torch.empty_like(z)
    expected[torch.argsort(z)] = by_rank
    expected = torch.where(z > 1, expected / z, expected) - 1e-6
    torch.testing.assert_close(g, expected, rtol=0, atol=1e-15)


def test_ensloss_decay_above_margin_one() -> None:
    z = _margins()
    assert (z > 1).any() and (z <= 1).any()
    shrunk = z / (z.abs().max() + 1.0)  # same ranks, every |z| < 1: no decay applies
    g = ensloss_derivatives(z, torch.Generator().manual_seed(3))
    undecayed = ensloss_derivatives(shrunk, torch.Generator().manual_seed(3)) + 1e-6
    big = z > 1
    torch.testing.assert_close(g[big], undecayed[big] / z[big] - 1e-6, rtol=0, atol=1e-15)
    torch.testing.assert_close(g[~big], undecayed[~big] - 1e-6, rtol=0, atol=1e-15)


def test_ensloss_fresh_draw_each_step_and_seeded() -> None:
    z = _margins()
    gen = torch.Generator().manual_seed(0)
    first, second = ensloss_derivatives(z, gen), ensloss_derivatives(z, gen)
    assert not torch.equal(first, second)
    again = ensloss_derivatives(z, torch.Generator().manual_seed(0))
    assert torch.equal(first, again)


def test_ensloss_gradient_is_stopgrad_derivative() -> None:
    logits, batch = make_data(True)
    logits.requires_grad_(True)
    method = create_method("ensloss")
    method.loss(logits, batch, make_state(7)).backward()
    f, signs = signed_margin_targets(logits.detach(), batch.y)
    g = ensloss_derivatives(signs * f, torch.Generator().manual_seed(7))
    torch.testing.assert_close(logits.grad, g * signs / g.numel(), rtol=0, atol=1e-15)


def test_ensloss_mc_margin_and_gradient() -> None:
    logits, batch = make_data(False)
    z = multiclass_margin(logits, batch.y)
    for i in range(5):
        row, label = logits[i].tolist(), int(batch.y[i])
        assert z[i].item() == pytest.approx(row[label] - max(v for k, v in enumerate(row) if k != label))
    x = logits.clone().requires_grad_(True)
    create_method("ensloss-mc").loss(x, batch, make_state(3)).backward()
    g = ensloss_derivatives(z, torch.Generator().manual_seed(3))
    rival = logits.scatter(1, batch.y[:, None], float("-inf")).argmax(1)
    expected = torch.zeros_like(logits)
    expected[torch.arange(N), batch.y] = g / N
    expected[torch.arange(N), rival] = -g / N
    torch.testing.assert_close(x.grad, expected, rtol=0, atol=1e-15)
    assert (x.grad.gather(1, batch.y[:, None]) < 0).all()  # descent raises every label's logit


def test_ensloss_deterministic_bitwise() -> None:
    logits, batch = make_data(True)
    a = run_loss("ensloss", logits.float(), batch, seed=11)
    b = run_loss("ensloss", logits.float(), batch, seed=11)
    c = run_loss("ensloss", logits.float(), batch, seed=12)
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


# -- LDR-KL ---------------------------------------------------------------------


def _naive_ldr(logits: torch.Tensor, y: torch.Tensor, c: float, lam: float) -> float:
    total = 0.0
    for i in range(logits.shape[0]):
        row, label = logits[i].tolist(), int(y[i])
        terms = [math.exp((row[k] - row[label] + (c if k != label else 0.0)) / lam) for k in range(len(row))]
        total += lam * math.log(sum(terms) / len(row))
    return total / logits.shape[0]


@pytest.mark.parametrize("lam", [0.5, 1.0, 10.0])
def test_ldr_kl_matches_closed_form(lam: float) -> None:
    logits, batch = make_data(False)
    got = run_loss("ldr-kl", logits, batch, lam=lam, c=0.3)
    assert got.item() == pytest.approx(_naive_ldr(logits, batch.y, 0.3, lam), rel=1e-10)


def test_ldr_kl_binary_is_two_logits() -> None:
    f, batch = make_data(True)
    two = torch.stack([torch.zeros_like(f), f], dim=1)
    got = run_loss("ldr-kl", f, batch)
    assert got.item() == pytest.approx(_naive_ldr(two, batch.y, 0.1, 10.0), rel=1e-10)


def test_ldr_kl_limits() -> None:
    logits, batch = make_data(False)
    u = ldr_margins(logits, batch.y, 0.1)
    big = run_loss("ldr-kl", logits, batch, lam=1e6)
    torch.testing.assert_close(big, u.mean(dim=1).mean(), rtol=0, atol=1e-4)
    small = run_loss("ldr-kl", logits, batch, lam=1e-4)
    torch.testing.assert_close(small, u.max(dim=1).values.mean(), rtol=0, atol=1e-3)
    assert torch.isfinite(run_loss("ldr-kl", logits, batch, lam=1e-8))


def test_ldr_kl_large_logits_stable() -> None:
    logits, batch = make_data(False, scale=1e4)
    for name in ("ldr-kl", "aldr-kl"):
        x = logits.float().requires_grad_(True)
        loss = run_loss(name, x, batch, **({"lam": 0.01} if name == "ldr-kl" else {"lam0": 0.01}))
        loss.backward()
        assert torch.isfinite(loss) and torch.isfinite(x.grad).all()


# -- ALDR-KL --------------------------------------------------------------------


def test_aldr_kl_lambda_update_and_objective() -> None:
    logits, batch = make_data(False)
    lam0, alpha, c = 2.0, 2.0, 0.1
    method = create_method("aldr-kl", {"lam0": lam0, "alpha": alpha, "c": c})
    state = make_state(num_train=2 * N)
    method.setup(None, state)
    batch.index = torch.arange(N) * 2  # only even positions are in this batch
    loss = method.loss(logits, batch, state)

    u = ldr_margins(logits, batch.y, c)
    p = torch.softmax(u / lam0, dim=1)
    kl = (p * torch.log(p * K)).sum(dim=1)
    expected_lam = lam0 - lam0 * kl / (alpha * math.log(K))
    stored = state.aldr_lambda
    torch.testing.assert_close(stored[batch.index].double(), expected_lam, rtol=1e-6, atol=0)
    assert (stored[1::2] == lam0).all()
    assert (stored >= lam0 * (1 - 1 / alpha)).all()

    ldr = expected_lam * (torch.logsumexp(u / expected_lam[:, None], dim=1) - math.log(K))
    penalty = alpha * math.log(K) / (2 * lam0) * (expected_lam - lam0) ** 2
    torch.testing.assert_close(loss, (ldr - penalty).mean(), rtol=1e-6, atol=0)


def test_aldr_kl_no_update_without_grad_and_needs_index() -> None:
    logits, batch = make_data(False)
    method = create_method("aldr-kl")
    state = make_state()
    method.setup(None, state)
    with torch.no_grad():
        method.loss(logits, batch, state)
    assert (state.aldr_lambda == 10.0).all()
    batch.index = None
    with pytest.raises(Exception, match="batch.index"):
        method.loss(logits, batch, state)


def test_aldr_kl_adapts_lambda_through_the_protocol_and_differs_from_ldr_kl(cache_dir) -> None:
    """Issue 26 saw aldr-kl and ldr-kl give the same accuracy on every seed of mnist4v9-noise0.2. Not a wiring
    fault: trained by the supervised protocol, the per-sample lambda leaves lam0 and the scores differ (the
    accuracies can still tie; see the aldr-kl docstring for the measurement)."""
    spec = next(s for s in losses_suite.case_specs("smoke") if s.case == "mnist4v9-noise0.2")
    task = spec.build(spec)
    method = create_method("aldr-kl")
    seen: list[torch.Tensor] = []
    loss = method.loss

    def tracked(logits, batch, state):
        seen.append(state.aldr_lambda)  # the protocol's state, one tensor for the whole run
        return loss(logits, batch, state)

    method.loss = tracked
    aldr = run_case(spec, method, [0], torch.device("cpu"), task=task)
    ldr = run_case(spec, create_method("ldr-kl"), [0], torch.device("cpu"), task=task)
    lam = seen[-1]
    assert all(t is lam for t in seen)
    assert lam.min() < 9.5 and (lam >= 5.0).all()  # moved from lam0 = 10, above its floor lam0 (1 - 1/alpha)
    key = next(k for k in aldr.arrays[0] if k.endswith(":test.score"))
    assert not torch.allclose(torch.as_tensor(aldr.arrays[0][key]), torch.as_tensor(ldr.arrays[0][key]))


def test_aldr_kl_lambda_floor() -> None:
    logits, batch = make_data(False, scale=50.0)
    method = create_method("aldr-kl", {"alpha": 0.5, "lambda_min": 0.05})
    state = make_state()
    method.setup(None, state)
    loss = method.loss(logits, batch, state)
    assert torch.isfinite(loss)
    assert (state.aldr_lambda >= 0.05).all()


# -- every loss -----------------------------------------------------------------


@pytest.mark.parametrize("binary", [True, False])
@pytest.mark.parametrize("name", NAMES)
def test_finite_loss_and_gradient(name: str, binary: bool) -> None:
    logits, batch = make_data(binary)
    if name in (MULTICLASS_ONLY if binary else BINARY_ONLY):
        with pytest.raises(Unsupported):
            run_loss(name, logits, batch)
        return
    for dtype in (torch.float32, torch.float64):
        x = logits.to(dtype).requires_grad_(True)
        loss = run_loss(name, x, batch)
        loss.backward()
        assert loss.ndim == 0 and loss.dtype == dtype
        assert torch.isfinite(loss)
        assert x.grad is not None and torch.isfinite(x.grad).all()
        assert x.grad.abs().sum() > 0


@pytest.mark.parametrize(("name", "binary"), [(n, b) for n in MARGIN_LOSSES for b in (True, False)
                                              if b or n not in BINARY_ONLY])
def test_loss_decreases_when_margins_increase(name: str, binary: bool) -> None:
    logits, batch = make_data(binary)
    _, signs = signed_margin_targets(logits, batch.y)
    before = run_loss(name, logits, batch, seed=5)
    after = run_loss(name, logits + 0.5 * signs, batch, seed=5)  # every one-vs-all margin grows by 0.5
    assert after < before


def test_focal_reduces_to_bce_and_ce_at_gamma_zero() -> None:
    f, batch = make_data(True)
    torch.testing.assert_close(run_loss("focal", f, batch, gamma=0.0), run_loss("bce", f, batch))
    logits, batch_k = make_data(False)
    torch.testing.assert_close(run_loss("focal", logits, batch_k, gamma=0.0),
                               torch.nn.functional.cross_entropy(logits, batch_k.y))
    weighted = run_loss("focal", f, batch, alpha=0.25)
    assert torch.isfinite(weighted) and weighted < run_loss("focal", f, batch)


def test_margin_losses_match_formulas() -> None:
    f, batch = make_data(True)
    z = (2.0 * batch.y - 1.0) * f
    torch.testing.assert_close(run_loss("hinge", f, batch), torch.relu(1 - z).mean())
    torch.testing.assert_close(run_loss("exponential", f, batch), torch.exp(-z).mean())
    torch.testing.assert_close(run_loss("bce", f, batch), torch.log1p(torch.exp(-z)).mean())
    p_t = torch.sigmoid(z)
    torch.testing.assert_close(run_loss("focal", f, batch), (-(1 - p_t) ** 2 * torch.log(p_t)).mean())

    logits, batch_k = make_data(False)
    signs = signed_margin_targets(logits, batch_k.y)[1]
    z_k = signs * logits
    torch.testing.assert_close(run_loss("hinge", logits, batch_k), torch.relu(1 - z_k).mean())
    torch.testing.assert_close(run_loss("exponential", logits, batch_k), torch.exp(-z_k).mean())
    torch.testing.assert_close(run_loss("bce", logits, batch_k), torch.log1p(torch.exp(-z_k)).mean())
    p_y = torch.softmax(logits, dim=1).gather(1, batch_k.y[:, None]).squeeze(1)
    torch.testing.assert_close(run_loss("focal", logits, batch_k, gamma=1.5),
                               (-(1 - p_y) ** 1.5 * torch.log(p_y)).mean())
