"""Run one suite case for one method over seeds and write its record.

Plain Python, no pytest: the plugin, the CLI and the tests all call
:func:`run_case`.
"""

from __future__ import annotations

import math
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import numpy as np
import torch

from harness.core.digest import source_file
from harness.core.environment import environment
from harness.core.method import Method
from harness.core.registry import NAME_PATTERN
from harness.core.speed import CompileClock, SpeedOptions
from harness.core.task import CaseSpec, Task
from harness.core.timing import peak_memory, reference_workload_seconds, reset_peak_memory, synchronize
from harness.errors import Diverged, HparamError, UsageError
from harness.metrics.stats import summarize
from harness.protocols import RunContext, SeedResult, get_protocol
from harness.records import (
    check_writable,
    currency,
    load_record,
    record_lock,
    record_path,
    seed_arrays,
    unrecordable,
    write_record,
)
from harness.records.provenance import code_versions
from harness.running.profiling import profile_kernels, trace_path
from harness.suites import case_stream
from harness.suites.seeds import is_tuning_seed


@dataclass
class CaseResult:
    record: dict
    path: Path | None
    resumed: bool = False
    benchmark_step: Callable[[], None] | None = None
    # the timed steps of the seed whose median is the record's step_time_median_s (empty when none were kept)
    step_durations: tuple[float, ...] = ()
    arrays: dict[int, dict[str, np.ndarray]] = field(default_factory=dict)  # each seed's evidence, as written

    @property
    def diverged(self) -> bool:
        return self.record["status"] == "diverged"

    def primary(self) -> tuple[float | None, float | None]:
        m = self.record["metrics"].get(self.record["primary_metric"], {})
        return m.get("mean"), m.get("std")


@dataclass(frozen=True)
class SeedProgress:
    """Where a case stands: ``done`` of ``total`` seeds finished after ``elapsed_s``; ``seed`` is the one starting
    (None once all are done). The ETA is the mean time of the seeds done times the seeds left."""

    label: str
    done: int
    total: int
    seed: int | None
    elapsed_s: float

    @property
    def eta_s(self) -> float | None:
        return self.elapsed_s / self.done * (self.total - self.done) if self.done else None

    def short(self) -> str:
        """``seed 2/3 · 4m10s · ETA 4m05s`` (the seed running now, or ``3/3 seeds`` at the end)."""
        head = f"seed {self.done + 1}/{self.total}" if self.seed is not None else f"{self.done}/{self.total} seeds"
        eta = f" · ETA {duration(self.eta_s)}" if self.eta_s is not None and self.seed is not None else ""
        return f"{head} · {duration(self.elapsed_s)}{eta}"

    def line(self) -> str:
        return f"{self.label}: {self.short()}"


