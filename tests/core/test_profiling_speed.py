"""--precision (autocast, fp16 loss scaling) and --compile, on the CPU; their place in the record."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from harness import Method, register_method
from harness.core.engine import StepEngine
from harness.core.method import Batch, State
from harness.core.registry import create_method
from harness.core.speed import SpeedOptions
from harness.errors import Diverged, UsageError
from harness.running.runner import run_case
from harness.suites import losses

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def bc_task():
    spec = next(s for s in losses.case_specs("smoke") if s.case == "breast_cancer-noise0")
    return spec, spec.build(spec)


@register_method("test-logit-dtype")
class LogitDtype(Method):
    """ERM that notes the dtype its logits arrive in."""

    family, protocols = "loss", frozenset({"supervised"})
    seen: set = set()

    def loss(self, logits, batch, state):
        LogitDtype.seen.add(logits.dtype)
        return super().loss(logits, batch, state)


def test_bf16_autocast_runs_the_step_in_bf16_and_is_recorded_as_a_speed_option(bc_task):
    spec, task = bc_task
    fp32 = run_case(spec, create_method("erm"), [0], CPU, task=task).record
    LogitDtype.seen = set()
    bf16 = run_case(spec, create_method("test-logit-dtype"), [0], CPU, task=task,
                    speed=SpeedOptions(precision="bf16")).record
    assert LogitDtype.seen == {torch.bfloat16}
    assert bf16["timing"]["precision"] == "bf16" and bf16["timing"]["compile"] is None
    assert fp32["timing"]["precision"] == "fp32" and fp32["timing"]["compile_time_s"] is None
    assert bf16["fingerprint"] == fp32["fingerprint"]  # same accuracy case ...
    assert bf16["timing"]["speed_fingerprint"] != fp32["timing"]["speed_fingerprint"]  # ... different speed figure
    assert 0.8 < bf16["metrics"]["test_acc"]["mean"] <= 1.0


class _Linear(Method):
    """Plain step that backpropagates through the engine: the loss scaling happens in the engine, not in it."""

    name = "test-linear"

    def __init__(self, seen: dict) -> None:
        super().__init__()
        self.seen = seen

    def train_step(self, model, batch, engine, state):
        loss = (model(batch.x).float() * state.sign).mean()
        engine.backward(loss)
        self.seen["grad"] = model.weight.grad.detach().clone()
        return {"loss": loss}


def _fp16_step(sign: float):
    torch.manual_seed(0)
    model = nn.Linear(4, 1, bias=False)
    engine = StepEngine(torch.optim.SGD(model.parameters(), lr=0.1), precision="fp16")
    batch = Batch(x=torch.randn(8, 4), y=torch.zeros(8, dtype=torch.long))
    seen: dict = {}
    w0 = model.weight.detach().clone()
    method, state = _Linear(seen), State(sign=sign)
    try:
        engine.step(lambda: method.train_step(model, batch, engine, state))
    except Diverged:
        seen["diverged"] = True
    return engine, model, w0, batch, seen


def test_fp16_scales_the_loss_in_backward_and_unscales_before_the_update():
    engine, model, w0, batch, seen = _fp16_step(1.0)
    true_grad = batch.x.mean(0, keepdim=True)  # d/dW of mean(W x)
    scale = 2.0 ** 16  # GradScaler's initial scale
    assert torch.allclose(seen["grad"], true_grad * scale, rtol=1e-2)  # x is rounded to fp16
    assert torch.allclose(model.weight.detach(), w0 - 0.1 * true_grad, rtol=1e-3, atol=1e-3)
    assert engine.scaler.get_scale() == scale  # no overflow: the scale stays until its growth interval


def test_fp16_skips_the_update_and_halves_the_scale_on_overflow():
    backward = torch.autograd.backward
    engine, model, w0, _, seen = _fp16_step(float("inf"))
    assert seen.get("diverged")  # an infinite loss stops the case before any update
    assert torch.equal(model.weight.detach(), w0) and engine.scaler.get_scale() == 2.0 ** 16
    # a finite loss whose scaled gradients overflow: the scaler skips the update and halves its scale
    torch.manual_seed(0)
    model = nn.Linear(4, 1, bias=False)
    engine = StepEngine(torch.optim.SGD(model.parameters(), lr=0.1), precision="fp16")
    w0 = model.weight.detach().clone()

    def overflowing_step():
        engine.backward(model(torch.full((2, 4), 6e4)).sum() * 1e30)
        return torch.tensor(1.0)

    engine.step(overflowing_step)
    assert torch.equal(model.weight.detach(), w0)
    assert engine.scaler.get_scale() == 2.0 ** 15
    assert torch.autograd.backward is backward  # nothing in torch is patched


def test_compiled_model_records_compile_time_apart_from_step_time(bc_task):
    spec, task = bc_task
    eager = run_case(spec, create_method("erm"), [0], CPU, task=task).record
    compiled = run_case(spec, create_method("erm"), [0], CPU, task=task,
                        speed=SpeedOptions(compile="aot_eager")).record
    t = compiled["timing"]
    assert t["compile"] == "aot_eager" and t["compile_time_s"] > 0
    # steps that compiled after warm-up (a recompile for the last, smaller batch) are left out of the statistics
    assert t["steps_compiling"] >= 1 and t["steps_timed"] + t["steps_compiling"] == eager["timing"]["steps_timed"]
    assert t["step_time_median_s"] < t["compile_time_s"]
    assert compiled["fingerprint"] == eager["fingerprint"]
    assert compiled["timing"]["speed_fingerprint"] != eager["timing"]["speed_fingerprint"]
    assert compiled["metrics"]["test_acc"]["mean"] == pytest.approx(eager["metrics"]["test_acc"]["mean"], abs=0.02)


@pytest.mark.slow
def test_inductor_compiles_on_cpu_with_the_system_compiler(bc_task):
    spec, task = bc_task
    rec = run_case(spec, create_method("erm"), [0], CPU, task=task, speed=SpeedOptions(compile="inductor")).record
    assert rec["timing"]["compile_time_s"] > 0 and 0.8 < rec["metrics"]["test_acc"]["mean"] <= 1.0


def test_resume_reruns_a_record_made_with_other_speed_options(bc_task, tmp_path):
    spec, task = bc_task
    run_case(spec, create_method("erm"), [0], CPU, tmp_path, task=task)
    assert run_case(spec, create_method("erm"), [0], CPU, tmp_path, resume=True, task=task).resumed
    again = run_case(spec, create_method("erm"), [0], CPU, tmp_path, resume=True, task=task,
                     speed=SpeedOptions(precision="bf16"))
    assert not again.resumed and again.record["timing"]["precision"] == "bf16"


def test_bad_speed_options_are_clear_errors():
    with pytest.raises(UsageError, match="--precision 'fp8': choose one of fp32, bf16, fp16"):
        SpeedOptions(precision="fp8")
    with pytest.raises(UsageError, match="--compile='suites/test_shift.py': not a torch.compile backend"):
        SpeedOptions(compile="suites/test_shift.py")
