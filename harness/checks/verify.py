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
* :func:`regenerate` (``python -m harness regenerate --stale``): brings the
  records ``leaderboard --check`` calls stale (:mod:`harness.records.currency`)
  up to date, in place. A record stale by its code digests alone (same task
  fingerprint; a CPU record with seed 0) is first judged by behaviour
  (:func:`restamp`): seed 0 is re-executed with the record's thread count and,
  when it passes check 5 below (every per-seed metric bit-identical, the same
  data fingerprint) and its evidence arrays equal the record's, the record is
  re-stamped: its ``code`` becomes the current digests and ``restamp`` says
  which seed was re-executed, at which commit, when, on which device and by
  which code (metrics and evidence untouched). Otherwise, and for every other
  stale record (another case definition), every seed is re-run with the
  recorded seeds, profile and hparams. One line per record says which, and the
  seconds it took.
* :func:`verify_changed` (``python -m harness verify --changed``, run by CI): every record whose record or
  evidence file differs from the committed manifest ``results/.verified.json`` (:mod:`harness.records.manifest`),
  or whose manifest entry is not in the base commit's manifest (``--base auto``; an entry blessed by hand
  blesses nothing), is verified, however many commits ago it changed. A deleted record needs a stated reason
  (``--update-manifest --reason TEXT`` records it under ``removed``); a symlink or non-regular file under
  results/, or a named path outside it, is refused with one line. Workflow: make or edit records, run
  ``python -m harness verify --changed --update-manifest`` (it rewrites the manifest only when every check
  passes, stamping each entry with HEAD and the re-measured times), commit the records with the manifest.
  Checks, in order, each a failure naming the record:

  1. **identity** (:func:`audit`): the file is where its own fields put it, the method, family, hparams, case
     fingerprint and code digests are the current ones;
  2. **seeds**: exactly ``0..k-1`` with k the suite's seed count for the profile (at smoke
     :data:`SMOKE_SEEDS`): more seeds would enter the means unchecked; a profile the suite does not declare
     (:func:`harness.suites.declared_profiles`) is refused; no seed of the base version is gone; the evidence
     holds exactly the completed seeds;
  3. **environment**: CPU, this process's torch and Python;
  4. **labels and metrics** (:func:`recompute`): on every changed record of every suite. A suite without
     ``Task.recompute_fn`` (remote sensing) cannot be recomputed, so its records are always re-executed;
  5. **re-execution** (:func:`reexecute`): seed 0 and one other seed drawn from the operating system's
     randomness (``random.SystemRandom``; every seed when the case is cheap, :data:`CHEAP_SECONDS`), with the
     record's thread count; every per-seed metric bit-identical, the same data fingerprint. Times
     (:func:`timing_problems`): the reference workload is re-measured in this process and must be within
     :data:`REFERENCE_FACTOR` of the record's; the record's normalised step time must be within
     :data:`STEP_TIME_FACTOR` of the re-run's step over that reference, so dividing both recorded times by the
     same number fails. Load is measured around the re-run (:func:`machine_load`: the reference workload's wall
     over CPU time) and the re-run's times are brought back to an idle core's (:func:`remeasure`), so the check
     answers the same loaded or quiet; a re-run whose time alone is out is still re-timed up to
     :data:`TIME_RETRIES` times and the fastest try counts. Residue: caches and memory bandwidth shared with the
     load, which CPU time does not remove.

  Budget: at most :data:`MAX_RECORDS` records and :data:`MAX_SECONDS`, estimated from the case's suite and
  profile (:data:`SEED_SECONDS`), never from the record's own wall time. Over it, the records re-executed are a
  random sample (operating-system randomness, round robin over the suites; those without recompute_fn first);
  the others get checks 1-4. A suite none of whose records fits, or a record without recompute_fn that does
  not fit, fails with how to split the change. Raise the caps off CI to re-execute everything.
