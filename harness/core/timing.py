"""Step timing: synchronised wall time per training step, after warm-up.

On CUDA each step is bracketed by a pair of ``torch.cuda.Event``s, recorded on
the timed device's current stream (not the process's current device: an
xdist worker may train on ``cuda:1``), and the events are read once at the
end, so timing adds no per-step synchronisation.
On CPU ``time.perf_counter`` brackets the step (CPU ops are synchronous).
Peak memory is ``torch.cuda.max_memory_allocated`` on CUDA (reset per case)
and the peak resident set size on CPU. On Linux the runner resets the
kernel's high-water mark (``/proc/self/clear_refs``) at the start of each case,
so the CPU figure is that case's own peak (``memory_kind: case_peak_rss``);
where that is not possible it is the process's peak so far
(``process_peak_rss``), which never goes down between cases.

With ``--compile``, a step during which torch compiled (the first steps, a
recompile for a new batch shape) is left out of the statistics, like the
warm-up steps; its cost is reported as ``compile_time_s`` instead.
"""

from __future__ import annotations

import resource
import sys
import time
from dataclasses import dataclass, field

import numpy as np
import torch


@dataclass
class StepStats:
    median_s: float
    iqr_s: float
    steps: int
    samples_per_s: float
    peak_memory_bytes: int
    memory_kind: str
    compile_steps: int = 0  # steps left out because torch compiled during them
    # the kept per-step seconds the median is taken over (pytest-benchmark's stats are fed these, so both agree)
    durations: tuple[float, ...] = field(default=(), repr=False)

    def as_dict(self) -> dict:
        return dict(
            step_time_median_s=self.median_s, step_time_iqr_s=self.iqr_s, steps_timed=self.steps,
            samples_per_s=self.samples_per_s, peak_memory_bytes=self.peak_memory_bytes, memory_kind=self.memory_kind,
        )


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def peak_rss_bytes() -> int:
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(rss if sys.platform == "darwin" else rss * 1024)  # Linux reports KiB


_STATUS = "/proc/self/status"
_case_peak = False  # whether the RSS high-water mark was reset for the running case


def _vm_hwm_bytes() -> int | None:
    try:
        with open(_STATUS) as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def reset_peak_memory(device: torch.device) -> None:
    """Start a new peak-memory window (per case): CUDA's allocator stats, or Linux's RSS high-water mark."""
    global _case_peak
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        return
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        _case_peak = _vm_hwm_bytes() is not None
    except OSError:
        _case_peak = False


def peak_memory(device: torch.device) -> tuple[int, str]:
    """(bytes, kind) of the peak since :func:`reset_peak_memory` (see module docstring)."""
    if device.type == "cuda":
        return int(torch.cuda.max_memory_allocated(device)), "cuda_max_allocated"
    if _case_peak:
        hwm = _vm_hwm_bytes()
        if hwm is not None:
            return hwm, "case_peak_rss"
    return peak_rss_bytes(), "process_peak_rss"


_compiling = False  # set when torch starts compiling; cleared at every step start


def note_compilation(*_: object) -> None:
    """Torch started compiling (a callback of :class:`harness.core.speed.CompileClock`): the running step is not
    timed."""
    global _compiling
    _compiling = True


class StepTimer:
    """Collects per-step durations; the first ``warmup`` steps and steps that compiled are discarded."""

    def __init__(self, device: torch.device, warmup: int = 3) -> None:
        self.device, self.warmup = device, warmup
        self.cuda = device.type == "cuda"
        self._stream = torch.cuda.current_stream(device) if self.cuda else None
        self._pairs: list[tuple[torch.cuda.Event, torch.cuda.Event]] = []
        self._cpu: list[float] = []
        self._samples: list[int] = []
        self._compiled: list[int] = []  # indices of steps during which torch compiled
        self._t0 = 0.0
        self._start_event = None

    def start(self) -> None:
        global _compiling
        _compiling = False
        if self.cuda:
            self._start_event = torch.cuda.Event(enable_timing=True)
            self._start_event.record(self._stream)
        else:
            self._t0 = time.perf_counter()

    def stop(self, n_samples: int) -> None:
        if self.cuda:
            end = torch.cuda.Event(enable_timing=True)
            end.record(self._stream)
            self._pairs.append((self._start_event, end))
        else:
            self._cpu.append(time.perf_counter() - self._t0)
        if _compiling:
            self._compiled.append(len(self._samples))
        self._samples.append(n_samples)

    def durations(self) -> np.ndarray:
        if self.cuda:
            torch.cuda.synchronize(self.device)
            return np.array([s.elapsed_time(e) / 1e3 for s, e in self._pairs])
        return np.array(self._cpu)

    def summary(self) -> StepStats:
        d = self.durations()
        n = np.array(self._samples)
        keep = np.ones(len(d), dtype=bool)
        keep[self._compiled] = False
        if len(d) > self.warmup:
            keep[:self.warmup] = False
        compiled = int(np.count_nonzero(~keep[self.warmup:])) if len(d) > self.warmup else 0
        d, n = d[keep], n[keep]
        if len(d) == 0:
            return StepStats(float("nan"), float("nan"), 0, float("nan"), 0, "none", compiled)
        q1, med, q3 = np.percentile(d, [25, 50, 75])
        peak, kind = peak_memory(self.device)
        return StepStats(float(med), float(q3 - q1), int(len(d)), float(n.sum() / d.sum()), peak, kind, compiled,
                         tuple(float(x) for x in d))


def reference_workload_seconds(device: torch.device, repeats: int = 9) -> float:
    """Fastest of ``repeats`` runs of a fixed matmul+conv workload, the yardstick for machine-normalised times.

    Timed in the same process as the case, so ``step_time / reference`` can be compared across machines as a
    ratio. The minimum, not the median: other processes can only make a run slower, so the fastest run is the
    least disturbed estimate of the machine's speed (as ``timeit`` advises); a median of a few runs moved 3-6x
    between loaded and quiet moments here.
    """
    g = torch.Generator().manual_seed(0)
    a = torch.randn(256, 256, generator=g).to(device)
    x = torch.randn(16, 8, 28, 28, generator=g).to(device)
    w = torch.randn(16, 8, 3, 3, generator=g).to(device)
    times = []
    for _ in range(repeats + 1):
        synchronize(device)
        t0 = time.perf_counter()
        for _ in range(4):
            b = a @ a
            y = torch.nn.functional.conv2d(x, w, padding=1)
        synchronize(device)
        times.append(time.perf_counter() - t0)
        del b, y
    return float(min(times[1:]))
