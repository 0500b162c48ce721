"""``python -m harness launch``: the suite matrix as a job array, through submitit.

One array task per (case, method), submitted with ``executor.map_array``.
Each task runs :func:`harness.running.runner.run_case` over the seeds and writes its
record atomically into the shared results folder. Every (case, method,
profile, hparams) has its own record path, so merging is by path: the
folder *is* the merged result, and the launcher reads the records back for
its summary.

A task that SLURM preempts or times out is requeued by submitit (the runner is
``Checkpointable``) and comes back with ``resume`` on: a record already
written with the same fingerprint, seeds and speed options is kept, not
recomputed. ``--resume`` on the command line also drops such tasks before
submission. ``--executor local`` runs the same tasks as local processes (all at
once: keep it to a few, or use ``pytest -n`` on one machine).

The pytest hook ``pytest_harness_update_record`` is a pytest feature and does
not run here.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import submitit
from submitit.helpers import DelayedSubmission

from harness.core.environment import resolve_device
from harness.core.registry import create_method, load_method_module
from harness.core.speed import SpeedOptions
from harness.core.task import CaseSpec
from harness.errors import DataMissing, Unsupported, UsageError
from harness.records import load_record, record_path
from harness.running.config import make_config
from harness.running.runner import CaseResult, existing_record, run_case, summary_rows
from harness.suites import case_seeds, case_specs, get_suite

EXECUTORS = ("slurm", "local")


@dataclass(frozen=True)
class CaseJob:
    """One array task: everything a fresh process on a cluster node needs (plain, picklable values)."""

    suite: str
    case: str
    method: str
    profile: str
    seeds: tuple[int, ...]
    results_dir: str
    overrides: tuple[tuple[str, Any], ...] = ()  # typed hparam overrides of this method
    device: str = "auto"
    method_modules: tuple[str, ...] = ()  # absolute paths
    datasets: tuple[str, ...] = ()
    data_path: str = "auto"
    speed: SpeedOptions = SpeedOptions()
    strict_data: bool = False
    resume: bool = False

    @property
    def name(self) -> str:
        return f"{self.suite}/{self.case}/{self.method}"


def find_spec(suite: str, case: str, profile: str, datasets: tuple[str, ...] = ()) -> CaseSpec:
    for spec in case_specs(get_suite(suite), profile, list(datasets)):
        if spec.case == case:
            return spec
    raise UsageError(f"suite {suite!r} has no case {case!r} in profile {profile!r}")


def run_job(job: CaseJob) -> dict[str, Any]:
    """Run one (case, method) over its seeds; a skip is an outcome, not an error."""
    for path in job.method_modules:
        load_method_module(path)
    spec = find_spec(job.suite, job.case, job.profile, job.datasets)
    method = create_method(job.method, dict(job.overrides))
    try:
        result = run_case(spec, method, list(job.seeds), resolve_device(job.device), Path(job.results_dir),
                          dict(job.overrides), job.resume, data_path=job.data_path, speed=job.speed)
    except DataMissing as err:
        if job.strict_data:
            raise
        return {"job": job.name, "status": "skipped", "reason": str(err)}
    except Unsupported as err:
        return {"job": job.name, "status": "skipped", "reason": str(err)}
    status = "resumed" if result.resumed else result.record["status"]
    return {"job": job.name, "status": status, "path": str(result.path)}


class JobRunner(submitit.helpers.Checkpointable):
    """The array task's callable. On preemption or timeout submitit requeues it with ``resume`` on."""

    def __call__(self, job: CaseJob) -> dict[str, Any]:
        return run_job(job)

    def checkpoint(self, job: CaseJob) -> DelayedSubmission:
        return DelayedSubmission(self, replace(job, resume=True))


def plan_jobs(suites: list[str], method: str, profile: str = "smoke", seeds: int | None = None,
              results_dir: str = "results", hparams: list[str] | None = None, cases: list[str] | None = None,
              device: str = "auto", method_modules: list[str] | None = None, datasets: list[str] | None = None,
              data_path: str = "auto", speed: SpeedOptions | None = None, strict_data: bool = False,
              resume: bool = False) -> tuple[list[CaseJob], list[str]]:
    """The (case, method) tasks to submit, and one line per task left out (protocol unsupported, or done).

    Methods, hparams and options are checked here, before anything is submitted.
    """
    modules = [str(Path(p).resolve()) for p in method_modules or []]
    cfg = make_config(method, profile, seeds, "cpu", hparams, results_dir, resume, modules, strict_data, datasets,
                      data_path, speed)
    jobs, left_out = [], []
    for suite in suites:
        for spec in case_specs(get_suite(suite), profile, cfg.datasets):
            if cases and not any(fnmatch.fnmatch(spec.case, pat) for pat in cases):
                continue
            for name in cfg.methods:
                overrides = cfg.overrides.get(name, {})
                try:
                    method = cfg.make_method(name)
                    method.check_protocol(spec.protocol)
                except Unsupported as err:
                    left_out.append(f"{suite}/{spec.case}/{name}: skipped, {err}")
                    continue
                path = record_path(cfg.results_dir, spec.suite, spec.case, name, profile, overrides)
                job_seeds = case_seeds(spec, seeds)
                if resume and existing_record(path, spec, job_seeds, type(method), cfg.speed) is not None:
                    left_out.append(f"{suite}/{spec.case}/{name}: --resume, {path} is done")
                    continue
                jobs.append(CaseJob(suite, spec.case, name, profile, tuple(job_seeds), str(Path(results_dir).resolve()),
                                    tuple(sorted(overrides.items())), device, tuple(modules),
                                    tuple(cfg.datasets), data_path, cfg.speed, strict_data, resume))
    if not jobs and not left_out:
        raise UsageError(f"no cases matched: suites {', '.join(suites)}, profile {profile}"
                         + (f", --case {' '.join(cases)}" if cases else ""))
    return jobs, left_out