"""

from __future__ import annotations

import json
import math
import platform
import random
import re
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cache, partial
from pathlib import Path

import numpy as np
import torch

from harness.core.digest import REPO
from harness.core.environment import cpu_numerics
from harness.core.registry import create_method, get_method_class
from harness.core.task import CaseSpec
from harness.core.timing import reference_workload_seconds
from harness.errors import DataMissing, HarnessError, RecordError, Unsupported, UsageError
from harness.protocols import SeedResult
from harness.records import (
    iter_records,
    load_evidence,
    load_record,
    record_files,
    record_lock,
    record_path,
    rewrite_record,
)
from harness.records.currency import Judge, collect, spec_for, unpinned
from harness.records.git import blob_id, git, head, resolve_base, tree_blobs
from harness.records.manifest import (
    MANIFEST_NAME,
    manifest_path,
    parse_manifest,
    read_manifest,
    scan_results,
    write_manifest,
)
from harness.running.runner import CaseResult, SeedProgress, duration, run_case
from harness.suites import case_seeds, case_specs, declared_profiles, get_suite, is_suite, seed_count, suite_names

RECOMPUTE_ATOL = 1e-9
CROSS_MACHINE_ATOL = 0.02
RERUN_SEED = 0
SMOKE_SEEDS = 2  # committed smoke records carry 2 seeds: the gate compares them seed-paired
STEP_TIME_FACTOR = 2.5  # re-measured / recorded normalised step time (see check 5)
REFERENCE_FACTOR = 3.0  # re-measured / recorded reference workload time
LOADED_REFERENCE_MAX = 10.0  # how much slower than an idle core a record's reference may be (made under load)
TIME_RETRIES = 2  # re-timings of a re-run whose time alone is out (the fastest try counts)
# metrics that are measurements of the run, not functions of its outputs: never bit-identical on a re-run
MEASURED_METRICS = {"RTE": "time", "epoch_time_s": "time", "peak_memory_mb": "memory"}
MEASURED_ARRAYS = frozenset({"epoch_seconds", "peak_memory_bytes", "seconds"})  # evidence of the same measurements
EVIDENCE_ATOL = EVIDENCE_RTOL = 1e-4  # float evidence across CPUs of this kind (see evidence_differences)
MAX_RECORDS = 40
MAX_SECONDS = 240.0
# seconds to re-run one seed, by (suite, profile): the 90th percentile of wall time per seed of the committed
# records on the 2-core CI machine (June 2025), rounded up. The budget is never taken from the record itself:
# a record claiming 1e6 s would otherwise never be re-executed
# shift standard: the redesigned profile (2026-12), ERM about 5.6 CPU s per case and seed (measured, seed 0, 13
# cases) times the DG methods' mean cost relative to ERM (about 1.7, from the records' step times); was 58 s before
# losses and openset standard: the 90th percentile of the records regenerated at HEAD (2026-12-06, two workers on
# the 2-core machine): 31.4 and 9.1 s a seed (were 27 and 15)
SEED_SECONDS = {("losses", "smoke"): 3.0, ("losses", "standard"): 32.0, ("openset", "smoke"): 31.0,
                ("openset", "standard"): 10.0, ("remote_sensing", "smoke"): 3.0, ("remote_sensing", "standard"): 41.0,
                ("shift", "smoke"): 7.0, ("shift", "standard"): 10.0, ("ssl", "smoke"): 8.0,
                ("ssl", "standard"): 37.0, ("unlearning", "smoke"): 5.0, ("unlearning", "standard"): 47.0}
CHEAP_SECONDS = 10.0  # a record whose every seed re-runs within this is re-executed in full
PER_RECORD_OVERHEAD_S = 2.0  # loading the case's data and building its model, beside the seed itself
_LABEL_KEY = re.compile(r"(?P<split>[A-Za-z0-9_]+)\.(?P<field>y|domain|group)")


@dataclass
class Outcome:
    path: Path
    ok: bool
    message: str


def check_files(results_dir: Path, paths: list[Path] | None = None) -> list[Outcome]:
    """Schema, consistency and evidence of every record (or of ``paths``); one outcome per file."""
    files = paths if paths else record_files(results_dir)
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
                why = ("diverged before any seed completed: no evidence to keep" if record["status"] == "diverged"
                       else "no evidence file: made before evidence was recorded")
                out.append(Outcome(path, True, f"ok ({why})"))
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
    problems, _ = check_labels(task, evidence)
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
        return Outcome(path, False, f"{path}: " + "; ".join(problems[:8]))
    return Outcome(path, True, f"recomputed {n} seed(s) exactly")


def _dataset_labels(task, key: str) -> tuple[str, np.ndarray | None] | None:
    """The dataset's labels for an evidence key naming a split's labels (``test.y``, ``y_test``), else None."""
    splits = getattr(task, "splits", None) or {}
    if key == "y_test":
        split, field = "test", "y"
    else:
        m = _LABEL_KEY.fullmatch(key)
        if m is None:
            return None
        split, field = m.group("split"), m.group("field")
    if split not in splits:
        return None
    truth = getattr(splits[split], field, None)
    return f"{split}.{field}", None if truth is None else truth.cpu().numpy()


def check_labels(task, evidence: dict[int, dict[str, np.ndarray]]) -> tuple[list[str], int]:
    """Problems where the evidence's labels differ from the dataset's for the same split, and how many arrays
    were checked. Recomputing metrics from stored labels proves nothing if the labels themselves were edited."""
    problems, checked = [], 0
    for seed in sorted(evidence):
        for key, stored in sorted(evidence[seed].items()):
            found = _dataset_labels(task, key)
            if found is None:
                continue
            what, truth = found
            checked += 1
            stored = np.asarray(stored)
            if truth is None:
                problems.append(f"seed {seed}: evidence {key} exists but the dataset's {what} does not")
            elif stored.shape != truth.shape:
                problems.append(f"seed {seed}: evidence {key} has shape {stored.shape}, the dataset's {what} "
                                f"{truth.shape}")
            elif not np.array_equal(stored.astype(np.int64), truth.astype(np.int64)):
                wrong = int((stored.astype(np.int64) != truth.astype(np.int64)).sum())
                problems.append(f"seed {seed}: evidence {key} differs from the dataset's {what} in {wrong} of "
                                f"{truth.size} entries (labels edited, or evidence of another case)")
    return problems, checked


def same_machine(old: dict, new: dict) -> bool:
    keys = ("device", "cpu_numerics", "torch", "python")
    return all(old["environment"].get(k) == new["environment"].get(k) for k in keys)


def agreement(old: dict, new: dict) -> tuple[bool, str]:
    """Whether a rerun agrees with the record (exact on the same machine, tolerance across machines); measured
    figures (times, memory: :data:`MEASURED_METRICS`) are never compared."""
    if same_machine(old, new):
        diffs = [f"{name} seed {s}: {a!r} vs {b!r}"
                 for name, m in old["metrics"].items() if name not in MEASURED_METRICS
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
        if n is None or m["mean"] is None or n["mean"] is None or name in MEASURED_METRICS:
            continue
        tol = max(CROSS_MACHINE_ATOL, 3 * math.sqrt((m.get("sem") or 0) ** 2 + (n.get("sem") or 0) ** 2))
        if abs(m["mean"] - n["mean"]) > tol:
            bad.append(f"{name}: mean {m['mean']:.4f} vs {n['mean']:.4f} (tolerance {tol:.4f})")
    return not bad, ("means agree within tolerance (other machine)" if not bad
                     else "other machine, means differ: " + "; ".join(bad[:5]))


def rerun(record: dict, device: torch.device, results_dir: Path | None = None, data_path: str = "auto",
          progress: Callable[[SeedProgress], None] | None = None) -> dict:
    """Run a record's case again with its method, hparams, seeds and profile, under the case's current definition:
    the suite's declared case of that name when there is one here (a remote-sensing probe of an SSL encoder is
    declared once the encoder is cached), else the case rebuilt from the record; the new record."""
    declared = {s.case: s for s in case_specs(get_suite(record["suite"]), record["profile"])} \
        if is_suite(record["suite"]) else {}
    spec = declared.get(record["case"]) or spec_for(record)
    if spec is None:
        raise RecordError(f"case {record['suite']}/{record['case']} is no longer in the suite; delete its records")
    method = create_method(record["method"], record["hparam_overrides"])
    threads = record_threads(record) if device.type == "cpu" else None
    with num_threads(threads or torch.get_num_threads()):  # the record's count, so same_machine can hold
        return run_case(spec, method, list(record["seeds"]), device, results_dir,
                        dict(record["hparam_overrides"]), data_path=data_path, progress=progress).record


def rerun_sample(results_dir: Path, n: int, device: torch.device, seed: int = 0,
                 say: Callable[[str], None] = print, paths: list[Path] | None = None) -> list[Outcome]:
    """Re-run ``n`` records drawn at random (seeded) from ``paths`` (default: all) and report agreement."""
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


@dataclass
class _Job:
    """One record ``regenerate`` brings up to date: what its plan and dry run say, and how it runs."""

    path: Path
    suite: str
    planned_s: float
    would: str  # the dry run's line
    listed: str  # the dry run's outcome
    run: Callable[[], tuple[Outcome, str | None]]  # the outcome, and the line to print (None: the outcome's)


def regenerate(results_dir: Path, device: torch.device, suites: list[str] | None = None,
               profiles: list[str] | None = None, methods: list[str] | None = None, dry_run: bool = False,
               say: Callable[[str], None] = print, restamp_only: bool = False, missing: bool = False,
               progress: Callable[[SeedProgress], None] | None = None) -> list[Outcome]:
    """Bring every stale record matching the filters up to date, in place (see the module docstring): re-stamp
    it when only its code digests differ and seed 0 re-executes bit-identically, else re-run every seed; with
    ``restamp_only``, leave it stale instead of re-running it (re-stamping a large matrix costs one seed a record).
    With ``missing``, then run every declared case x method that has no record at the profile
    (:func:`missing_runs`), suites in dependency order, so the matrix is whole.

    The plan (every job with its estimated seconds) is made first and printed; each finished job's line then
    says where the whole run stands (``[jobs done/total · elapsed · ETA]``, the ETA being the plan's seconds
    left scaled by how the jobs done compared with their plan), and ``progress`` is told of every seed."""
    judge = Judge()
    jobs: list[_Job] = []
    for path, why in sorted(judge.collect(results_dir).stale,
                            key=lambda item: suite_depth(item[0].relative_to(results_dir).parts[0])):
        record = load_record(path)
        if (suites and record["suite"] not in suites) or (profiles and record["profile"] not in profiles) \
                or (methods and record["method"] not in methods):
            continue
        not_restampable = restamp_refusal(record, judge.judge(record).code_only, device)
        seeds = 1 if not_restampable is None else len(record["seeds"])
        rest = "leave stale" if restamp_only else "re-run"
        what = rest if not_restampable else f"re-execute seed {RERUN_SEED}, then re-stamp or {rest}"
        jobs.append(_Job(
            path, record["suite"],
            planned_seconds(record, seeds, redefined=why.startswith(("task fingerprint", "case no longer"))),
            f"would {what} {path} ({why}; seeds {record['seeds']})", f"stale: {why}",
            partial(_regenerate_stale, path, record, why, not_restampable, judge, device, results_dir,
                    restamp_only, progress)))
    if missing:
        existing = [record for _, record in iter_records(results_dir)]
        for spec, method, seconds in missing_runs(existing, suites, profiles, methods):
            path = record_path(results_dir, spec.suite, spec.case, method, spec.profile)
            jobs.append(_Job(path, spec.suite, seconds, f"would run {path} (no record yet; seeds "
                             f"{committed_seeds(spec)})", "missing: no record of this declared case and method",
                             partial(_run_missing, path, spec, method, device, results_dir, progress)))
    plan: dict[str, float] = {}
    for job in jobs:
        plan[job.suite] = plan.get(job.suite, 0.0) + job.planned_s
    if plan:
        total = sum(plan.values())
        say("plan (each record's last measured wall time; a re-stamp re-executes one seed, a re-run all; a missing "
            "record: its case's median wall time per seed at the profile): "
            + ", ".join(f"{suite} {s / 60:.0f} min" for suite, s in sorted(plan.items()))
            + f"; {total / 60:.0f} min on one worker, about {total / 120:.0f} min on two (a record whose seed 0 does "
            "not re-execute bit for bit costs its other seeds too)")
    out = []
    t_start, planned_done, planned_left = time.perf_counter(), 0.0, sum(plan.values())
    for i, job in enumerate(jobs, 1):
        if dry_run:
            say(job.would)
            out.append(Outcome(job.path, True, job.listed))
            continue
        outcome, line = job.run()
        out.append(outcome)
        planned_done, planned_left = planned_done + job.planned_s, planned_left - job.planned_s
        elapsed = time.perf_counter() - t_start
        eta = duration(planned_left * elapsed / planned_done) if planned_done > 0 else "?"
        say(f"[{i}/{len(jobs)} · {duration(elapsed)} · ETA {eta}] {line or outcome.message}")
    return out


def _regenerate_stale(path: Path, record: dict, why: str, not_restampable: str | None, judge: Judge,
                      device: torch.device, results_dir: Path, restamp_only: bool,
                      progress: Callable[[SeedProgress], None] | None) -> tuple[Outcome, str | None]:
    t0 = time.perf_counter()
    if path.exists() and judge.judge(load_record(path)).current:  # another worker brought it up to date
        return Outcome(path, True, "current already (another run regenerated it)"), None
    try:
        if not_restampable is None:
            differs = restamp(path, record, device)
            if not differs:
                return (Outcome(path, True, f"restamped (seed {RERUN_SEED} re-executed: metrics bit-identical)"),
                        f"restamped {path} ({why}; seed {RERUN_SEED} re-executed: metrics bit-identical, "
                        f"{time.perf_counter() - t0:.1f} s)")
            not_restampable = f"seed {RERUN_SEED} re-executed differently: {differs[0]}"
        if restamp_only:
            return (Outcome(path, True, f"left stale ({not_restampable})"),
                    f"left stale {path} ({why}; {not_restampable}; {time.perf_counter() - t0:.1f} s)")
        new = rerun(record, device, results_dir, progress=progress)
    except HarnessError as err:  # data missing, unsupported, locked, case gone: reported, the others go on
        return Outcome(path, False, f"not regenerated: {err}"), None
    return (Outcome(path, True, f"regenerated ({new['status']})"),
            f"re-ran {path} ({why}; {not_restampable}; seeds {record['seeds']}, {time.perf_counter() - t0:.1f} s)")


def _run_missing(path: Path, spec: CaseSpec, method: str, device: torch.device, results_dir: Path,
                 progress: Callable[[SeedProgress], None] | None) -> tuple[Outcome, str | None]:
    seeds, t0 = committed_seeds(spec), time.perf_counter()
    try:
        new = run_case(spec, create_method(method), seeds, device, results_dir, resume=True,
                       progress=progress).record
    except (DataMissing, Unsupported) as err:
        return Outcome(path, True, f"skipped: {err}"), None
    except HarnessError as err:
        return Outcome(path, False, f"not run: {err}"), None
    return (Outcome(path, True, f"ran ({new['status']})"),
            f"ran {path} (no record yet; seeds {seeds}, {time.perf_counter() - t0:.1f} s)")


def committed_seeds(spec: CaseSpec) -> list[int]:
    """The seeds a committed record of the case carries: the case's own, and :data:`SMOKE_SEEDS` at smoke."""
    seeds = case_seeds(spec)
    return list(range(max(len(seeds), SMOKE_SEEDS))) if spec.profile == "smoke" else seeds


