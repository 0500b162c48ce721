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
from dataclasses import dataclass
from typing import Any

from torch import nn

from harness.core.timing import note_compilation
from harness.errors import UsageError

PRECISIONS = ("fp32", "bf16", "fp16")  # autocast and the grad scaler live in harness.core.engine


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