def executor_for(kind: str, folder: str | Path, gpus: int, cpus: int, timeout_min: int, mem_gb: float | None = None,
                 partition: str | None = None, array_parallelism: int | None = None,
                 slurm_extra: dict[str, str] | None = None) -> submitit.AutoExecutor:
    if kind not in EXECUTORS:
        raise UsageError(f"--executor {kind!r}: choose one of {', '.join(EXECUTORS)}")
    executor = submitit.AutoExecutor(folder=str(folder), cluster=kind)
    params: dict[str, Any] = dict(name="harness", timeout_min=timeout_min, gpus_per_node=gpus, cpus_per_task=cpus,
                                  tasks_per_node=1, nodes=1)
    if mem_gb is not None:
        params["mem_gb"] = mem_gb
    if partition:
        params["slurm_partition"] = partition
    if array_parallelism:
        params["slurm_array_parallelism"] = array_parallelism
    if slurm_extra:
        params["slurm_additional_parameters"] = dict(slurm_extra)
    executor.update_parameters(**params)
    return executor


def collect(jobs: list[submitit.Job]) -> tuple[list[CaseResult], list[str]]:
    """Wait for every task; the records they wrote (read back from disk) and one line per skip or failure."""
    results, notes = [], []
    for job in jobs:
        try:
            outcome = job.result()
        except Exception as err:  # a failed task: name it and point at its log, the others still count
            first = str(err).strip().splitlines()[-1] if str(err).strip() else type(err).__name__
            notes.append(f"task {job.job_id} failed: {first} (log: {job.paths.stderr})")
            continue
        if "path" in outcome:
            path = Path(outcome["path"])
            results.append(CaseResult(load_record(path), path, outcome["status"] == "resumed"))
        else:
            notes.append(f"{outcome['job']}: {outcome['status']}, {outcome.get('reason', '')}")
    return results, notes


def parse_slurm_extra(items: list[str]) -> dict[str, str]:
    out = {}
    for item in items:
        if "=" not in item:
            raise UsageError(f"--slurm-arg {item!r}: expected KEY=VALUE, e.g. account=myproj")
        key, value = item.split("=", 1)
        out[key.strip()] = value
    return out


def main(args: Any) -> int:
    """The ``launch`` subcommand (arguments from :func:`harness.cli.build_parser`)."""
    from tabulate import tabulate


    speed = SpeedOptions(args.compile, args.precision, args.profile_kernels)
    suites = [s.strip() for s in args.suite.split(",") if s.strip()]
    jobs, left_out = plan_jobs(suites, args.method, args.profile, args.seeds, args.results_dir, args.hparam,
                               args.case, args.device, args.method_module, args.dataset, args.data_path, speed,
                               args.strict_data, args.resume)
    for line in left_out:
        print(line)
    if not jobs:
        print("nothing to submit")
        return 0
    gpus = args.gpus if args.gpus is not None else (1 if args.executor == "slurm" else 0)
    executor = executor_for(args.executor, args.folder, gpus, args.cpus, args.timeout_min, args.mem_gb,
                            args.partition, args.array_parallelism, parse_slurm_extra(args.slurm_arg))
    submitted = executor.map_array(JobRunner(), jobs)
    print(f"submitted {len(submitted)} task(s) to {args.executor}: job {submitted[0].job_id.split('_')[0]}, "
          f"logs in {args.folder}")
    if args.no_wait:
        return 0
    results, notes = collect(submitted)
    for line in notes:
        print(line)
    if results:
        results.sort(key=lambda r: (r.record["suite"], r.record["case"], r.record["method"]))
        headers = ["suite", "case", "method", "primary (mean ± std)", "seeds", "step time", "status"]
        print(tabulate(summary_rows(results), headers=headers))
        print(f"records: {Path(args.results_dir).resolve()}")
    return 1 if any(" failed: " in n for n in notes) else 0


__all__ = ["CaseJob", "JobRunner", "collect", "executor_for", "find_spec", "plan_jobs", "run_job"]
