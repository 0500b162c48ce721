"""Checking records against their evidence and against fresh runs, and regenerating stale ones.

* :func:`check_files`: every record's schema and internal consistency, and its
  evidence file (present, sha256 as recorded, readable without pickle).
* :func:`recompute`: each seed's metrics recomputed from the evidence with the
  task's ``recompute_fn`` (and the case metrics with ``case_metrics_fn``),
  compared with the record within :data:`RECOMPUTE_ATOL`.
* :func:`rerun` / :func:`agreement`: a record run again with its seeds,
  profile and hparams. On the same machine (same device name, torch and Python
  versions) the per-seed values must be identical: CPU runs with one seed are
  deterministic. Across machines floating-point differences change training
  trajectories, so each metric's mean must agree within
  ``max(CROSS_MACHINE_ATOL, 3 * sqrt(sem_old^2 + sem_new^2))``.
* :func:`regenerate`: re-runs the records ``leaderboard --check`` calls stale
  (other task fingerprint or other code) with their recorded seeds, profile
  and hparams, in place.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from harness.errors import DataMissing, HarnessError, RecordError, Unsupported
from harness.records import iter_records, load_evidence, load_record

RECOMPUTE_ATOL = 1e-9
CROSS_MACHINE_ATOL = 0.02


@dataclass
class Outcome:
    path: Path
    ok: bool
    message: str


def spec_for(record: dict):
    """The current case spec of a record (by case name), or None when the suite no longer has the case."""
    from harness.suites import case_specs, get_suite

    suite = get_suite(record["suite"])
    if getattr(suite, "DATASET_OPTION", False):
        return suite.spec_for_record(record) if hasattr(suite, "spec_for_record") else None
    return next((s for s in case_specs(suite, record["profile"]) if s.case == record["case"]), None)


def check_files(results_dir: Path, paths: list[Path] | None = None) -> list[Outcome]:
    """Schema, consistency and evidence of every record (or of ``paths``); one outcome per file."""
    files = paths if paths else [p for p in sorted(Path(results_dir).rglob("*.json")) if not p.name.startswith(".")]
    out = []
    for path in files:
        try:
            record = load_record(path)
            if record.get("evidence"):
                evidence = load_evidence(path, record)
                n = len(record["seeds"]) - (record["status"] == "diverged")
                missing = [s for s in record["seeds"][:n] if s not in evidence]
                if missing:
                    raise RecordError(f"{path}: evidence has no arrays for seed(s) {missing}")
                out.append(Outcome(path, True, "ok"))
            else:
                out.append(Outcome(path, True, "ok (no evidence file: made before evidence was recorded)"))
        except RecordError as err:
            out.append(Outcome(path, False, str(err)))
    known = {p.with_suffix(".npz") for p in files}
    for npz in sorted(Path(results_dir).rglob("*.npz")) if not paths else []:
        if npz not in known:
            out.append(Outcome(npz, False, f"{npz}: evidence file without a record"))
    return out


def _differs(a: float | None, b: float | None, atol: float) -> bool:
    if a is None or b is None:
        return (a is None) != (b is None)
    return not math.isclose(a, b, rel_tol=0.0, abs_tol=atol)


def recompute(path: Path, record: dict, tasks: dict | None = None) -> Outcome:
    """Recompute a record's per-seed and case metrics from its evidence (see the module docstring)."""
    from harness.protocols import SeedResult

    if not record.get("evidence"):
        return Outcome(path, True, "skipped: no evidence file")
    spec = spec_for(record)
    if spec is None or spec.fingerprint != record["fingerprint"]:
        return Outcome(path, False, "cannot recompute: the case definition changed since the run (stale record)")
    tasks = {} if tasks is None else tasks
    if spec.fingerprint not in tasks:
        try:
            tasks[spec.fingerprint] = spec.build(spec)
        except DataMissing as err:
            return Outcome(path, True, f"skipped: {err}")
    task = tasks[spec.fingerprint]
    if task.recompute_fn is None:
        return Outcome(path, False, f"suite {record['suite']!r} sets no Task.recompute_fn: metrics not verifiable")
    evidence = load_evidence(path, record)
    problems = []
    n = len(record["seeds"]) - (record["status"] == "diverged")
    results = []
    for i, seed in enumerate(record["seeds"][:n]):
        got = task.recompute_fn(evidence[seed])
        stored = {name: m["per_seed"][i] for name, m in record["metrics"].items()}
        for name in sorted(set(stored) | set(got)):
            if name not in got:
                problems.append(f"seed {seed}: {name} is in the record but recompute_fn does not return it")
            elif name not in stored:
                problems.append(f"seed {seed}: recompute_fn returns {name}, which the record lacks")
            elif _differs(stored[name], got[name], RECOMPUTE_ATOL):
                problems.append(f"seed {seed}: {name} recorded {stored[name]!r}, recomputed {got[name]!r}")
        results.append(SeedResult(metrics=stored, arrays=evidence[seed]))
    if record.get("case_metrics") and task.case_metrics_fn is not None:
        got = task.case_metrics_fn(results)
        for name, m in record["case_metrics"].items():
            if name not in got or _differs(m["value"], got[name], RECOMPUTE_ATOL):
                problems.append(f"case metric {name}: recorded {m['value']!r}, recomputed {got.get(name)!r}")
    if problems:
        return Outcome(path, False, f"{path}: " + "; ".join(problems))
    return Outcome(path, True, f"recomputed {n} seed(s) exactly")


