"""--precision takes effect on every protocol: a method hook sees autocast active, and the record says what ran.

Covers all five protocols (supervised, open set, pretrain, probe, unlearning), plus the engine's own rules
(budget, no method-side updates).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import torch
from torch import nn

from harness import Method
from harness.core.digest import REPO
from harness.core.engine import BudgetExceeded, StepBudget, StepEngine
from harness.core.registry import create_method
from harness.core.speed import SpeedOptions
from harness.errors import MethodError, UsageError
from harness.protocols.kit import RunContext
from harness.protocols.probe import run_probe
from harness.running.runner import run_case
from harness.suites import losses

CPU = torch.device("cpu")
ROOT = REPO


def autocast_on() -> bool:
    return torch.is_autocast_enabled("cpu") and torch.get_autocast_dtype("cpu") == torch.bfloat16


class SeesAutocast(Method):
    """ERM that notes, inside its loss hook, whether autocast is active."""

    name, family, protocols = "test-sees-autocast", "loss", frozenset({"supervised"})
    seen: list[bool] = []

    def loss(self, logits, batch, state):
        type(self).seen.append(autocast_on())
        return super().loss(logits, batch, state)


def test_supervised_steps_run_under_bf16_autocast_and_the_record_says_so():
    spec = next(s for s in losses.case_specs("smoke") if s.case == "breast_cancer-noise0")
    SeesAutocast.seen = []
    record = run_case(spec, SeesAutocast(), [0], CPU, speed=SpeedOptions(precision="bf16")).record
    assert SeesAutocast.seen and all(SeesAutocast.seen)
    assert record["timing"]["precision"] == "bf16" and record["status"] == "ok"
    SeesAutocast.seen = []
    run_case(spec, SeesAutocast(), [0], CPU)
    assert SeesAutocast.seen and not any(SeesAutocast.seen)  # fp32: no autocast


def test_openset_trainer_steps_run_under_bf16_autocast(cache_dir):
    from tests.protocols.test_openset_protocol import SPEC

    class OpensetSees(SeesAutocast):
        name = "test-openset-sees-autocast"

    OpensetSees.seen = []
    record = run_case(SPEC, OpensetSees(), [0], CPU, speed=SpeedOptions(precision="bf16")).record
    assert OpensetSees.seen and all(OpensetSees.seen)
    assert record["timing"]["precision"] == "bf16" and record["status"] == "ok"


def test_probe_features_are_read_under_bf16_autocast_and_compile_is_refused(cache_dir):
    from tests.protocols.test_remote_sensing_probe import _task

    class FrozenSees(type(create_method("frozen"))):
        seen: list[bool] = []

        def embed(self, encoder, x):
            FrozenSees.seen.append(autocast_on())
            return super().embed(encoder, x)

    task, method = _task(), FrozenSees()
    out = run_probe(task, method, RunContext.create(task, method, CPU, 0, speed=SpeedOptions(precision="bf16")))
    assert FrozenSees.seen and all(FrozenSees.seen)
    assert all(v == v for v in out.metrics.values())  # features in bf16 still give finite metrics
    with pytest.raises(UsageError, match="--compile has no effect on the probe protocol"):
        run_probe(task, method, RunContext.create(task, method, CPU, 0, speed=SpeedOptions(compile="eager")))


class UnlearnSees(Method):
    """Fine-tuning on the retain set that notes, inside its step (the hook's loss), whether bf16 autocast is on."""

    name, family, protocols = "test-unlearn-sees-autocast", "unlearning", frozenset({"unlearn"})
    seen: list[bool] = []

    def unlearn(self, model, forget, retain, state):
        from harness.core.functional import cross_entropy

        def step(b):
            type(self).seen.append(autocast_on())
            return cross_entropy(model(b.x), b.y)

        state.optimize(model, state.engine(model.parameters(), 0.3), step, retain.forever())
        return model


def test_unlearning_steps_run_under_bf16_autocast_and_the_record_says_so(cache_dir):
    from tests.methods.test_unlearning import tiny_spec

    spec = tiny_spec()
    task = spec.build(spec)
    UnlearnSees.seen = []
    record = run_case(spec, UnlearnSees(), [0], CPU, task=task, speed=SpeedOptions(precision="bf16")).record
    assert UnlearnSees.seen and all(UnlearnSees.seen)
    assert len(UnlearnSees.seen) == record["run"]["unlearn_step_budget"][0]
    assert record["timing"]["precision"] == "bf16" and record["status"] == "ok"
    assert "bf16" in record["run"]["rte_basis"][0]  # the retraining is timed at the run's precision too
    UnlearnSees.seen = []
    run_case(spec, UnlearnSees(), [0], CPU, task=task)
    assert UnlearnSees.seen and not any(UnlearnSees.seen)  # fp32: no autocast


def test_pretrain_steps_run_under_bf16_autocast_and_compile_is_refused(cache_dir):
    from baselines.ssl.simclr import SimCLR
    from tests.protocols.test_ssl_protocol import tiny_spec

    class SimCLRSees(SimCLR):
        name = "test-simclr-sees-autocast"
        seen: list[bool] = []

        def pretrain_loss(self, views, state):
            type(self).seen.append(autocast_on())
            return super().pretrain_loss(views, state)

    spec = tiny_spec()
    task = spec.build(spec)
    record = run_case(spec, SimCLRSees(), [0], CPU, task=task, speed=SpeedOptions(precision="bf16")).record
    assert SimCLRSees.seen and all(SimCLRSees.seen)
    assert record["timing"]["precision"] == "bf16" and record["status"] == "ok"
    SimCLRSees.seen = []
    run_case(spec, SimCLRSees(), [0], CPU, task=task)
    assert SimCLRSees.seen and not any(SimCLRSees.seen)  # fp32: no autocast
    with pytest.raises(UsageError, match="--compile"):
        run_case(spec, SimCLRSees(), [0], CPU, task=task, speed=SpeedOptions(compile="eager"))


# -- the engine's rules ---------------------------------------------------------------------------------------


def test_engine_refuses_updates_past_its_budget_and_a_shared_budget():
    model = nn.Linear(2, 1)
    engine = StepEngine(torch.optim.SGD(model.parameters(), lr=0.1), max_steps=2)
    x = torch.ones(4, 2)
    for _ in range(2):
        engine.step(lambda: model(x).pow(2).mean())
    with pytest.raises(BudgetExceeded, match="budget of 2 updates"):
        engine.step(lambda: model(x).pow(2).mean())
    shared = StepBudget(3)
    a = StepEngine(torch.optim.SGD(model.parameters(), lr=0.1), budget=shared)
    b = StepEngine(torch.optim.SGD(model.parameters(), lr=0.1), budget=shared)
    a.step(lambda: model(x).sum())
    b.step(lambda: model(x).sum())
    a.step(lambda: model(x).sum())
    with pytest.raises(BudgetExceeded):
        b.step(lambda: model(x).sum())


def test_engine_accumulates_several_backward_passes_into_one_update():
    model = nn.Linear(2, 1, bias=False)
    nn.init.zeros_(model.weight)
    engine = StepEngine(torch.optim.SGD(model.parameters(), lr=1.0))
    x = torch.tensor([[1.0, 2.0]])

    def two_passes():
        first = model(x).sum()
        engine.backward(first)
        engine.backward(2 * model(x).sum())
        return {"loss": first}

    engine.step(two_passes)
    assert torch.allclose(model.weight.detach(), -3 * x)  # one step along 1·x + 2·x
    assert engine.steps == 1


def test_a_loss_without_gradient_is_one_clear_line():
    engine = StepEngine(torch.optim.SGD(nn.Linear(1, 1).parameters(), lr=0.1))
    with pytest.raises(MethodError, match="does not depend on any trainable parameter"):
        engine.step(lambda: torch.tensor(1.0))


INNER_COPY = "# not the model's weights"  # an inner step on a copy θ̃ (Fish, MLDG): the model moves only by the engine


def _updates_outside_the_engine(path: Path) -> list[str]:
    """Calls of ``.backward()`` / ``.step()`` / ``.zero_grad()`` on anything but the engine, in one file (a line
    marked :data:`INNER_COPY` steps an optimiser over a copy of the parameters and is left out)."""
    found, lines = [], path.read_text().splitlines()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) \
                and node.func.attr in ("backward", "step", "zero_grad") and INNER_COPY not in lines[node.lineno - 1]:
            owner = node.func.value
            if not (isinstance(owner, ast.Name) and owner.id == "engine"):
                found.append(f"{path.name}:{node.lineno} .{node.func.attr}()")
    return found