def missing_runs(existing: list[dict], suites: list[str] | None, profiles: list[str] | None,
                 methods: list[str] | None) -> list[tuple[CaseSpec, str, float]]:
    """Every (declared case, method) without a record at a ranked profile, with its planned seconds, suites in
    dependency order. The methods of a suite are those with a record of it at any profile (every method's smoke
    records are committed, so a method new to the suite counts once its smoke row exists), less a method with no
    part in the case's protocol (remote sensing's ``erm`` on a probe case): it would only skip, yet be planned at
    the case's full time. Other refusals (those that need the data) stay, and skip with their reason. A case's
    planned seconds per seed: the median per-seed wall time of that case's records at the profile under its
    current definition, else :data:`SEED_SECONDS`."""
    out = []
    names = sorted({r["suite"] for r in existing if is_suite(r["suite"])} & set(suites or suite_names()),
                   key=suite_depth)
    for name in names:
        suite = get_suite(name)
        runs = sorted({r["method"] for r in existing if r["suite"] == name and not r["hparam_overrides"]})
        for profile in [p for p in (profiles or ["standard"]) if p in declared_profiles(suite)]:
            have = {(r["case"], r["method"]) for r in existing if r["suite"] == name and r["profile"] == profile
                    and not r["hparam_overrides"]}
            for spec in case_specs(suite, profile):
                walls = [r["timing"]["wall_time_s"] / max(1, len(r["seeds"])) for r in existing
                         if r["suite"] == name and r["profile"] == profile and r["case"] == spec.case
                         and r.get("fingerprint") == spec.fingerprint  # an old definition measured another case
                         and isinstance(r["timing"].get("wall_time_s"), (int, float))]
                per_seed = float(np.median(walls)) if walls else SEED_SECONDS.get((name, profile),
                                                                                   max(SEED_SECONDS.values()))
                for method in runs:
                    if ((spec.case, method) not in have and (not methods or method in methods)
                            and _takes_part(method, spec.protocol)):
                        out.append((spec, method, len(committed_seeds(spec)) * per_seed + PER_RECORD_OVERHEAD_S))
    return out


