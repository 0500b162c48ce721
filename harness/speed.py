"""Speed options of a run: ``--compile``, ``--precision`` and ``--profile-kernels``.

They change how fast a case trains, not what the case is, so they stay out of
the case fingerprint (a bf16 run still counts on the accuracy tables) and go
into the record's timing section instead: ``precision``, ``compile``,
``compile_time_s`` and ``speed_fingerprint``, a hash of the case fingerprint
with the options that change step time. Step times are comparable only
between records with the same ``speed_fingerprint`` (and device).
Kernel profiling runs after the timed window, so it is not part of either.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from harness.errors import UsageError
from harness.timing import note_compilation

PRECISIONS = ("fp32", "bf16", "fp16")
_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


@dataclass(frozen=True)
class SpeedOptions:
    """How the training steps run. ``compile`` is a ``torch.compile`` backend name, or None for eager."""

    compile: str | None = None
    precision: str = "fp32"
    profile_kernels: int = 0  # top-K ops/kernels to profile after training; 0 = off
    profile_trace: bool = False  # also write a Chrome trace beside the record

    def __post_init__(self) -> None:
        if self.precision not in PRECISIONS:
            raise UsageError(f"--precision {self.precision!r}: choose one of {', '.join(PRECISIONS)}")
        if self.profile_kernels < 0:
            raise UsageError(f"--profile-kernels must be a positive count, got {self.profile_kernels}")
        if self.compile is not None:
            check_backend(self.compile)

    def fingerprint(self, case_fingerprint: str) -> str:
        """The speed fingerprint: the case plus every option that changes its step time."""
        blob = json.dumps({"case": case_fingerprint, "compile": self.compile, "precision": self.precision},
                          sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    def same_speed(self, timing: dict[str, Any]) -> bool:
        """Whether a record's timing section was measured with these options (old records: fp32, eager)."""
        return (timing.get("precision", "fp32"), timing.get("compile")) == (self.precision, self.compile)


def check_backend(name: str) -> None:
    import torch._dynamo

    known = torch._dynamo.list_backends(exclude_tags=())
    if name not in known:
        raise UsageError(f"--compile={name!r}: not a torch.compile backend; choose one of {', '.join(known)}")


def compile_model(model: nn.Module, backend: str) -> nn.Module:
    """Compile ``model``'s forward in place (``nn.Module.compile``), once.

    In place rather than ``torch.compile(model)``: parameter names and state
    dicts stay unprefixed, so checkpoint selection and the model store work as
    in eager mode. Compilation happens lazily, in the first steps; the timer's
    warm-up steps absorb it and :class:`CompileClock` measures it.
    """
    if getattr(model, "_compiled_call_impl", None) is None:
        model.compile(backend=backend)
    return model


class CompileClock:
    """Seconds spent compiling while active (Dynamo traces, lazy backward compiles), from torch's compile callbacks.

    ``seconds`` is None when inactive (``active=False`` spares importing Dynamo in eager runs) or when this
    torch has no compile callbacks to read.
    """

    def __init__(self, active: bool = True) -> None:
        self.active = active
        self.seconds: float | None = None
        self._t0 = 0.0
        self._handler: Any = None

    def _start(self, *_: Any) -> None:
        note_compilation()
        self._t0 = time.perf_counter()

    def _end(self, *_: Any) -> None:
        self.seconds = (self.seconds or 0.0) + time.perf_counter() - self._t0

    def __enter__(self) -> CompileClock:
        if not self.active:
            return self
        try:
            from torch._dynamo.callback import callback_handler
        except ImportError:
            return self
        self.seconds = 0.0
        self._handler = callback_handler
        callback_handler.register_start_callback(self._start)
        callback_handler.register_end_callback(self._end)
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._handler is not None:
            self._handler.remove_start_callback(self._start)
            self._handler.remove_end_callback(self._end)


class ScaledOptimizer:
    """The optimizer a method sees under fp16: ``step`` goes through the grad scaler (unscale, skip on inf/NaN).

    Everything else (``zero_grad``, ``param_groups``, ``state``) is the wrapped optimizer's. A method may step
    once per train step, as :class:`torch.amp.GradScaler` requires.
    """

    def __init__(self, optimizer: torch.optim.Optimizer, scaler: torch.amp.GradScaler) -> None:
        self.optimizer, self.scaler, self.stepped = optimizer, scaler, False

    def step(self, closure: Any = None) -> Any:
        if closure is not None:
            raise UsageError("--precision fp16: optimizer.step(closure) is not supported by the grad scaler")
        self.stepped = True
        return self.scaler.step(self.optimizer)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.optimizer, name)


@contextmanager
def scaled_backward(scaler: torch.amp.GradScaler) -> Iterator[None]:
    """Within the block, every ``loss.backward()`` is ``scaler.scale(loss).backward()``.

    Methods call ``backward`` themselves, so the scale goes in at
    ``torch.autograd.backward`` (what ``Tensor.backward`` calls) rather than into
    each method. Gradients taken with ``torch.autograd.grad`` are not scaled:
    the baselines use those for directions only (SAM's epsilon, UDIM's input
    perturbation), which a scale does not change.
    """
    original = torch.autograd.backward

    def backward(tensors: Tensor | list[Tensor], *args: Any, **kwargs: Any) -> None:
        roots = [tensors] if isinstance(tensors, Tensor) else list(tensors)
        return original([scaler.scale(t) for t in roots], *args, **kwargs)

    torch.autograd.backward = backward
    try:
        yield
    finally:
        torch.autograd.backward = original


class MixedPrecision:
    """Autocast around a method's train step (bf16 or fp16), with loss scaling for fp16 on any device.

    Weights, optimizer state and evaluation stay fp32: only the training
    step's forward and backward run in the lower precision.
    """

    def __init__(self, precision: str, device: torch.device) -> None:
        self.precision, self.dtype, self.device_type = precision, _DTYPES[precision], device.type
        self.scaler = torch.amp.GradScaler(device.type) if precision == "fp16" else None

    def train_step(self, method: Any, model: nn.Module, batch: Any, optimizer: torch.optim.Optimizer,
                   state: Any) -> dict:
        with torch.autocast(self.device_type, dtype=self.dtype):
            if self.scaler is None:
                return method.train_step(model, batch, optimizer, state)
            scaled = ScaledOptimizer(optimizer, self.scaler)
            with scaled_backward(self.scaler):
                logs = method.train_step(model, batch, scaled, state)
        if scaled.stepped:
            self.scaler.update()
        return logs


def mixed_precision(precision: str, device: torch.device) -> MixedPrecision | None:
    """None for fp32, so the hot loop's fp32 path is the plain method call."""
    return None if precision == "fp32" else MixedPrecision(precision, device)