def test_no_method_file_updates_weights_or_imports_a_protocol():
    offenders = []
    for path in sorted((ROOT / "baselines").rglob("*.py")):
        offenders += _updates_outside_the_engine(path)
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("harness.protocols"):
                offenders.append(f"{path.relative_to(ROOT)}:{node.lineno} imports {node.module}")
    assert offenders == []


def test_the_check_sees_an_update_outside_the_engine(tmp_path):
    bad = tmp_path / "bad_method.py"
    bad.write_text("def f(loss, optimizer, engine):\n    loss.backward()\n    optimizer.step()\n"
                   "    engine.backward(loss)\n")
    assert _updates_outside_the_engine(bad) == ["bad_method.py:2 .backward()", "bad_method.py:3 .step()"]


def test_protocols_are_discovered_and_a_second_registration_is_loud():
    from harness.protocols import discovered, get_protocol, register_protocol

    assert set(discovered()) >= {"supervised", "openset", "unlearn", "pretrain", "probe"}
    run = get_protocol("supervised")
    assert register_protocol("supervised")(run) is run  # the same function again (a module reload) is fine

    def impostor(task, method, ctx):
        raise AssertionError("never runs")

    with pytest.raises(UsageError, match="protocol 'supervised' is registered twice"):
        register_protocol("supervised")(impostor)
    with pytest.raises(UsageError, match="unknown protocol 'supervisd'"):
        get_protocol("supervisd")