@cache
def _takes_part(method: str, protocol: str) -> bool:
    """Whether ``method`` has a part in ``protocol`` (judged without data, as the pytest plugin deselects)."""
    try:
        create_method(method).check_protocol(protocol)
    except Unsupported:
        return False
    return True


def planned_seconds(record: dict, seeds: int, redefined: bool = False) -> float:
    """What bringing a record up to date should take here: its own last wall time per seed (a plan, not a
    budget: verify's budget never trusts the record), else the suite's :data:`SEED_SECONDS`; also that when the
    case was ``redefined`` since (its old wall time measured another case)."""
    wall = None if redefined else record.get("timing", {}).get("wall_time_s")
    per_seed = wall / max(1, len(record["seeds"])) if isinstance(wall, (int, float)) and wall > 0 else None
    if per_seed is None:
        per_seed = SEED_SECONDS.get((record["suite"], record["profile"]), max(SEED_SECONDS.values()))
    return seeds * per_seed + PER_RECORD_OVERHEAD_S


def suite_depth(suite: str) -> int:
    """0 for a suite that needs no other; else one more than the deepest suite named in its ``AFTER`` (remote
    sensing probes the SSL suite's stored encoders, so SSL records are brought up to date first)."""
    after = getattr(get_suite(suite), "AFTER", ()) if is_suite(suite) else ()
    return 1 + max(map(suite_depth, after)) if after else 0


def other_numerics(record: dict) -> str | None:
    """Why a CPU record cannot be compared bit for bit here: made under other CPU numerics (None when the same)."""
    made, here = record["environment"].get("cpu_numerics"), cpu_numerics()
    if made == here:
        return None
    return (f"made under CPU numerics {made or 'not pinned (before harness/cpu_numerics.py)'}, re-executed under "
            f"{here}: bits compare only under the same numerics")


def restamp_refusal(record: dict, code_only: bool, device: torch.device) -> str | None:
    """Why a stale record cannot be re-stamped (so every seed is re-run), or None when seed 0 may decide."""
    if not code_only:
        return "more than the code digests changed"
    if device.type != "cpu" or record_threads(record) is None:
        return "not a CPU record re-executed on CPU: seed 0 cannot be compared bit for bit"
    if RERUN_SEED not in record["seeds"]:
        return f"seed {RERUN_SEED} is not among its seeds"
    return other_numerics(record)


def restamp(path: Path, record: dict, device: torch.device) -> list[str]:
    """Re-execute seed 0 of a record stale by code digests only; when its metrics (as :func:`reexecute` checks
    them) and its evidence arrays are those of the record, rewrite the record as current at HEAD: ``code`` becomes
    the current digests and ``restamp`` says which seed was re-executed, when, at which commit, on which device and
    with which code. Metrics and evidence stay untouched. Returns the differences (empty when re-stamped)."""
    with record_lock(path):
        again = reexecute(record, device, check_time=False)
        if again.result is not None and not again.problems:
            again.problems += evidence_differences(path, record, again.result.arrays.get(RERUN_SEED, {}))
        if again.problems:
            return again.problems
        new = again.result.record
        rewrite_record({**record, "code": new["code"], "restamp": {
            "seed": RERUN_SEED, "commit": new["environment"]["git_commit"], "date": new["environment"]["date"],
            "device": new["environment"]["device"], "code": new["code"], "previous_code": record.get("code"),
            "seconds": round(again.seconds, 3)}}, path)
    return []


def evidence_differences(path: Path, record: dict, arrays: dict[str, np.ndarray]) -> list[str]:
    """How seed 0's re-executed evidence arrays differ from the record's (none without an evidence file).

    Integer arrays (predictions, labels, indices) must be equal. Float arrays (scores, logits) may differ by
    :data:`EVIDENCE_ATOL` + :data:`EVIDENCE_RTOL` x |value|: float32 reductions on another CPU of this kind round
    differently in the last bits while every metric stays bit-identical (measured: up to 1.2e-6 on smoke and
    1.9e-5 on standard MNIST-pair scores). Arrays of timings and memory (:data:`MEASURED_ARRAYS`) only need the
    same shape."""
    if not record.get("evidence"):
        return []
    stored = load_evidence(path, record).get(RERUN_SEED, {})
    problems = []
    for name in sorted(set(stored) | set(arrays)):
        if name not in stored or name not in arrays:
            problems.append(f"seed {RERUN_SEED}: evidence {name} is in only one of the record and the re-run")
            continue
        a, b = np.asarray(stored[name]), np.asarray(arrays[name])
        if name in MEASURED_ARRAYS or a.shape != b.shape or a.dtype != b.dtype:
            same = a.shape == b.shape and (name in MEASURED_ARRAYS or a.dtype == b.dtype)
        elif a.dtype.kind in "fc":
            same = np.allclose(a, b, rtol=EVIDENCE_RTOL, atol=EVIDENCE_ATOL, equal_nan=True)
        else:
            same = np.array_equal(a, b)
        if not same:
            gap = f" (max |diff| {np.nanmax(np.abs(a - b)):.3g})" if a.shape == b.shape and a.dtype.kind in "fc" else ""
            problems.append(f"seed {RERUN_SEED}: evidence {name} differs from the record's{gap}")
    return problems


# -- re-execution of changed records (CI) -----------------------------------------------------------------


def record_threads(record: dict) -> int | None:
    """The CPU thread count a record was made with (from its device name), or None when not a CPU record."""
    m = re.fullmatch(r"cpu \(.*, (\d+) threads?\)", record["environment"].get("device", ""))
    return int(m.group(1)) if m else None


@contextmanager
def num_threads(n: int) -> Iterator[None]:
    """``torch.set_num_threads(n)`` for the block: CPU reductions split work by thread, so bit-identical
    re-runs need the recorded count."""
    old = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)


def _json(value) -> str:
    return json.dumps(value, sort_keys=True, default=str)


