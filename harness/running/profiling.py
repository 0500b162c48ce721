"""Kernel profiling (``--profile-kernels[=K]``) and the GPU step-time check.

:func:`profile_kernels` runs a window of extra training steps under
``torch.profiler`` *after* a case's seeds are trained and evaluated, so the
profiled steps are outside the timed window and after the metrics: profiling
changes neither the recorded step time nor the accuracy. On a GPU it ranks
CUDA kernels by self device time; on a CPU, CPU ops by self CPU time. The top K
go to the record's ``kernels`` section, each with calls, total and mean time
and its share of the profiled step's wall time.

:func:`check_step_time` compares the harness's step time (CUDA events, or
``perf_counter`` on a CPU) with ``torch.utils.benchmark.Timer`` on the same
step. ``benchmarks/gpu_check.py`` runs it on a GPU.

The CUDA branches were written without a GPU to test them on (the CPU
branches are tested); ``benchmarks/gpu_check.py`` is the script that checks
them on one.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.autograd import DeviceType
from torch.profiler import ProfilerActivity, profile

from harness.core.environment import cuda_driver_version
from harness.core.timing import StepTimer, synchronize

PROFILE_STEPS = 5  # at least this many profiled steps ...
PROFILE_SECONDS = 0.25  # ... and enough to fill this long, so sub-millisecond steps are not one scheduler tick
PROFILE_MAX_STEPS = 200
PROFILE_WARMUP = 2
_NAME_LIMIT = 200  # kernel names can be kilobytes of template arguments


def trace_path(record_path: Path) -> Path:
    """Where a record's Chrome trace goes: beside it, named so record globs (``*.json``) never pick it up."""
    return record_path.with_name(record_path.stem + ".trace.json.gz")


def _self_device_us(event: Any) -> float:
    return float(getattr(event, "self_device_time_total", getattr(event, "self_cuda_time_total", 0.0)))


def rank_events(averages: list[Any], cuda: bool) -> list[tuple[str, int, float]]:
    """(name, calls, self time in seconds) per kernel (CUDA) or op (CPU), largest first."""
    if cuda:
        kernels = [e for e in averages if getattr(e, "device_type", None) == DeviceType.CUDA]
        if not kernels:  # torch versions that keep kernels only under their launching ops
            kernels = [e for e in averages if _self_device_us(e) > 0]
        rows = [(e.key, int(e.count), _self_device_us(e) / 1e6) for e in kernels]
    else:
        rows = [(e.key, int(e.count), float(e.self_cpu_time_total) / 1e6) for e in averages
                if getattr(e, "device_type", DeviceType.CPU) == DeviceType.CPU and not e.key.startswith("ProfilerStep")]
    return sorted((r for r in rows if r[2] > 0), key=lambda r: -r[2])


def profile_kernels(step: Callable[[], None], device: torch.device, top: int = 10, steps: int | None = None,
                    warmup: int = PROFILE_WARMUP, trace: Path | None = None) -> dict[str, Any]:
    """Profile calls of ``step`` after ``warmup`` unprofiled ones; returns the record's ``kernels`` section.

    ``steps`` defaults to enough calls to fill :data:`PROFILE_SECONDS` (judged from the warm-up calls), within
    :data:`PROFILE_STEPS` .. :data:`PROFILE_MAX_STEPS`.
    """
    cuda = device.type == "cuda"
    synchronize(device)
    t0 = time.perf_counter()
    for _ in range(max(1, warmup)):
        step()
    synchronize(device)
    per_step = (time.perf_counter() - t0) / max(1, warmup)
    if steps is None:
        steps = int(min(PROFILE_MAX_STEPS, max(PROFILE_STEPS, PROFILE_SECONDS // max(per_step, 1e-6))))
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    with profile(activities=activities) as prof:
        t0 = time.perf_counter()
        for _ in range(steps):
            step()
        synchronize(device)
        wall = time.perf_counter() - t0
    step_s = wall / steps
    rows = rank_events(list(prof.key_averages()), cuda)
    out: dict[str, Any] = {
        "activity": "cuda" if cuda else "cpu",
        "ranked_by": "self device time" if cuda else "self cpu time",
        "steps": steps,
        "warmup_steps": warmup,
        "profiled_step_s": step_s,  # wall time per step under the profiler (it adds overhead; see timing for the real)
        "top": [{"name": name[:_NAME_LIMIT], "calls": calls, "total_s": total, "mean_s": total / calls,
                 "share": total / wall} for name, calls, total in rows[:top]],
        "trace": None,
    }
    if trace is not None:
        trace.parent.mkdir(parents=True, exist_ok=True)
        prof.export_chrome_trace(str(trace))  # gzip-compressed by the .gz suffix
        out["trace"] = trace.name
    return out


def kernel_lines(record: dict, limit: int = 60) -> list[str]:
    """The terminal summary's lines for one record's ``kernels`` section."""
    k = record.get("kernels")
    if not k:
        return []
    if not k["steps"]:
        return [f"{record['suite']}/{record['case']} {record['method']}: not profiled ({k.get('note')})"]
    head = (f"{record['suite']}/{record['case']} {record['method']}: top {len(k['top'])} {k['activity']} "
            f"{'kernels' if k['activity'] == 'cuda' else 'ops'} by {k['ranked_by']}, "
            f"{k['steps']} profiled steps of {k['profiled_step_s'] * 1e3:.2f} ms")
    lines = [head]
    for row in k["top"]:
        name = row["name"] if len(row["name"]) <= limit else row["name"][:limit - 1] + "…"
        lines.append(f"  {row['share'] * 100:5.1f}%  {row['mean_s'] * 1e6:9.1f} us x {row['calls']:<5d} {name}")
    return lines


# -- the GPU step-time check -----------------------------------------------------------------------


def check_step_time(step: Callable[[], None], device: torch.device, steps: int = 50, warmup: int = 5,
                    min_run_time: float = 1.0) -> dict[str, Any]:
    """The harness's step timer against ``torch.utils.benchmark.Timer`` on the same step.

    ``ratio`` is the harness median over the Timer's median; the goal is
    ``|ratio - 1| <= 0.02``. The Timer synchronises CUDA around its blocks
    itself; the harness reads CUDA event pairs once at the end.
    """
    from torch.utils.benchmark import Timer

    timer = StepTimer(device, warmup=warmup)
    for _ in range(steps + warmup):
        timer.start()
        step()
        timer.stop(1)
    durations = timer.durations()[warmup:]
    synchronize(device)
    measurement = Timer(stmt="step()", globals={"step": step}).blocked_autorange(min_run_time=min_run_time)
    harness_s, reference_s = float(np.median(durations)), float(measurement.median)
    return {
        "harness_median_s": harness_s,
        "harness_iqr_s": float(np.subtract(*np.percentile(durations, [75, 25]))),
        "timer_median_s": reference_s,
        "timer_iqr_s": float(measurement.iqr),
        "timer_runs": int(len(measurement.times) * measurement.number_per_run),
        "ratio": harness_s / reference_s,
        "clock": "cuda events" if device.type == "cuda" else "perf_counter",
    }


def gpu_info(device: torch.device) -> dict[str, Any]:
    """Name, memory, compute capability, driver and CUDA versions of a CUDA device."""
    props = torch.cuda.get_device_properties(device)
    return {"name": props.name, "total_memory_bytes": int(props.total_memory),
            "capability": f"{props.major}.{props.minor}", "driver": cuda_driver_version(),
            "cuda_runtime": torch.version.cuda, "cudnn": torch.backends.cudnn.version(), "torch": torch.__version__}