def same_machine(old: dict, new: dict) -> bool:
    keys = ("device", "torch", "python")
    return all(old["environment"].get(k) == new["environment"].get(k) for k in keys)


def agreement(old: dict, new: dict) -> tuple[bool, str]:
    """Whether a rerun agrees with the record (exact on the same machine, tolerance across machines)."""
    if same_machine(old, new):
        diffs = [f"{name} seed {s}: {a!r} vs {b!r}"
                 for name, m in old["metrics"].items()
                 for s, a, b in zip(old["seeds"], m["per_seed"], new["metrics"].get(name, {}).get("per_seed", []))
                 if a != b]
        missing = sorted(set(old["metrics"]) ^ set(new["metrics"]))
        if missing:
            diffs.append(f"metrics present in only one run: {missing}")
        return not diffs, ("identical per-seed values (same machine)" if not diffs
                           else "same machine, values differ: " + "; ".join(diffs[:5]))
    bad = []
    for name, m in old["metrics"].items():
        n = new["metrics"].get(name)
        if n is None or m["mean"] is None or n["mean"] is None:
            continue
        tol = max(CROSS_MACHINE_ATOL, 3 * math.sqrt((m.get("sem") or 0) ** 2 + (n.get("sem") or 0) ** 2))
        if abs(m["mean"] - n["mean"]) > tol:
            bad.append(f"{name}: mean {m['mean']:.4f} vs {n['mean']:.4f} (tolerance {tol:.4f})")
    return not bad, ("means agree within tolerance (other machine)" if not bad
                     else "other machine, means differ: " + "; ".join(bad[:5]))


def rerun(record: dict, device: torch.device, results_dir: Path | None = None, data_path: str = "auto") -> dict:
    """Run a record's case again with its method, hparams, seeds and profile; the new record."""
    from harness.registry import create_method
    from harness.runner import run_case

    spec = spec_for(record)
    if spec is None:
        raise RecordError(f"case {record['suite']}/{record['case']} is no longer in the suite; delete its records")
    method = create_method(record["method"], record["hparam_overrides"])
    return run_case(spec, method, list(record["seeds"]), device, results_dir, dict(record["hparam_overrides"]),
                    data_path=data_path).record


def rerun_sample(results_dir: Path, n: int, device: torch.device, seed: int = 0,
                 say: Callable[[str], None] = print, paths: list[Path] | None = None) -> list[Outcome]:
    """Re-run ``n`` records drawn at random (seeded) from ``paths`` (default: all) and report agreement."""
    from harness.leaderboard import collect

    collected = collect(results_dir)
    stale = {p.resolve() for p, _ in collected.stale}
    pool = [(Path(p), load_record(p)) for p in paths] if paths else iter_records(results_dir)
    picked = random.Random(seed).sample(pool, min(n, len(pool)))
    out = []
    for path, record in picked:
        say(f"re-running {path} ({len(record['seeds'])} seed(s), {record['profile']})")
        try:
            new = rerun(record, device)
        except (DataMissing, Unsupported) as err:
            out.append(Outcome(path, True, f"skipped: {err}"))
            continue
        ok, message = agreement(record, new)
        if not ok and path.resolve() in stale:
            ok, message = True, f"stale record (made by other code or another case definition), so expected: {message}"
        out.append(Outcome(path, ok, message))
    return out


def regenerate(results_dir: Path, device: torch.device, suites: list[str] | None = None,
               profiles: list[str] | None = None, methods: list[str] | None = None, dry_run: bool = False,
               say: Callable[[str], None] = print) -> list[Outcome]:
    """Re-run every stale record (see the module docstring) matching the filters, writing over it in place."""
    from harness.leaderboard import collect

    out = []
    for path, why in collect(results_dir).stale:
        record = load_record(path)
        if (suites and record["suite"] not in suites) or (profiles and record["profile"] not in profiles) \
                or (methods and record["method"] not in methods):
            continue
        say(f"{'would re-run' if dry_run else 're-running'} {path} ({why}; seeds {record['seeds']})")
        if dry_run:
            out.append(Outcome(path, True, f"stale: {why}"))
            continue
        try:
            new = rerun(record, device, results_dir)
        except HarnessError as err:  # data missing, unsupported, locked, case gone: reported, the others go on
            out.append(Outcome(path, False, f"not regenerated: {err}"))
            continue
        out.append(Outcome(path, True, f"regenerated ({new['status']})"))
    return out