def audit(path: Path, record: dict, results_dir: Path, base: dict | None = None) -> list[str]:
    """Identity, seed, evidence and environment problems of one record (checks 1-3 of the module docstring)."""
    problems = []
    expected = record_path(results_dir, record["suite"], record["case"], record["method"], record["profile"],
                           record["hparam_overrides"])
    if Path(path).resolve() != expected.resolve():
        problems.append(f"its fields (suite {record['suite']!r}, case {record['case']!r}, method "
                        f"{record['method']!r}, profile {record['profile']!r}, overrides "
                        f"{record['hparam_overrides']}) belong in {expected}, not here")
    verdict = Judge().judge(record)
    spec = verdict.spec
    if spec is None:
        problems.append(f"case {record['suite']}/{record['case']} is not in the suite (or its data is not here)")
    elif spec.fingerprint != record["fingerprint"]:
        problems.append("task fingerprint differs from the current case definition")
    try:
        cls = get_method_class(record["method"])
        method = create_method(record["method"], record["hparam_overrides"])
    except HarnessError as err:
        return problems + [f"method: {err}"]
    if cls.name != record["method"]:
        problems.append(f"method {record['method']!r} resolves to a class registered as {cls.name!r}")
    if record["family"] != method.family:
        problems.append(f"family {record['family']!r}, but method {record['method']!r} is {method.family!r}")
    if _json(record["hparams"]) != _json(method.hparams):
        problems.append(f"hparams {_json(record['hparams'])} are not {record['method']}'s defaults with the "
                        f"recorded overrides: {_json(method.hparams)}")
    if verdict.stale_code:
        problems.append(f"made by other code ({', '.join(verdict.stale_code)} digest differs from this checkout's): a "
                        "record a change brings must be made by that change's code")
    if unpinned(record):
        problems.append(f"made under CPU numerics {record['environment'].get('cpu_numerics')}, not the pinned ones "
                        "(harness/cpu_numerics.py): no machine could re-execute it bit for bit")
    seeds = record["seeds"]
    suite = get_suite(record["suite"])
    if record["profile"] not in declared_profiles(suite):
        problems.append(f"profile {record['profile']!r}: suite {record['suite']} declares {declared_profiles(suite)}")
    want = seed_count(suite, record["profile"], record["case"])
    if record["profile"] == "smoke":
        want = max(want, SMOKE_SEEDS)
    if seeds != list(range(want)):  # more seeds than the suite runs would enter its means unchecked
        problems.append(f"seeds {seeds}: the {record['profile']} profile of {record['suite']} runs seeds "
                        f"0..{want - 1}")
    if base is not None:
        gone = sorted(set(base["seeds"]) - set(seeds))
        if gone:
            problems.append(f"drops seed(s) {gone} that the base commit's version of this record has")
    if not record.get("evidence"):
        problems.append("no evidence file: a record a change brings must carry its evidence npz")
    else:
        try:
            held = sorted(load_evidence(path, record))
        except RecordError as err:
            held = None
            problems.append(str(err))
        done = seeds[: len(seeds) - (record["status"] == "diverged")]
        if held is not None and held != sorted(done):
            problems.append(f"evidence holds seeds {held}, the record's completed seeds are {done}")
    env = record["environment"]
    if record_threads(record) is None:
        problems.append(f"made on {env.get('device')!r}: only CPU records can be re-executed bit-identically here")
    for key, here in (("torch", torch.__version__), ("python", platform.python_version())):
        if env.get(key) != here:
            problems.append(f"made with {key} {env.get(key)}, this checkout runs {here}: re-make the record in the "
                            "project's environment")
    return problems


@dataclass
class Reexecution:
    problems: list[str]  # check 5's failures (empty: the seeds reproduced the record)
    seconds: float
    result: CaseResult | None  # the re-run (its record and evidence arrays); None when it could not run
    seeds: tuple[int, ...] = (RERUN_SEED,)
    remeasured: dict | None = None  # the re-run's step time and the reference re-measured beside it


def reexecute(record: dict, device: torch.device, seeds: tuple[int, ...] = (RERUN_SEED,),
              factor: float = STEP_TIME_FACTOR, check_time: bool = True) -> Reexecution:
    """Re-run ``seeds`` of a record with its thread count and compare them with the record (check 5). The
    reference workload is re-measured in this process just before; when only the time check fails the seed is
    re-timed up to :data:`TIME_RETRIES` more times and the fastest try counts (load only ever slows a run).
    ``check_time=False`` compares behaviour only (re-stamping: the record keeps its own timing, and CI's verify
    re-times it)."""
    if device.type != "cpu":
        raise UsageError("verify re-executes on CPU only (records are compared bit for bit): pass --device cpu")
    threads = record_threads(record)
    spec = spec_for(record)
    if threads is None or spec is None:
        return Reexecution(["cannot re-execute (see above)"], 0.0, None, seeds)
    missing = [s for s in seeds if s not in record["seeds"]]
    if missing:
        return Reexecution([f"seed(s) {missing} are not among the seeds {record['seeds']}"], 0.0, None, seeds)
    other = other_numerics(record)
    if other:
        return Reexecution([other], 0.0, None, seeds)
    t0 = time.perf_counter()
    result, best = None, None
    for _ in range(1 + TIME_RETRIES):
        with num_threads(threads):
            before = machine_load(device, threads)
            run = run_case(spec, create_method(record["method"], record["hparam_overrides"]), list(seeds), device,
                           None, dict(record["hparam_overrides"]))
            after = machine_load(device, threads)
        result = result or run  # the first try's metrics are compared; later tries only re-time
        timed = remeasure(run.record["timing"], (before, after))
        if best is None or (timed["normalised_step_time"] or math.inf) < (best["normalised_step_time"] or math.inf):
            best = timed
        differences = seed_differences(record, result.record, seeds)
        slow = timing_problems(record["timing"], best, factor) if check_time else []
        if differences or not slow:  # re-timing cannot mend a metric, and agreeing times need no retry
            break
    problems = differences + slow
    return Reexecution(problems[:8], time.perf_counter() - t0, result, seeds, best)


@dataclass(frozen=True)
class Load:
    """The reference workload timed now: the fastest wall-clock run, the CPU time per run (what an idle core
    takes: other processes take turns on the core but add nothing to this process's CPU time), and the
    contention, wall / CPU time over the runs (1 on an idle core, about k when k runnable threads share it)."""

    fastest_s: float
    cpu_s: float
    contention: float


def machine_load(device: torch.device, threads: int) -> Load:
    """:class:`Load` here and now, for a re-run at ``threads`` threads (CPU time is per process, so a multi-threaded
    re-run is not corrected: its contention is 1 and both references are the fastest wall-clock run)."""
    repeats = 9
    wall0, cpu0 = time.perf_counter(), time.process_time()
    fastest = reference_workload_seconds(device, repeats)
    wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    if threads != 1 or device.type != "cpu" or cpu <= 0:
        return Load(fastest, fastest, 1.0)
    return Load(fastest, cpu / (repeats + 1), max(1.0, wall / cpu))


