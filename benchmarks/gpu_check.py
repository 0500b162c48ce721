"""The GPU check, in one go: step time against torch.utils.benchmark.Timer, precision and compile, kernels,
and one ``full``-profile case.

    python benchmarks/gpu_check.py --out gpu-check            # on a machine with a CUDA GPU
    python benchmarks/gpu_check.py --out /tmp/gc --device cpu --quick --skip-full   # the same code path on a CPU

Writes ``gpu_check.json`` (everything) and ``gpu_check.md`` (the tables for the
README) into ``--out``, and the cases' records under ``--out/records``. Each
section runs on its own: a failure is written down and the next section runs.

1. Environment: GPU name, memory, compute capability, driver, CUDA runtime, cuDNN, torch.
2. Step time: for a few smoke cases, the harness's step time (CUDA event
   pairs) against ``torch.utils.benchmark.Timer`` on the same step (goal:
   within 2%), and the case's peak memory (``max_memory_allocated``, reset per
   case).
3. Speed options on the CNN case: fp32, bf16, fp16 (grad scaler), and
   ``torch.compile`` (inductor) with fp32 and bf16: step time, compile time,
   accuracy.
4. ``--profile-kernels``: the CNN case's top 10 CUDA kernels, and a Chrome trace.
5. One ``full``-profile case: PACS with a ResNet-18 when ``$HARNESS_DATA``
   has PACS, else the embedded digits CNN at full budget.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import traceback
from pathlib import Path
from typing import Any

import torch

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from harness.core.environment import environment  # noqa: E402
from harness.core.registry import create_method  # noqa: E402
from harness.core.speed import SpeedOptions  # noqa: E402
from harness.running.profiling import check_step_time, gpu_info  # noqa: E402
from harness.running.runner import run_case  # noqa: E402
from harness.suites import case_specs, get_suite  # noqa: E402

STEP_CASES = [("losses", "mnist3v5-noise0", "erm"), ("shift", "digits_embedded-digits", "erm"),
              ("shift", "digits_embedded-digits", "sam")]
CNN = ("shift", "digits_embedded-digits", "erm")


def spec_of(suite: str, case: str, profile: str = "smoke"):
    return next(s for s in case_specs(get_suite(suite), profile) if s.case == case)


def run(suite: str, case: str, method: str, device: torch.device, out: Path, speed: SpeedOptions | None = None,
        profile: str = "smoke"):
    speed = speed or SpeedOptions()
    results = out / "records" / f"{speed.precision}-{speed.compile or 'eager'}"  # one folder per speed option set
    return run_case(spec_of(suite, case, profile), create_method(method), [0], device, results, speed=speed)


def section_env(device: torch.device, out: Path, args) -> dict[str, Any]:
    if device.type == "cuda":
        info = gpu_info(device)
    else:
        info = {"name": environment(device)["device"], "torch": torch.__version__}
    return {**info, "environment": environment(device)}


def section_step_time(device: torch.device, out: Path, args) -> list[dict[str, Any]]:
    rows = []
    for suite, case, method in STEP_CASES[:2] if args.quick else STEP_CASES:
        result = run(suite, case, method, device, out)
        t = result.record["timing"]
        check = check_step_time(result.benchmark_step, device, steps=20 if args.quick else 100,
                                min_run_time=0.3 if args.quick else 2.0)
        rows.append({"case": f"{suite}/{case}", "method": method, "record_step_s": t["step_time_median_s"],
                     "peak_memory_bytes": t["peak_memory_bytes"], "memory_kind": t["memory_kind"],
                     "agrees_within_2pct": abs(check["ratio"] - 1) <= 0.02, **check})
    return rows


def section_speed(device: torch.device, out: Path, args) -> list[dict[str, Any]]:
    variants = [SpeedOptions(), SpeedOptions(precision="bf16"), SpeedOptions(precision="fp16")]
    if not args.skip_compile:
        variants += [SpeedOptions(compile="inductor"), SpeedOptions(compile="inductor", precision="bf16")]
    rows = []
    for speed in variants:
        t0 = time.perf_counter()
        rec = run(*CNN, device, out, speed).record
        t = rec["timing"]
        rows.append({"precision": speed.precision, "compile": speed.compile, "step_s": t["step_time_median_s"],
                     "step_iqr_s": t["step_time_iqr_s"], "compile_time_s": t["compile_time_s"],
                     "samples_per_s": t["samples_per_s"], "peak_memory_bytes": t["peak_memory_bytes"],
                     "primary": rec["primary_metric"], "primary_mean": rec["metrics"][rec["primary_metric"]]["mean"],
                     "speed_fingerprint": t["speed_fingerprint"], "wall_s": time.perf_counter() - t0})
    return rows


def section_kernels(device: torch.device, out: Path, args) -> dict[str, Any]:
    result = run(*CNN, device, out, SpeedOptions(profile_kernels=10, profile_trace=True))
    return {**result.record["kernels"], "step_time_median_s": result.record["timing"]["step_time_median_s"],
            "trace_path": str(result.path.with_name(result.record["kernels"]["trace"]))}


def section_full(device: torch.device, out: Path, args) -> dict[str, Any]:
    data = Path(os.environ.get("HARNESS_DATA", REPO.parent / "shared" / "data"))
    suite, case = ("shift", "pacs-photo") if (data / "PACS").is_dir() else ("shift", "digits_embedded-digits")
    t0 = time.perf_counter()
    result = run(suite, case, "erm", device, out, profile="full")
    rec = result.record
    return {"case": f"{suite}/{case}", "profile": "full", "wall_s": time.perf_counter() - t0,
            "metrics": {k: v["mean"] for k, v in rec["metrics"].items()}, "timing": rec["timing"],
            "task": rec["task"], "record": str(result.path)}


def markdown(report: dict[str, Any]) -> str:
    env = report.get("env", {})
    lines = [f"GPU check on {env.get('name')} (driver {env.get('driver')}, CUDA {env.get('cuda_runtime')}, "
             f"torch {env.get('torch')})", "", "| case | method | harness step | Timer step | ratio | peak memory |",
             "|---|---|---|---|---|---|"]
    for r in report.get("step_time", []) if isinstance(report.get("step_time"), list) else []:
        lines.append(f"| {r['case']} | {r['method']} | {r['harness_median_s'] * 1e3:.3f} ms | "
                     f"{r['timer_median_s'] * 1e3:.3f} ms | {r['ratio']:.3f} | "
                     f"{r['peak_memory_bytes'] / 2**20:.1f} MiB |")
    lines += ["", "| precision | compile | step | compile time | samples/s | primary metric |",
              "|---|---|---|---|---|---|"]
    for r in report.get("speed", []) if isinstance(report.get("speed"), list) else []:
        ct = f"{r['compile_time_s']:.1f} s" if r["compile_time_s"] is not None else "-"
        lines.append(f"| {r['precision']} | {r['compile'] or 'eager'} | {r['step_s'] * 1e3:.3f} ms | {ct} | "
                     f"{r['samples_per_s']:.0f} | {r['primary']} {r['primary_mean']:.4f} |")
    k = report.get("kernels")
    if isinstance(k, dict) and "top" in k:
        lines += ["", f"Top kernels ({k['activity']}, {k['steps']} steps of {k['profiled_step_s'] * 1e3:.3f} ms):",
                  "", "| share | mean | calls | kernel |", "|---|---|---|---|"]
        lines += [f"| {r['share'] * 100:.1f}% | {r['mean_s'] * 1e6:.1f} us | {r['calls']} | `{r['name'][:80]}` |"
                  for r in k["top"]]
    full = report.get("full")
    if isinstance(full, dict) and "timing" in full:
        t = full["timing"]
        lines += ["", f"Full profile {full['case']}: {full['wall_s']:.0f} s wall, step "
                      f"{t['step_time_median_s'] * 1e3:.3f} ms, peak {t['peak_memory_bytes'] / 2**20:.0f} MiB, "
                      + ", ".join(f"{k} {v:.4f}" for k, v in full["metrics"].items() if v is not None)]
    errors = {k: v for k, v in report.items() if isinstance(v, dict) and "error" in v}
    lines += ["", *(f"section {k} failed: {v['error']}" for k, v in errors.items())]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True, help="folder for gpu_check.json, gpu_check.md and records")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--quick", action="store_true", help="fewer cases and steps (a dry run of the code path)")
    parser.add_argument("--skip-compile", action="store_true")
    parser.add_argument("--skip-full", action="store_true")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print("no CUDA device here; use --device cpu for a dry run", file=sys.stderr)
        return 2
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    sections = [("env", section_env), ("step_time", section_step_time), ("speed", section_speed),
                ("kernels", section_kernels)] + ([] if args.skip_full else [("full", section_full)])
    report: dict[str, Any] = {"device": str(device), "quick": args.quick}
    for name, fn in sections:
        t0 = time.perf_counter()
        try:
            report[name] = fn(device, out, args)
        except Exception as err:  # write it down and go on: one section must not cost the others
            report[name] = {"error": f"{type(err).__name__}: {err}", "traceback": traceback.format_exc()}
        print(f"[{name}] {time.perf_counter() - t0:.1f} s", flush=True)
        (out / "gpu_check.json").write_text(json.dumps(report, indent=2, default=str))
    (out / "gpu_check.md").write_text(markdown(report))
    print(markdown(report))
    return 1 if any(isinstance(v, dict) and "error" in v for v in report.values()) else 0


if __name__ == "__main__":
    raise SystemExit(main())
