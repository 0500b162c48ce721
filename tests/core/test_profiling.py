"""--profile-kernels (CPU path, and the CUDA ranking on stand-in events) and the step-time check."""

from __future__ import annotations

import gzip
import json
import time
from types import SimpleNamespace

import pytest
import torch
from torch.autograd import DeviceType

from harness import Method, register_method
from harness.core.registry import create_method
from harness.core.speed import SpeedOptions
from harness.records import iter_records
from harness.running.profiling import check_step_time, kernel_lines, profile_kernels, rank_events
from harness.running.runner import run_case
from harness.suites import losses

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def bc_task():
    spec = next(s for s in losses.case_specs("smoke") if s.case == "breast_cancer-noise0")
    return spec, spec.build(spec)


def test_profiled_case_records_top_ops_and_trace_without_touching_timing_or_metrics(bc_task, tmp_path):
    spec, task = bc_task
    plain = run_case(spec, create_method("erm"), [0], CPU, task=task).record
    result = run_case(spec, create_method("erm"), [0], CPU, tmp_path, task=task,
                      speed=SpeedOptions(profile_kernels=4, profile_trace=True))
    rec = result.record
    # the profiled steps run after the timed window and after evaluation
    assert rec["timing"]["steps_timed"] == plain["timing"]["steps_timed"]
    assert rec["metrics"] == plain["metrics"]
    k = rec["kernels"]
    assert k["activity"] == "cpu" and k["steps"] >= 5 and len(k["top"]) == 4
    totals = [row["total_s"] for row in k["top"]]
    assert totals == sorted(totals, reverse=True) and totals[-1] > 0
    for row in k["top"]:
        assert row["name"] and row["calls"] >= 1
        assert row["mean_s"] == pytest.approx(row["total_s"] / row["calls"])
        assert 0 < row["share"] <= 1
    assert sum(row["share"] for row in k["top"]) <= 1.0
    trace = result.path.with_name(k["trace"])
    assert trace.name == "erm__smoke.trace.json.gz"
    assert "traceEvents" in json.loads(gzip.decompress(trace.read_bytes()))
    assert [p for p, _ in iter_records(tmp_path)] == [result.path]  # the trace is not mistaken for a record
    lines = kernel_lines(rec)
    assert lines[0].startswith("losses/breast_cancer-noise0 erm: top 4 cpu ops") and len(lines) == 5


@register_method("test-profile-nan")
class NanAtStep2(Method):
    family, protocols = "loss", frozenset({"supervised"})

    def loss(self, logits, batch, state):
        loss = super().loss(logits, batch, state)
        return loss * float("nan") if state.step == 2 else loss


def test_a_diverged_case_says_why_it_has_no_profile(bc_task):
    spec, task = bc_task
    rec = run_case(spec, create_method("test-profile-nan"), [0], CPU, task=task,
                   speed=SpeedOptions(profile_kernels=3)).record
    assert rec["status"] == "diverged"
    assert rec["kernels"] == {"activity": "cpu", "steps": 0, "top": [], "note": "diverged"}
    assert kernel_lines(rec) == ["losses/breast_cancer-noise0 test-profile-nan: not profiled (diverged)"]


def _avg(key, count, device_type, self_cpu=0.0, self_device=0.0):
    return SimpleNamespace(key=key, count=count, device_type=device_type, self_cpu_time_total=self_cpu,
                           self_device_time_total=self_device)


def test_cuda_ranking_keeps_kernels_not_their_launching_ops():
    events = [
        _avg("aten::mm", 4, DeviceType.CPU, self_cpu=50.0, self_device=900.0),  # the launching op: not a kernel
        _avg("sm90_gemm_kernel", 4, DeviceType.CUDA, self_device=900.0),
        _avg("elementwise_kernel", 12, DeviceType.CUDA, self_device=1200.0),
        _avg("cudaLaunchKernel", 16, DeviceType.CPU, self_cpu=80.0),
    ]
    assert rank_events(events, cuda=True) == [("elementwise_kernel", 12, 1200e-6), ("sm90_gemm_kernel", 4, 900e-6)]
    assert rank_events(events, cuda=False)[0] == ("cudaLaunchKernel", 16, 80e-6)
    # torch builds that list kernels only under their ops: fall back to the ops' self device time
    fallback = [_avg("aten::mm", 4, DeviceType.CPU, self_cpu=50.0, self_device=900.0),
                _avg("aten::add", 2, DeviceType.CPU, self_cpu=70.0)]
    assert rank_events(fallback, cuda=True) == [("aten::mm", 4, 900e-6)]


def test_profile_window_defaults_to_a_quarter_second_of_steps():
    def step():
        time.sleep(0.02)

    out = profile_kernels(step, CPU, top=3)
    assert 5 <= out["steps"] <= 13 and out["profiled_step_s"] >= 0.02 and out["trace"] is None


def test_step_timer_agrees_with_torch_benchmark_timer_on_cpu():
    def step():  # wall time that a loaded machine cannot stretch much: both clocks must see ~20 ms
        time.sleep(0.02)

    out = check_step_time(step, CPU, steps=20, warmup=2, min_run_time=0.3)
    assert out["clock"] == "perf_counter" and out["timer_runs"] >= 10
    assert 0.02 <= out["harness_median_s"] < 0.04
    # wide: wake-up latency on this shared machine is milliseconds; this catches unit and bookkeeping errors,
    # the 2% goal is checked on a GPU by benchmarks/gpu_check.py
    assert out["ratio"] == pytest.approx(1.0, abs=0.3), out