def remeasure(run_timing: dict, loads: tuple[Load, ...] = ()) -> dict:
    """The times verify trusts for a re-run, as bounds that load cannot push the wrong way. Load only slows a
    run, so the raw step time bounds an idle core's from above and the step divided by the contention seen
    around it (the lower of before and after) from below, roughly (caches and memory bandwidth shared with the
    load are not removed). Each side of the check uses the bound that favours the record (the low bound to ask
    "is the record faster than this?", the high one for "slower?"), so a loaded machine cannot fail an honest
    record; on an idle one the bounds meet and the check is as strict as ever. References: the run's own, and
    verify's wall and CPU measures around it."""
    refs = [r for r in (run_timing.get("reference_time_s"), *(x.fastest_s for x in loads), *(x.cpu_s for x in loads))
            if r]
    contention = min((x.contention for x in loads), default=1.0)
    step = run_timing.get("step_time_median_s")
    if not refs:
        return {"step_time_median_s": step, "reference_time_s": None, "normalised_step_time": None}
    if not step:  # a case without timed steps still checks its reference, with both bounds
        return {"step_time_median_s": step, "reference_time_s": min(refs), "reference_time_high_s": max(refs),
                "contention": contention, "normalised_step_time": None}
    return {"step_time_median_s": step / contention, "reference_time_s": min(refs),
            "reference_time_high_s": max(refs), "contention": contention,
            "normalised_step_time": step / contention / min(refs),
            "normalised_step_time_low": step / contention / max(refs),
            "normalised_step_time_high": step / min(refs)}


def seed_differences(record: dict, new: dict, seeds: tuple[int, ...] = (RERUN_SEED,)) -> list[str]:
    """How a re-run of ``seeds`` (``new``) differs from the record's same seeds (check 5), timings aside."""
    problems = []
    old_div, new_div = record.get("diverged"), new.get("diverged")
    if (old_div is not None and old_div["seed"] in seeds) or new_div is not None:
        if (old_div or {}).get("step") != (new_div or {}).get("step") or \
                (old_div or {}).get("seed") != (new_div or {}).get("seed"):
            problems.append(f"divergence recorded as {old_div}, re-run gives {new_div}")
        seeds = tuple(s for s in seeds if s in new["seeds"] and s != (new_div or {}).get("seed"))
    for name in sorted(set(record["metrics"]) | set(new["metrics"])):
        if name not in record["metrics"] or name not in new["metrics"]:
            problems.append(f"metric {name} is in only one of the record and the re-run")
            continue
        if name in MEASURED_METRICS:  # wall-clock or memory figures: never bit-identical (timing_problems)
            continue
        for seed in seeds:
            a = record["metrics"][name]["per_seed"][record["seeds"].index(seed)]
            b = new["metrics"][name]["per_seed"][new["seeds"].index(seed)]
            if a != b:
                problems.append(f"seed {seed}: {name} recorded {a!r}, re-run {b!r} (must be bit-identical)")
    if new.get("data_fingerprint") != record.get("data_fingerprint"):
        problems.append(f"data fingerprint recorded {record.get('data_fingerprint')}, the dataset here is "
                        f"{new.get('data_fingerprint')}")
    return problems


def timing_problems(recorded: dict, remeasured: dict, factor: float = STEP_TIME_FACTOR,
                    reference_factor: float = REFERENCE_FACTOR) -> list[str]:
    """Check 5's time checks, on the times :func:`remeasure` gives: the record's reference time must be within
    ``reference_factor`` of the one re-measured here (a record made on this kind of machine timed the same
    workload), and its machine-normalised step time within ``factor`` of the re-run's step over that re-measured
    reference (both timed in this process, so dividing both recorded times by the same number does not help).
    Where :func:`remeasure` gives bounds, "recorded too fast" is asked of the low bound and "too slow" of the high
    one, so load never fails a record."""
    problems = []

    def out_of(old: float | None, low: float | None, high: float | None, allowed: float, what: str,
               slower: float | None = None) -> None:
        slower = slower or allowed  # how much slower than re-measured the record may be
        if not old or not low or not high:
            return
        if low / old > allowed or high / old < 1 / slower:
            ratio = low / old if low / old > allowed else high / old
            shown = f"{low:.4g}" if low == high else f"{low:.4g} to {high:.4g}"
            problems.append(f"{what} recorded {old!r}, re-measured {shown} (ratio {ratio:.2f}, allowed "
                            f"1/{slower:g} to {allowed:g})")

    ref = remeasured.get("reference_time_s")
    # a reference recorded slower than here (made under load) may be up to LOADED_REFERENCE_MAX times slower: the
    # step window below widens by the same factor, which keeps any claimed speed-up within ``factor``
    out_of(recorded.get("reference_time_s"), ref, remeasured.get("reference_time_high_s", ref), reference_factor,
           "reference time", slower=LOADED_REFERENCE_MAX)
    # a record made under load timed its reference slow too (by c = recorded / idle reference): its normalised step
    # may be off by c either way, so the window widens by c. Sound against forgery: a reference inflated by c
    # divides the normalised step by c as well, so a claimed speed-up still cannot exceed ``factor``; a reference
    # recorded faster than an idle core's widens nothing
    old_ref, idle = recorded.get("reference_time_s"), remeasured.get("reference_time_s")
    loaded = min(max(1.0, old_ref / idle), LOADED_REFERENCE_MAX) if old_ref and idle else 1.0
    step = remeasured.get("normalised_step_time")
    out_of(recorded.get("normalised_step_time"), remeasured.get("normalised_step_time_low", step),
           remeasured.get("normalised_step_time_high", step), factor * loaded, "machine-normalised step time")
    return problems


def recompute_sample(paths: list[Path], per_group: int, seed: int) -> list[Path]:
    """``per_group`` records of each suite and profile, drawn with ``seed`` (CI passes its commit, so every machine
    draws the same sample for a commit and successive commits cover the rest); a group with fewer gives them all.
    Records of ``results/<suite>/<case>/<method>[...]__<profile>.json`` are grouped by path, without loading them."""
    groups: dict[tuple[str, str], list[Path]] = {}
    for path in sorted(paths):
        groups.setdefault((path.parent.parent.name, path.stem.rsplit("__", 1)[-1]), []).append(path)
    rng = random.Random(seed)
    return sorted(p for _, group in sorted(groups.items()) for p in rng.sample(group, min(per_group, len(group))))


def recompute_records(results_dir: Path, paths: list[Path] | None = None) -> list[Outcome]:
    """:func:`recompute` on every record (or ``paths``). A stale record is ranked nowhere and may not recompute
    under today's code or case definition: its failure is reported as expected, not as a failed check."""
    judge, tasks, out = Judge(), {}, []
    for path in paths or [p for p, _ in iter_records(results_dir)]:
        try:
            record = load_record(path)
            outcome = recompute(path, record, tasks)
        except HarnessError as err:
            out.append(Outcome(path, False, str(err)))
            continue
        if not outcome.ok and not judge.judge(record).current:
            outcome = Outcome(path, True, "stale record (listed, not ranked): not recomputable at HEAD, as expected")
        elif not outcome.ok and "sets no Task.recompute_fn" in outcome.message:  # verify re-executes these instead
            outcome = Outcome(path, True, "no recompute_fn: its metrics are checked by re-execution (verify)")
        out.append(outcome)
    return out


