"""The step engine: the one owner of an optimisation step, for every protocol.

A step is ``zero_grad → forward and loss under autocast → (scaled) backward → unscale → clip → optimizer step →
scheduler step → after-step hooks (EMA, DINO's centre) → loss check → step count``. Protocol loops and the
benchmark step call :meth:`StepEngine.step`; methods never call ``.backward()`` or ``optimizer.step()`` themselves.

The closure a step runs either returns the loss (a tensor, or a dict with ``"loss"``) and the engine
backpropagates it, or it calls :meth:`StepEngine.backward` itself, once or several times (SAM's two passes,
UDIM's penalty), and returns its logs: gradients accumulate and one update is applied. Directions that must not
touch ``.grad`` (SAM's ε, UDIM's input gradient) come from :meth:`StepEngine.grad`, which under fp16 returns
unscaled gradients, so no method needs to know the precision.

Precision is autocast around the closure (bf16, or fp16 with a :class:`torch.amp.GradScaler`); weights,
optimizer state and evaluation stay fp32. There is no patching of torch: the scale goes in at
:meth:`StepEngine.backward`. A budget (``max_steps``) is enforced here: an update past it raises
:class:`BudgetExceeded`, so a method cannot quietly train longer than the protocol allows.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from harness.core.speed import compile_model
from harness.errors import Diverged, MethodError

_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def autocast(device: torch.device | str, precision: str) -> contextlib.AbstractContextManager:
    """Autocast at ``precision`` on ``device`` (a no-op at fp32): what training steps and frozen forwards run under."""
    dtype = _DTYPES.get(precision)
    return contextlib.nullcontext() if dtype is None else torch.autocast(torch.device(device).type, dtype=dtype)


class BudgetExceeded(MethodError):
    """A method asked for more optimiser updates than the protocol's budget allows."""


# callables told of every applied update (the pytest plugin's per-case progress bar): one central hook, so no
# protocol loop needs its own progress code
_STEP_OBSERVERS: list[Callable[[StepEngine], None]] = []


@contextlib.contextmanager
def observe_steps(fn: Callable[[StepEngine], None]):
    """Call ``fn(engine)`` after every update any engine applies while the context is open."""
    _STEP_OBSERVERS.append(fn)
    try:
        yield fn
    finally:
        _STEP_OBSERVERS.remove(fn)


def _loss_of(out: Any) -> Tensor | None:
    if isinstance(out, Tensor):
        return out
    if isinstance(out, dict):
        return out.get("loss")
    return None


