"""Tests of the methods that train on unlabeled target data: dann, pseudo-label, divdis."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from baselines.dg.dann import adaptation_weight, reverse_gradient
from baselines.dg.divdis import Heads, head_probs, marginal_kl, mutual_information, repulsion
from baselines.dg.pseudo_label import confident_pseudo_labels
from harness.core.engine import run_train_step
from harness.core.functional import cross_entropy
from harness.core.method import Batch, State
from harness.core.models import mlp, small_cnn
from harness.core.registry import create_method, method_entries
from harness.errors import HarnessError, Unsupported

NAMES = ["dann", "pseudo-label", "divdis"]


def make_state(step: int = 5, total_steps: int = 10, epoch: int = 0) -> State:
    return State(step=step, epoch=epoch, total_steps=total_steps, device=torch.device("cpu"),
                 generator=torch.Generator().manual_seed(0), num_classes=3, num_domains=2, num_groups=1,
                 num_train=100)


def make_batch(shape: tuple[int, ...] = (1, 8, 8), k: int = 3, n: int = 12, seed: int = 0) -> Batch:
    g = torch.Generator().manual_seed(seed)
    return Batch(x=torch.randn(n, *shape, generator=g), y=torch.randint(k, (n,), generator=g),
                 domain=torch.arange(n) % 2, unlabeled_x=torch.randn(n, *shape, generator=g) + 1.0)


def prepared(name: str, hparams: dict | None = None, binary: bool = False):
    torch.manual_seed(0)
    model = mlp(6, 2, hidden=(16,)) if binary else small_cnn(1, 3, width=8)
    method = create_method(name, hparams or {})
    task = SimpleNamespace(num_classes=2 if binary else 3)
    method.init_model(model, task)
    state = make_state()
    method.setup(task, state)
    return model, method, state


def task_like(unlabeled: str | None) -> SimpleNamespace:
    spec = SimpleNamespace(protocol="supervised")
    return SimpleNamespace(protocol="supervised", num_classes=3, num_domains=2, unlabeled_split=unlabeled,
                           suite="shift", case="c", spec=spec)


@pytest.mark.parametrize("name", NAMES)
def test_registered_and_need_target_data(name):
    entry = {e.name: e for e in method_entries("*")}[name]
    assert entry.family == "dg"
    method = create_method(name)
    assert method.uses_unlabeled and method.needs_unlabeled
    method.check_task(task_like("unlabeled"))
    with pytest.raises(Unsupported, match="unlabeled"):
        method.check_task(task_like(None))
    model, method, state = prepared(name)
    batch = make_batch()
    batch.unlabeled_x = None
    with pytest.raises(HarnessError, match="unlabeled_x"):
        run_train_step(method, model, batch, torch.optim.SGD(model.parameters(), lr=0.1), state)


@pytest.mark.parametrize("binary", [False, True])
@pytest.mark.parametrize("name", NAMES)
def test_one_step_finite_moves_and_deterministic(name, binary):
    results = []
    for _ in range(2):
        model, method, state = prepared(name, binary=binary)
        before = [p.detach().clone() for p in model.parameters()]
        batch = make_batch((6,), 2) if binary else make_batch()
        logs = run_train_step(method, model, batch, torch.optim.SGD(model.parameters(), lr=0.1), state)
        assert torch.isfinite(logs["loss"]) and not logs["loss"].requires_grad
        after = [p.detach().clone() for p in model.parameters()]
        assert any(not torch.equal(a, b) for a, b in zip(after, before))
        results.append(after)
    assert all(torch.equal(a, b) for a, b in zip(*results))


# -- DANN ---------------------------------------------------------------------

def test_gradient_reversal_negates_and_scales():
    x = torch.randn(5, 3, requires_grad=True)
    reverse_gradient(x, 0.7).pow(2).sum().backward()
    torch.testing.assert_close(x.grad, -0.7 * 2 * x.detach())
    assert adaptation_weight(0.0) == 0.0 and adaptation_weight(1.0) == pytest.approx(2 / (1 + math.exp(-10)) - 1)


def test_dann_discriminator_descends_while_features_ascend():
    model, method, state = prepared("dann", {"lam": 1.0})
    batch = make_batch()
    weight = adaptation_weight(state.step / state.total_steps)
    # the gradients that the domain loss alone sends to the discriminator and to the featurizer
    feats = model.featurizer(torch.cat([batch.x, batch.unlabeled_x]))
    is_target = torch.cat([torch.zeros(12), torch.ones(12)])
    disc = model.dann_discriminator
    domain_loss = nn.functional.binary_cross_entropy_with_logits(disc(feats).squeeze(1), is_target)
    feat_params = list(model.featurizer.parameters())
    g_feat = torch.autograd.grad(domain_loss, feat_params, retain_graph=True)
    g_disc = torch.autograd.grad(domain_loss, list(disc.parameters()))
    task_loss = cross_entropy(model(batch.x), batch.y)
    g_task = torch.autograd.grad(task_loss, feat_params)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    run_train_step(method, model, batch, opt, state)
    for (name, p), gt, gd in zip(model.featurizer.named_parameters(), g_task, g_feat):
        torch.testing.assert_close(p.detach(), before[f"featurizer.{name}"] - 0.1 * (gt - weight * gd))
    for (name, p), gd in zip(disc.named_parameters(), g_disc):
        torch.testing.assert_close(p.detach(), before[f"dann_discriminator.{name}"] - 0.1 * gd)


def test_dann_discriminator_is_part_of_the_model():
    model, _, _ = prepared("dann")
    assert any(k.startswith("dann_discriminator.") for k in model.state_dict())
    assert model(torch.randn(2, 1, 8, 8)).shape == (2, 3)  # inference is unchanged


# -- pseudo-label -------------------------------------------------------------

def test_confident_pseudo_labels_threshold():
    logits = torch.tensor([[4.0, 0.0, 0.0], [0.1, 0.0, 0.2], [0.0, 0.0, 5.0]])
    labels, confident = confident_pseudo_labels(logits, 0.9)
    assert labels.tolist() == [0, 2, 2] and confident.tolist() == [True, False, True]
    labels, confident = confident_pseudo_labels(torch.tensor([-4.0, 0.1, 3.0]), 0.9)
    assert labels.tolist() == [0, 1, 1] and confident.tolist() == [True, False, True]


def _pseudo_step(hparams: dict, step: int = 5):
    model, method, state = prepared("pseudo-label", hparams)
    state.step = step
    batch = make_batch()
    logs = run_train_step(method, model, batch, torch.optim.SGD(model.parameters(), lr=0.1), state)
    return model, logs, batch


def test_pseudo_label_without_confident_targets_is_erm():
    model, logs, batch = _pseudo_step({"threshold": 1.1})
    torch.manual_seed(0)
    erm = small_cnn(1, 3, width=8)
    run_train_step(create_method("erm"), erm, batch, torch.optim.SGD(erm.parameters(), lr=0.1), make_state())
    for a, b in zip(model.parameters(), erm.parameters()):
        torch.testing.assert_close(a, b)
    assert logs["confident_frac"] == 0.0


def test_pseudo_label_term_is_ce_against_own_argmax():
    torch.manual_seed(0)
    model = small_cnn(1, 3, width=8)
    batch = make_batch()
    with torch.no_grad():
        target_logits = model(batch.unlabeled_x)
        sup = cross_entropy(model(batch.x), batch.y)
        pseudo = cross_entropy(target_logits, target_logits.argmax(1))
    _, logs, _ = _pseudo_step({"threshold": 0.0, "weight": 2.0, "warmup_frac": 0.2, "ramp_frac": 0.2})
    torch.testing.assert_close(logs["loss"], sup + 2.0 * pseudo)
    _, warm, _ = _pseudo_step({"threshold": 0.0, "weight": 2.0}, step=0)  # inside the warm-up: no pseudo-labels
    torch.testing.assert_close(warm["loss"], sup)
    _, mid, _ = _pseudo_step({"threshold": 0.0, "weight": 2.0, "warmup_frac": 0.2, "ramp_frac": 0.6}, step=4)
    torch.testing.assert_close(mid["loss"], sup + 2.0 * 0.5 * pseudo)  # halfway up Lee's ramp (steps 2 to 6 of 10)


def test_pseudo_label_default_keeps_every_target_sample():
    _, logs, _ = _pseudo_step({}, step=9)  # Lee 2013: no confidence threshold
    assert logs["confident_frac"] == 1.0 and float(logs["pseudo_weight"]) == 3.0


# -- DivDis -------------------------------------------------------------------

def test_mutual_information_zero_for_independent_and_log2_for_identical_heads():
    p = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0], [0.0, 1.0]])
    q = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [0.0, 1.0]])
    assert mutual_information(p, q).item() == pytest.approx(0.0, abs=1e-9)
    assert mutual_information(p, p).item() == pytest.approx(math.log(2), rel=1e-6)
    assert repulsion(torch.stack([p, p, q], dim=1)).item() == pytest.approx(math.log(2) / 3, rel=1e-6)


def test_marginal_kl_penalises_one_class_heads():
    source = torch.full((6, 2, 2), 0.5)
    balanced = torch.tensor([[0.9, 0.1], [0.1, 0.9]]).repeat(3, 1).view(6, 1, 2).expand(6, 2, 2)
    one_class = torch.tensor([0.99, 0.01]).expand(6, 2, 2)
    assert marginal_kl(balanced, source).item() == pytest.approx(0.0, abs=1e-6)
    assert marginal_kl(one_class, source).item() > 0.5


def test_divdis_heads_disagree_on_target_after_training():
    torch.manual_seed(0)
    # two features each predict the label on the source; on the target they are independent
    n = 256
    y = torch.randint(2, (n,))
    source = torch.stack([2.0 * y - 1, 2.0 * y - 1], dim=1) + 0.1 * torch.randn(n, 2)
    a, b = torch.randint(2, (n,)), torch.randint(2, (n,))
    target = torch.stack([2.0 * a - 1, 2.0 * b - 1], dim=1) + 0.1 * torch.randn(n, 2)
    model = mlp(2, 2, hidden=(8,))
    method = create_method("divdis")
    method.init_model(model, SimpleNamespace(num_classes=2))
    state = make_state(step=0, total_steps=300)
    method.setup(None, state)
    opt = torch.optim.Adam(model.parameters(), lr=0.02)
    for step in range(300):
        state.step = step
        run_train_step(method, model, Batch(x=source, y=y, unlabeled_x=target), opt, state)
    with torch.no_grad():
        preds = (model.classifier.all(model.featurizer(target)).squeeze(-1) > 0).long()
        source_acc = ((model.classifier.all(model.featurizer(source)).squeeze(-1) > 0).long() == y[:, None])
    assert source_acc.float().mean(0).min() > 0.95  # every head fits the source
    assert (preds[:, 0] != preds[:, 1]).float().mean() > 0.3  # and they split on the target


def test_divdis_selects_the_head_with_best_training_accuracy():
    heads = Heads(4, 3, heads=2)
    state = make_state(epoch=0)
    create_method("divdis").setup(None, state)
    y = torch.tensor([0, 1, 2, 0])
    good = torch.nn.functional.one_hot(y, 3).float() * 5
    bad = torch.nn.functional.one_hot((y + 1) % 3, 3).float() * 5
    type(create_method("divdis"))._track_heads(heads, torch.stack([bad, good], dim=1), y, state)
    assert int(heads.active) == 1
    x = torch.randn(4, 4)
    torch.testing.assert_close(heads(x), heads.all(x)[:, 1])
    assert "active" in heads.state_dict()  # checkpoints keep the choice
    state.epoch = 1  # a new epoch starts a new count
    type(create_method("divdis"))._track_heads(heads, torch.stack([good, bad], dim=1), y, state)
    assert int(heads.active) == 0


def test_head_probs_binary_and_multiclass():
    p = head_probs(torch.zeros(3, 2, 1))
    torch.testing.assert_close(p, torch.full((3, 2, 2), 0.5))
    assert head_probs(torch.randn(3, 2, 4)).sum(-1).allclose(torch.ones(3, 2))