def static_checks(path: Path, record: dict, results_dir: Path, base: dict | None = None,
                  tasks: dict | None = None) -> tuple[list[str], bool]:
    """Checks 1-4 of the module docstring on one record: (problems, whether its metrics could be recomputed);
    a record without ``Task.recompute_fn`` must be re-executed instead."""
    problems = audit(path, record, results_dir, base)
    if problems:
        return problems, False
    outcome = recompute(path, record, tasks)
    recomputable = "sets no Task.recompute_fn" not in outcome.message
    if (not outcome.ok and recomputable) or outcome.message.startswith("skipped"):
        problems.append(outcome.message.removeprefix(f"{path}: "))
    return problems, recomputable


def verify_record(path: Path, record: dict, results_dir: Path, device: torch.device, base: dict | None = None,
                  tasks: dict | None = None, seeds: tuple[int, ...] | None = None,
                  rng: random.Random | None = None) -> tuple[Outcome, Reexecution | None]:
    """Checks 1-5 of the module docstring on one record; re-executes ``seeds`` (default: drawn by
    :func:`reexecution_seeds`) only when 1-4 pass (they are cheap). ``seeds=()``: checks 1-4 only."""
    problems, recomputable = static_checks(path, record, results_dir, base, tasks)
    if problems:
        return Outcome(path, False, f"{path}: " + "; ".join(problems)), None
    checked = "labels and metrics recomputed" if recomputable else "no recompute_fn, so re-execution only"
    seeds = reexecution_seeds(record, rng or random.SystemRandom()) if seeds is None else seeds
    if not seeds:
        return Outcome(path, True, f"identity, seeds and evidence agree, {checked}; not re-executed (left out of "
                                   "the random sample)"), None
    try:
        again = reexecute(record, device, seeds)
    except (DataMissing, Unsupported) as err:
        return Outcome(path, False, f"{path}: cannot re-execute: {err}"), None
    if again.problems:
        return Outcome(path, False, f"{path}: re-executed seed(s) {list(seeds)}: " + "; ".join(again.problems)), again
    return Outcome(path, True, f"seed 0 and {'every seed' if len(seeds) == len(record['seeds']) else 'a random seed'}"
                               f" re-executed bit-identically, {checked}, identity and seeds agree"), again


def estimated_seconds(record: dict, seeds: int = 1) -> float:
    """What re-running ``seeds`` seeds of a record should cost, from its suite and profile (never from the
    record's own claimed wall time), plus building the case."""
    per_seed = SEED_SECONDS.get((record["suite"], record["profile"]), max(SEED_SECONDS.values()))
    return per_seed * seeds + PER_RECORD_OVERHEAD_S


def reexecution_seeds(record: dict, rng: random.Random) -> tuple[int, ...]:
    """Seed 0 and one other completed seed drawn by ``rng`` (every seed when the case is cheap)."""
    done = record["seeds"][: len(record["seeds"]) - (record["status"] == "diverged")] or record["seeds"][:1]
    if estimated_seconds(record, len(record["seeds"])) <= CHEAP_SECONDS:
        return tuple(record["seeds"])
    others = [s for s in done if s != RERUN_SEED]
    return (RERUN_SEED, rng.choice(others)) if others else (RERUN_SEED,)


def select_sample(loaded: list[tuple[Path, dict]], max_records: int, max_seconds: float, rng: random.Random,
                  required: frozenset[Path] = frozenset()) -> tuple[list[tuple[Path, dict]], list[str]]:
    """The records to re-execute, and one failure line per record that must be re-executed but cannot fit the
    budget. All records when they fit; else ``required`` ones (no recompute_fn) first, then a sample drawn by
    ``rng`` (the operating system's randomness in CI: nothing in the commit or the records predicts it), taken
    round robin over the suites so every suite is covered."""
    def cost(item: tuple[Path, dict]) -> float:
        return estimated_seconds(item[1], 2)

    if len(loaded) <= max_records and sum(cost(it) for it in loaded) <= max_seconds:
        return list(loaded), []
    # a probe of an SSL suite encoder needs that suite's cached encoder, which a fresh CI cache lacks
    candidates = [it for it in loaded if "-ssl-" not in it[1]["case"]]
    shuffled = rng.sample(candidates, len(candidates))
    first = [it for it in shuffled if it[0] in required]
    queues: dict[str, list[tuple[Path, dict]]] = {}
    for item in shuffled:
        if item[0] not in required:
            queues.setdefault(item[1]["suite"], []).append(item)
    chosen, spent, over = [], 0.0, []
    for item in first:
        if len(chosen) < max_records and spent + cost(item) <= max_seconds:
            chosen.append(item)
            spent += cost(item)
        else:
            over.append(f"{item[0]}: has no recompute_fn, so it must be re-executed, and that does not fit the "
                        f"budget ({max_records} records, {max_seconds:.0f} s)")
    while len(chosen) < max_records and any(queues.values()):
        for suite in sorted(queues):
            if queues[suite] and len(chosen) < max_records:
                item = queues[suite].pop(0)
                if spent + cost(item) <= max_seconds:
                    chosen.append(item)
                    spent += cost(item)
    covered = {r["suite"] for _, r in chosen}
    for suite in sorted({r["suite"] for _, r in candidates} - covered):
        over.append(f"suite {suite}: none of its changed records fits the re-execution budget")
    if over:
        total = sum(cost(it) for it in loaded)
        over = [line + f": split the change so that each part's records take at most {max_seconds:.0f} s to "
                f"re-execute (this one brings {len(loaded)} record(s), about {total:.0f} s; commit them in parts, "
                "each verified and its manifest updated)" for line in over]
    return chosen, over


def base_version(commit: str | None, path: Path, repo: Path) -> dict | None:
    """The record at ``path`` as the base commit has it, or None when there is none."""
    if commit is None:
        return None
    rel = Path(path).resolve().relative_to(Path(repo).resolve()).as_posix()
    text = git(repo, "show", f"{commit}:{rel}")
    try:
        return json.loads(text) if text else None
    except json.JSONDecodeError:
        return None


@dataclass
class Changes:
    """What differs from the last verified state: record files to verify, deleted records (and their stated
    reasons), refused entries, and the manifests compared with."""
    records: list[Path]
    deleted: dict[str, str | None]  # relative path -> the reason stated for deleting it (None: none stated)
    refused: list[str]
    digests: dict[str, str]
    manifest: dict
    base: str | None