class StepEngine:
    """Runs optimisation steps of one optimizer under the run's precision, clipping, schedule and budget.

    ``state``, when given, has ``state.step`` advanced by every counted update (``count=True``), so methods read
    the global step as before. ``after_step`` callables run after each update (the method's EMA or centre update).
    ``max_steps`` bounds the updates of this engine; ``budget`` (a shared :class:`StepBudget`) bounds the
    updates of several engines together (an unlearning method's model and its auxiliary VAEs).
    """

    def __init__(self, optimizer: torch.optim.Optimizer, *, device: torch.device | str = "cpu",
                 precision: str = "fp32", grad_clip: float | None = None, scheduler: Any = None,
                 state: Any = None, seed: int | None = None, max_steps: int | None = None,
                 budget: StepBudget | None = None, after_step: Iterable[Callable[[], None]] = (),
                 count: bool = True) -> None:
        if precision not in ("fp32", *_DTYPES):
            raise ValueError(f"precision {precision!r}: choose fp32, bf16 or fp16")
        self.optimizer, self.scheduler, self.state, self.seed = optimizer, scheduler, state, seed
        self.device_type = torch.device(device).type
        self.precision, self.dtype = precision, _DTYPES.get(precision)
        self.scaler = torch.amp.GradScaler(self.device_type) if precision == "fp16" else None
        self.grad_clip = None if grad_clip is None else float(grad_clip)
        self.max_steps, self.budget, self.count = max_steps, budget, count
        self.after_step = list(after_step)
        self.steps = 0
        self._backward_calls = 0
        self._in_step = False

    # -- the parts a multi-pass method calls -------------------------------------------------------

    def autocast(self) -> contextlib.AbstractContextManager:
        """Autocast at the run's precision (a no-op at fp32)."""
        return autocast(self.device_type, self.precision)

    def backward(self, loss: Tensor) -> None:
        """Accumulate ∇loss into ``.grad`` (scaled under fp16); the update comes once, at the end of the step."""
        self._backward_calls += 1
        (loss if self.scaler is None else self.scaler.scale(loss)).backward()

    def grad(self, loss: Tensor, inputs: Sequence[Tensor] | Tensor, **kwargs: Any) -> tuple[Tensor | None, ...]:
        """``torch.autograd.grad`` of ``loss``, unscaled under fp16; ``.grad`` is left alone."""
        if self.scaler is None:
            return torch.autograd.grad(loss, inputs, **kwargs)
        scale = self.scaler.get_scale()
        grads = torch.autograd.grad(self.scaler.scale(loss), inputs, **kwargs)
        return tuple(None if g is None else g / scale for g in grads)

    def reset_optimizer_state(self) -> None:
        """Forget the optimizer's moments (DomainBed rebuilds Adam when IRM's penalty weight jumps)."""
        self.optimizer.state.clear()

    @property
    def lr(self) -> float:
        return float(self.optimizer.param_groups[0]["lr"])

    # -- the step ----------------------------------------------------------------------------------

    def step(self, closure: Callable[[], Any]) -> dict:
        """One update: zero the gradients, run ``closure`` under autocast, backpropagate, apply, check the loss.

        Returns the closure's logs as a dict (``{"loss": ...}`` when it returned a tensor).
        """
        self._check_budget()
        self.optimizer.zero_grad(set_to_none=True)
        self._backward_calls = 0
        self._in_step = True
        try:
            with self.autocast():
                out = closure()
            loss = _loss_of(out)
            if loss is None:
                raise MethodError("a training step must return its loss (a tensor, or a dict with 'loss')")
            if self._backward_calls == 0:
                if not loss.requires_grad:
                    raise MethodError("the step's loss does not depend on any trainable parameter "
                                      "(and the step called no engine.backward)")
                self.backward(loss)
        finally:
            self._in_step = False
        logs = dict(out) if isinstance(out, dict) else {"loss": loss}
        logs["loss"] = loss.detach()
        self.check(logs)  # before the update: a NaN step is reported with its own index and never applied
        self._apply()
        return logs

    def check(self, logs: dict) -> None:
        """A NaN or Inf loss stops the case (one scalar read per step: a sync on CUDA, as DomainBed's loss.item())."""
        value = float(logs["loss"])
        if not math.isfinite(value):
            raise Diverged(self.state.step if self.state is not None else self.steps, value, self.seed)

    def _check_budget(self) -> None:
        if self.max_steps is not None and self.steps >= self.max_steps:
            raise BudgetExceeded(f"the step budget of {self.max_steps} updates is spent; the method asked for more")
        if self.budget is not None:
            self.budget.take()

    def _params(self) -> list[Tensor]:
        return [p for group in self.optimizer.param_groups for p in group["params"] if p.grad is not None]

    def _apply(self) -> None:
        if self.scaler is not None:
            self.scaler.unscale_(self.optimizer)
        if self.grad_clip is not None:
            torch.nn.utils.clip_grad_norm_(self._params(), self.grad_clip)
        if self.scaler is not None:
            self.scaler.step(self.optimizer)  # skipped when the unscaled gradients hold inf/NaN
            self.scaler.update()
        else:
            self.optimizer.step()
        if self.scheduler is not None:
            self.scheduler.step()
        for hook in self.after_step:
            hook()
        self.steps += 1
        if self.count and self.state is not None:
            self.state.step += 1
        for observer in _STEP_OBSERVERS:
            observer(self)


class StepBudget:
    """A count of updates shared by several engines; taking one past ``total`` raises :class:`BudgetExceeded`."""

    def __init__(self, total: int, what: str = "updates") -> None:
        self.total, self.used, self.what = int(total), 0, what

    @property
    def left(self) -> int:
        return self.total - self.used

    def take(self) -> None:
        if self.used >= self.total:
            raise BudgetExceeded(f"the budget of {self.total} {self.what} is spent; the method asked for more")
        self.used += 1


def prepare_model(model: nn.Module, compile_backend: str | None) -> nn.Module:
    """``torch.compile`` the forward in place when the run asks for it (:func:`harness.core.speed.compile_model`)."""
    if compile_backend is None:
        return model
    return compile_model(model, compile_backend)


__all__ = ["BudgetExceeded", "StepBudget", "StepEngine", "autocast", "observe_steps", "prepare_model", "run_train_step"]


def run_train_step(method: Any, model: nn.Module, batch: Any, optimizer: torch.optim.Optimizer, state: Any,
             precision: str = "fp32") -> dict:
    """One engine step of ``method.train_step`` outside a protocol (tests, notebooks); ``state.step`` is not moved."""
    engine = StepEngine(optimizer, device=next(model.parameters()).device, precision=precision, state=state,
                        count=False)
    return engine.step(lambda: method.train_step(model, batch, engine, state))