def duration(seconds: float) -> str:
    """``42s``, ``3m05s``, ``1h02m``."""
    s = int(round(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m"


def progress_printer(stream: TextIO | None = None, verbosity: int = 0) -> Callable[[SeedProgress], None] | None:
    """One line per seed (seed i/n, elapsed, ETA) on ``stream`` (default stderr), or None where nobody watches it:
    under ``-q`` (``verbosity`` < 0), in a pytest-xdist worker, or when the stream is not a terminal (CI logs, a
    file)."""
    stream = stream or sys.stderr
    if verbosity < 0 or os.environ.get("PYTEST_XDIST_WORKER") or not getattr(stream, "isatty", lambda: False)():
        return None

    def say(p: SeedProgress) -> None:
        stream.write(p.line() + "\n")
        stream.flush()

    return say


def summary_rows(results: list[CaseResult]) -> list[list[str]]:
    """One row per case for the end-of-run table (pytest summary and launch)."""
    rows = []
    for r in results:
        rec = r.record
        mean, std = r.primary()
        if mean is None:
            metric = "n/a"
        else:
            metric = f"{rec['primary_metric']} {mean:.4f}" + (f" ± {std:.4f}" if std is not None else "")
        step = rec["timing"]["step_time_median_s"]
        rows.append([rec["suite"], rec["case"], rec["method"], metric, len(rec["seeds"]),
                     f"{step * 1e3:.2f} ms" if step else "n/a", "resumed" if r.resumed else rec["status"]])
    return rows


def _finite(v: float) -> float | None:
    return float(v) if v is not None and math.isfinite(v) else None


def build_record(task: Task, method: Method, overrides: dict, seeds: list[int], results: list[SeedResult],
                 device: torch.device, diverged: Diverged | None, wall: float, reference: float,
                 run: dict[str, Any] | None = None, case_metrics: dict[str, float] | None = None) -> dict:
    names = sorted({k for r in results for k in r.metrics})
    metrics = {}
    for name in names:
        per_seed = [_finite(r.metrics.get(name, float("nan"))) for r in results]
        vals = [v for v in per_seed if v is not None]
        s = summarize(vals) if vals else {"mean": None, "std": None, "sem": None}
        metrics[name] = {"per_seed": per_seed, "mean": _finite(s["mean"]), "std": _finite(s["std"]),
                         "sem": _finite(s.get("sem")), "higher_is_better": task.higher_is_better_for(name)}
    per_domain: dict[str, Any] = {}
    for dom in sorted({k for r in results for k in r.per_domain}):
        vals = [r.per_domain[dom] for r in results if dom in r.per_domain]
        per_domain[dom] = {"per_seed": vals, "mean": float(sum(vals) / len(vals))}
    timing_runs = [r.timing for r in results if r.timing is not None and r.timing.steps > 0]
    if timing_runs:
        med = float(sorted(t.median_s for t in timing_runs)[len(timing_runs) // 2])
        timing = {
            "step_time_median_s": med,
            "step_time_iqr_s": float(max(t.iqr_s for t in timing_runs)),
            "samples_per_s": float(sum(t.samples_per_s for t in timing_runs) / len(timing_runs)),
            "steps_timed": int(sum(t.steps for t in timing_runs)),
        }
    else:
        timing = {"step_time_median_s": None, "step_time_iqr_s": None, "samples_per_s": None}
    timing["peak_memory_bytes"], timing["memory_kind"] = peak_memory(device)
    timing["reference_time_s"] = reference
    timing["normalised_step_time"] = (timing["step_time_median_s"] / reference
                                      if timing["step_time_median_s"] and reference else None)
    timing["wall_time_s"] = wall
    return {
        "schema_version": 1,
        "suite": task.suite,
        "case": task.case,
        "method": method.name,
        "family": method.family,
        "profile": task.spec.profile,
        "status": "diverged" if diverged else "ok",
        "diverged": None if diverged is None else {"step": diverged.step, "seed": seeds[len(results)],
                                                   "value": str(diverged.value)},
        "seeds": seeds[: len(results) + (1 if diverged else 0)],
        "primary_metric": task.primary_metric,
        "higher_is_better": task.higher_is_better,
        "metrics": metrics,
        "per_domain": per_domain,
        "timing": timing,
        "hparams": method.hparams,
        "hparam_overrides": overrides,
        "fingerprint": task.fingerprint,
        "data_fingerprint": task.data.fingerprint,
        "task": task.spec.describe(),
        "model_selection": task.selection_rule + (" (+ oracle test-domain validation as oracle_*)"
                                                  if task.oracle_split else ""),
        "notes": list(task.notes) + ([f"{method.name}: {method.multiclass_note}"]
                                     if method.multiclass_note and task.num_classes > 2 else []),
        "environment": environment(device),
        "case_metrics": {k: {"value": _finite(v), "higher_is_better": task.higher_is_better_for(k)}
                         for k, v in (case_metrics or {}).items()},
        "run": {**(run or {}), **_seed_info(results), **method_origin(type(method))},
        "task_info": task.info,
        "code": code_versions(type(method), task.spec),
    }


DATA_FACTS = ("user_folder", "skipped_files", "skipped_count")  # copied from the data's meta into run.data
USER_MODULE_PREFIX = "harness_user_methods."  # the module name harness.core.registry.load_method_module gives a file


def method_origin(cls: type) -> dict[str, str]:
    """``{"method_module": absolute path}`` for a method loaded with ``--method-module PATH`` (empty otherwise),
    so ``harness report`` loads the method again from its records
    (:func:`harness.records.currency.load_recorded_methods`) without the user passing the module a second time."""
    if not cls.__module__.startswith(USER_MODULE_PREFIX):
        return {}
    path = source_file(cls)
    return {"method_module": str(Path(path).resolve())} if path is not None else {}


def _seed_info(results: list[SeedResult]) -> dict[str, Any]:
    """Per-seed facts the protocol reported (model, selected epochs, ...): a list per name, one entry per seed."""
    keys = sorted({k for r in results for k in r.info})
    out: dict[str, Any] = {k: [r.info.get(k) for r in results] for k in keys}
    if any(r.selected_epoch >= 0 for r in results):
        out["selected_epoch"] = [r.selected_epoch for r in results]
    return out


def existing_record(path: Path, spec: CaseSpec, seeds: list[int], method_cls: type[Method],
                    speed: SpeedOptions | None = None) -> dict | None:
    """The record at ``path`` when ``--resume`` may keep it: finished, with these seeds and speed options, and
    current (:mod:`harness.records.currency`) for this case and method class."""
    if not path.is_file():
        return None
    record = load_record(path)
    same_run = record["seeds"] == seeds and record["status"] == "ok" \
        and (speed or SpeedOptions()).same_speed(record["timing"])
    if same_run and currency.judge(record, spec, method_cls).current:
        return record
    return None


def match_inductor_to_aten() -> None:
    """Inductor's CPU vector width to ATen's pinned capability (harness/cpu_numerics.py): left to itself it emits
    AVX-512 code on an AVX-512 machine against ATen's AVX2 kernels, and the compiled model's loss went NaN within
    ten steps (torch 2.14, breast cancer, erm); at 256 bits it trains as eager does."""
    import torch._inductor.config as inductor_config  # torch's compiler: loaded only when a run compiles

    if torch.backends.cpu.get_cpu_capability() == "AVX2":
        inductor_config.cpp.simdlen = 256


def preflight(method: Method, overrides: dict) -> None:
    """What the record needs of the method, checked before any training (the record is written after it): a name
    the record schema accepts and hparams its JSON can hold. The CLI and the plugin check hparams at parse time
    already; this covers Python callers of :func:`run_case`."""
    if not NAME_PATTERN.match(method.name or ""):
        raise UsageError(f"method {method.name or type(method).__name__!r} has no registered name matching "
                         f"{NAME_PATTERN.pattern}: register it with @register_method(\"my-method\") so its record "
                         "can be written")
    for where, values in (("hparam", method.hparams), ("hparam override", overrides)):
        for key, value in values.items():
            why = unrecordable(value)
            if why is not None:
                raise HparamError(f"{where} {key}={value!r} for {method.name!r} {why}; refused before training")


def run_case(spec: CaseSpec, method: Method, seeds: list[int], device: torch.device,
             results_dir: Path | None = None, overrides: dict | None = None, resume: bool = False,
             task: Task | None = None, postprocess: Callable[[dict], Any] | None = None,
             data_path: str = "auto", speed: SpeedOptions | None = None,
             progress: Callable[[SeedProgress], None] | None = None) -> CaseResult:
    """Build the task (unless given), check support, run every seed, write the record and its evidence.

    ``progress`` is told where the case stands before each seed and at the end (:class:`SeedProgress`; e.g.
    :func:`progress_printer`); the pytest plugin shows it on its per-case bar.

    Raises :class:`harness.errors.Unsupported` or ``DataMissing`` before any
    work; a divergence still writes a ``diverged`` record and is reported by
    the returned result, never raised. With ``results_dir`` the folder is
    checked writable and the record's lock is taken before any training
    (:class:`harness.errors.RecordLocked` when another run holds it).
    """
    overrides = overrides or {}
    speed = speed or SpeedOptions()
    method.check_protocol(spec.protocol)
    if results_dir is not None:
        preflight(method, overrides)
    if results_dir is None:
        return _run_case(spec, method, seeds, device, None, overrides, resume, task, postprocess, data_path, speed,
                         progress)
    if any(is_tuning_seed(s) for s in seeds):
        raise UsageError(f"seeds {[s for s in seeds if is_tuning_seed(s)]} are tuning seeds (harness.suites.seeds): "
                         "settings are chosen on them, so no record reports them")
    path = record_path(check_writable(results_dir), spec.suite, spec.case, method.name, spec.profile, overrides)
    with record_lock(path):
        return _run_case(spec, method, seeds, device, path, overrides, resume, task, postprocess, data_path, speed,
                         progress)


def _run_case(spec: CaseSpec, method: Method, seeds: list[int], device: torch.device, path: Path | None,
              overrides: dict, resume: bool, task: Task | None, postprocess: Callable[[dict], Any] | None,
              data_path: str, speed: SpeedOptions,
              progress: Callable[[SeedProgress], None] | None = None) -> CaseResult:
    if resume and path is not None:
        old = existing_record(path, spec, seeds, type(method), speed)
        if old is not None:
            return CaseResult(old, path, resumed=True)
    reset_peak_memory(device)
    task = task or spec.build(spec)
    method.check_task(task.sealed())
    protocol = get_protocol(task.protocol)
    reference = reference_workload_seconds(device)
    results: list[SeedResult] = []
    diverged = None
    run: dict[str, Any] = {}
    t0 = time.perf_counter()
    label = f"{method.name}-{spec.case}"
    if speed.compile == "inductor" and device.type == "cpu":
        match_inductor_to_aten()
    with CompileClock(active=speed.compile is not None) as compile_clock:
        for seed in seeds:
            if progress is not None:
                progress(SeedProgress(label, len(results), len(seeds), seed, time.perf_counter() - t0))
            ctx = RunContext.create(task, method, device, case_stream(task.spec, seed), data_path, speed=speed,
                                    index=seed)
            run = ctx.describe()
            try:
                results.append(protocol(task, method, ctx))
            except Diverged as err:
                diverged = err
                break
            finally:
                del ctx
    wall = time.perf_counter() - t0
    if progress is not None:
        progress(SeedProgress(label, len(results), len(seeds), None, wall))
    for r in results[:-1]:  # only the last seed's model is kept for pytest-benchmark
        r.train_step = None
    case_metrics = task.case_metrics_fn(results) if task.case_metrics_fn is not None and results and not diverged \
        else None
    run["seed_streams"] = [case_stream(task.spec, seed) for seed in seeds]
    meta = getattr(task.data, "meta", None) or {}
    facts = {k: meta[k] for k in DATA_FACTS if k in meta}
    if facts:  # a user's folder: which folder and --dataset value, what was left out or could not be decoded
        run["data"] = facts
    if method.budget_overrides:
        run["method_budget"] = dict(method.budget_overrides)
    record = build_record(task, method, overrides, seeds, results, device, diverged, wall, reference, run,
                          case_metrics)
    record["timing"].update(precision=speed.precision, compile=speed.compile,
                            compile_time_s=compile_clock.seconds,
                            steps_compiling=sum(r.timing.compile_steps for r in results if r.timing is not None),
                            speed_fingerprint=speed.fingerprint(task.fingerprint))
    if speed.profile_kernels:
        step = results[-1].train_step if results and not diverged else None
        # after every seed and its evaluation: the profiled steps touch neither the timed window nor the metrics
        record["kernels"] = profile_kernels(step, device, speed.profile_kernels,
                                            trace=trace_path(path) if speed.profile_trace and path else None) \
            if step is not None else {"activity": device.type, "steps": 0, "top": [],
                                      "note": "diverged" if diverged else "the protocol offers no train step"}
    if postprocess is not None:  # user hook, e.g. extra environment fields
        postprocess(record)
    arrays = {seed: r.arrays for seed, r in zip(seeds, results) if r.arrays}
    if path is not None:
        write_record(record, path, seed_arrays(arrays))
    step = None
    if results and results[-1].train_step is not None:
        inner = results[-1].train_step

        def step() -> None:
            inner()
            synchronize(device)

    median = record["timing"]["step_time_median_s"]
    durations = next((r.timing.durations for r in results if r.timing is not None and r.timing.steps > 0
                      and r.timing.median_s == median), ())
    return CaseResult(record, path, benchmark_step=step, step_durations=durations, arrays=arrays)