def changed_records(results_dir: Path, repo: Path, base: str = "auto", reason: str | None = None) -> Changes:
    """Every record under ``results_dir`` whose record or evidence file is new or differs from the manifest, or
    whose manifest entry is not the base commit's and whose bytes are not the base commit's either (an entry added
    by hand blesses nothing; an entry added for a file the base commit already held unchanged changes nothing);
    deleted records; and refused entries (symlinks, non-regular files)."""
    manifest = read_manifest(results_dir)
    digests, refused = scan_results(results_dir)
    commit = resolve_base(base, repo) if git(repo, "rev-parse", "--git-dir") is not None else None
    rel_manifest = manifest_path(results_dir).resolve()
    base_files, base_blobs, bootstrap = {}, {}, False
    if commit is not None and rel_manifest.is_relative_to(Path(repo).resolve()):
        text = git(repo, "show", f"{commit}:{rel_manifest.relative_to(Path(repo).resolve()).as_posix()}")
        base_files = parse_manifest(text)["files"]
        base_blobs = tree_blobs(repo, commit, results_dir)
        # the base commit predates manifests: the records it held are the last landed state, the manifest starts there
        bootstrap = text is None
        if not bootstrap and not manifest_path(results_dir).is_file():
            refused.append(f"{manifest_path(results_dir)}: deleted, but {commit[:12]} has one: restore it")

    def unchanged_since_base(rel: str) -> bool:
        return rel in base_blobs and base_blobs[rel] == blob_id((Path(results_dir) / rel).read_bytes())

    def verified(rel: str) -> bool:
        entry, before = manifest["files"].get(rel), base_files.get(rel, {})
        if entry is None:
            return bootstrap and unchanged_since_base(rel)
        if entry.get("sha256") != digests[rel]:
            return False
        return commit is None or before.get("sha256") == digests[rel] or unchanged_since_base(rel)

    root = Path(results_dir)
    records = sorted({(root / rel).with_suffix(".json") for rel in digests if not verified(rel)})
    known = set(manifest["files"]) | (set(base_blobs) if bootstrap else set())
    deleted = {rel: (manifest["removed"].get(rel) or {}).get("reason") or reason
               for rel in known if rel not in digests and rel.endswith(".json")}
    return Changes([p for p in records if p.is_file()], deleted, refused, digests, manifest, commit)


def verify_changed(results_dir: Path, device: torch.device, repo: Path | None = None, base: str = "auto",
                   max_records: int = MAX_RECORDS, max_seconds: float = MAX_SECONDS,
                   say: Callable[[str], None] = print, update_manifest: bool = False, reason: str | None = None,
                   rng: random.Random | None = None) -> list[Outcome]:
    """Verify every record that differs from the last verified state (see the module docstring); one outcome per
    record, deletion or refused entry. With ``update_manifest``, rewrite the manifest when every check passed."""
    repo, results_dir = Path(repo or REPO), Path(results_dir)
    rng = rng or random.SystemRandom()
    changes = changed_records(results_dir, repo, base, reason)
    say(f"verify: {len(changes.records)} record(s) differ from {MANIFEST_NAME}"
        + (f" or were blessed there since {changes.base[:12]}" if changes.base else "")
        + (f"; {len(changes.deleted)} deleted" if changes.deleted else ""))
    out = [Outcome(results_dir, False, line) for line in changes.refused]
    out += [Outcome(results_dir / rel, False, f"{results_dir / rel}: deleted without a stated reason: re-run with "
                    "--update-manifest --reason TEXT to record why") for rel, why in changes.deleted.items() if not why]
    loaded, tasks, statically_ok, required = [], {}, [], set()
    for path in changes.records:
        say(f"- {path}")
        try:
            record = load_record(path)
            problems, recomputable = static_checks(path, record, results_dir,
                                                   base_version(changes.base, path, repo), tasks)
        except HarnessError as err:
            out.append(Outcome(path, False, f"{path}: {err}"))
            continue
        if problems:
            out.append(Outcome(path, False, f"{path}: " + "; ".join(problems)))
            continue
        loaded.append((path, record))
        statically_ok.append(path)
        if not recomputable:
            required.add(path)
    chosen, over = select_sample(loaded, max_records, max_seconds, rng, frozenset(required))
    out += [Outcome(results_dir, False, line) for line in over]
    if len(chosen) < len(loaded):
        say(f"verify: re-executing a random sample (operating-system randomness) of {len(chosen)} of the "
            f"{len(loaded)} changed record(s); the others got checks 1-4 (identity, seeds, labels, metrics) only")
    picked, remeasured = {p for p, _ in chosen}, {}
    for path, record in loaded:
        outcome, again = verify_record(path, record, results_dir, device, None, tasks,
                                       None if path in picked else (), rng)
        out.append(outcome)
        if again is not None and again.remeasured is not None and outcome.ok:
            remeasured[path] = again.remeasured
    if update_manifest and all(o.ok for o in out):
        written = write_manifest(results_dir, updated_manifest(changes, results_dir, head(repo), remeasured))
        say(f"verify: wrote {written}; the leaderboard shows the step times it re-measured, so run `python -m "
            "harness leaderboard` after this, not before, and commit both")
    elif update_manifest:
        say(f"verify: {MANIFEST_NAME} left as it was: checks failed")
    return out


def updated_manifest(changes: Changes, results_dir: Path, commit: str, remeasured: dict[Path, dict]) -> dict:
    """The manifest after a passing verify at ``commit``: unchanged entries kept, changed ones stamped with
    ``commit`` (and the re-measured times of re-executed records), deletions recorded with their reasons."""
    old, files = changes.manifest["files"], {}
    changed = {p.relative_to(results_dir).as_posix() for p in changes.records}
    for rel, digest in changes.digests.items():
        record_rel = rel.rsplit(".", 1)[0] + ".json"
        if record_rel not in changed and old.get(rel, {}).get("sha256") == digest:
            files[rel] = old[rel]
            continue
        files[rel] = {"sha256": digest, "verified_at": commit}
        times = remeasured.get(results_dir / record_rel)
        if times is not None and rel.endswith(".json"):
            files[rel]["remeasured"] = {k: v for k, v in times.items() if v is not None}
    removed = {rel: entry for rel, entry in changes.manifest["removed"].items() if rel not in changes.digests}
    removed.update({rel: {"reason": why, "commit": commit} for rel, why in changes.deleted.items()})
    return {**changes.manifest, "files": files, "removed": removed}


def refused_path(path: Path, results_dir: Path) -> str | None:
    """Why a record path named on the command line is refused (outside ``results_dir``, a symlink, not a regular
    file), or None."""
    if not Path(path).absolute().is_relative_to(Path(results_dir).absolute()):
        return f"{path}: outside {results_dir}: only records under the results folder are verified"
    if Path(path).is_symlink() or any(p.is_symlink() for p in Path(path).absolute().parents):
        return f"{path}: a symlink: records must be regular files in the repository"
    if Path(path).exists() and not Path(path).is_file():
        return f"{path}: not a regular file"
    return None


def verify_paths(paths: list[Path], results_dir: Path, device: torch.device,
                 say: Callable[[str], None] = print, rng: random.Random | None = None) -> list[Outcome]:
    """:func:`verify_record` on named record files (no base commit, so no dropped-seed comparison)."""
    out, tasks = [], {}
    for path in paths:
        say(f"- {path}")
        refusal = refused_path(Path(path), Path(results_dir))
        if refusal is not None:
            out.append(Outcome(Path(path), False, refusal))
            continue
        try:
            out.append(verify_record(Path(path), load_record(path), Path(results_dir), device, None, tasks,
                                     rng=rng)[0])
        except HarnessError as err:
            out.append(Outcome(Path(path), False, f"{path}: {err}"))
    return out
