"""DomainBed's protocol: random hyperparameter sweeps of a method on a case, stored run by run.

A sweep draws ``draws`` hparam sets and trains each ``trials`` times (trial t is seed index t of the case's seed
stream)::

    python -m harness sweep --suite shift --case pacs-sketch --method coral --draws 20 --trials 3 --loo

* **Draws.** Draw 0 is the defaults (the method's hparams, the case's budget), as DomainBed's hparams seed 0.
  Draw j > 0 samples the method's ``search_space`` and the optimiser's settings
  (:data:`harness.core.search.BUDGET_SPACES`: DomainBed's ranges, "pretrained" when the case fine-tunes
  ImageNet weights, "small" otherwise), each value from a generator seeded by (suite, case, method, j, name):
  a deterministic function of those, shared by every trial. (DomainBed seeds a draw with the trial too, so each
  trial searches its own hparams; here the trials of a draw are repeats of one setting, so a chosen setting has
  a mean +- SE over trials.)
* **Runs.** Each (draw, trial) trains the case as the supervised protocol does: checkpoints by training-domain
  validation and, apart, by test-domain validation (the oracle). With ``loo`` each (draw, trial) also trains
  once per training domain with that domain held out as well (DomainBed's leave-one-domain-out folds; k extra
  runs per draw and trial). A case takes part when its ``test`` parameter lists its held-out domains (the shift
  suite's convention); the fold case is the same case with the fold domain added to ``test``.
* **Storage.** One JSON file per run under ``<root>/<suite>/<profile>/<case>/<method>/``
  (default root ``out/sweeps``, never ``results/``), written atomically when the run ends. A sweep skips runs
  whose file holds the same identity (case fingerprint, draw, hparams, trial, fold) and code digests, so an
  interrupted sweep resumes where it stopped and a half-finished run restarts from scratch. Two sweeps writing
  the same folder at once may repeat a run; they do not corrupt one another (last rename wins).

Each run keeps what the three selection rules need (:mod:`harness.reporting.sweeps`), each selection score
computed from its own evidence: ``selection.val`` (accuracy of the validation checkpoint on the training domains'
validation split), ``selection.oracle`` (accuracy of the oracle checkpoint on the held-out domains' oracle
split), and for a fold run ``fold_acc`` (accuracy on the fold domain, which that run never trained on); the test
metrics (``test.val``, ``test.oracle``) are kept apart and no rule reads them.

Runs go one after another, or over ``workers`` local processes, or (``executor="slurm"``) as a submitit job
array through :func:`harness.running.launch.executor_for`.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import numpy as np
import torch

from harness.core.digest import REPO
from harness.core.method import Method
from harness.core.registry import create_method, get_method_class
from harness.core.search import BUDGET_SPACES, describe_space, draw
from harness.core.task import Budget, CaseSpec, Task
from harness.errors import HparamError, MethodError, Unsupported, UsageError
from harness.records.provenance import code_versions
from harness.running.launch import executor_for
from harness.running.runner import run_case
from harness.running.tuning import variant

SWEEP_ROOT = REPO / "out" / "sweeps"
SCHEMA = "harness-sweep-run/1"


def budget_kind(task: Task) -> str:
    """Which of DomainBed's optimiser ranges fits the case: fine-tuning pretrained weights or training from scratch."""
    return "pretrained" if task.info.get("pretrained") else "small"


def search_space(method_cls: type[Method], kind: str) -> dict[str, Any]:
    """The optimiser's ranges for ``kind`` and the method's own; a method's entry may override an optimiser one."""
    own = getattr(method_cls, "search_space", {})  # declared beside the method's hparams (see Method's docstring)
    unknown = sorted(set(own) - set(method_cls.hparams) - set(Budget.__dataclass_fields__))
    if unknown:
        raise UsageError(f"{method_cls.name}: search_space names {unknown}, which are neither its hparams "
                         f"({', '.join(sorted(method_cls.hparams)) or 'none'}) nor budget fields")
    return {**BUDGET_SPACES[kind], **own}


def draw_setting(method_cls: type[Method], spec: CaseSpec, kind: str, j: int) -> tuple[dict[str, Any], dict[str, Any]]:
    """Draw ``j``'s (method hparams, budget fields): the defaults for j = 0, else a sample seeded by
    (suite, case, method, j, hparam name)."""
    budget_fields = set(spec.budget.__dataclass_fields__)
    if j == 0:
        values: dict[str, Any] = {}
    else:
        values = draw(search_space(method_cls, kind), spec.suite, spec.case, method_cls.name, j)
    hparams = {**method_cls.hparams, **{k: v for k, v in values.items() if k in method_cls.hparams}}
    budget = {k: v for k, v in values.items() if k in budget_fields and k not in method_cls.hparams}
    budget = {k: budget.get(k, getattr(spec.budget, k)) for k in sorted(set(budget) | set(BUDGET_SPACES[kind]))}
    return hparams, budget


def fold_spec(spec: CaseSpec, domain: str) -> CaseSpec:
    """The case with ``domain`` held out too: a leave-one-domain-out fold."""
    held = spec.params.get("test")
    if not isinstance(held, list):
        raise UsageError(f"{spec.suite}/{spec.case} names no held-out domains (a 'test' list parameter), so it has "
                         "no leave-one-domain-out folds")
    return variant(spec, {"test": [*held, domain]})


def training_domains(task: Task) -> list[str]:
    """The case's training domains, in the order the task numbers them."""
    return list(task.data.domain_names[: task.num_domains])


@dataclass(frozen=True)
class SweepRun:
    """One training run of a sweep: draw ``draw``, trial ``trial``, and a leave-one-domain-out ``fold`` or None."""

    spec: CaseSpec  # the case as asked for, before the draw's budget
    method: str
    draw: int
    trial: int
    fold: str | None
    hparams: dict[str, Any]
    budget: dict[str, Any]
    path: Path
    code: dict[str, str] = field(default_factory=dict)

    def identity(self) -> dict[str, Any]:
        s = self.spec
        return {"suite": s.suite, "case": s.case, "profile": s.profile, "fingerprint": s.fingerprint,
                "method": self.method, "draw": self.draw, "trial": self.trial, "fold": self.fold,
                "hparams": self.hparams, "budget": self.budget}

    def done(self) -> bool:
        """A finished run of the same identity and code is on disk."""
        if not self.path.is_file():
            return False
        try:
            old = json.loads(self.path.read_text())
        except (OSError, ValueError):
            return False
        same = json.loads(json.dumps(self.identity(), default=str))
        return old.get("schema") == SCHEMA and old.get("identity") == same and old.get("code") == self.code


def run_path(root: Path, spec: CaseSpec, method: str, j: int, trial: int, fold: str | None) -> Path:
    name = f"d{j:03d}_t{trial}" + (f"_loo-{fold}" if fold else "") + ".json"
    return Path(root) / spec.suite / spec.profile / spec.case / method / name


def plan(spec: CaseSpec, method: str, draws: int, trials: int, loo: bool = False, root: Path = SWEEP_ROOT,
         task: Task | None = None) -> list[SweepRun]:
    """Every run of a sweep (finished or not), main runs first. Builds the task once to check the method can
    run it and to read its training domains."""
    if draws < 1 or trials < 1:
        raise UsageError(f"sweep: --draws and --trials must be >= 1 (got {draws}, {trials})")
    cls = get_method_class(method)
    task = task or spec.build(spec)
    instance = cls()
    instance.check_task(task.sealed())  # Unsupported: the whole sweep cannot run, said before any training
    kind = budget_kind(task)
    code = code_versions(cls, spec)
    folds: list[str | None] = [None] + (training_domains(task) if loo else [])
    if loo and len(folds) < 3:
        raise UsageError(f"sweep --loo: {spec.case} has {len(folds) - 1} training domain(s); leave-one-domain-out "
                         "needs at least 2")
    if loo and cls.needs_domains and len(folds) < 4:  # each fold keeps k - 1 domains; the method needs 2
        raise UsageError(f"sweep --loo: {method} needs 2 training domains and the folds of {spec.case} keep "
                         f"{len(folds) - 2}; sweep without --loo, or on a case with 3 or more training domains")
    runs = []
    for fold in folds:
        for j in range(draws):
            hparams, budget = draw_setting(cls, spec, kind, j)
            for t in range(trials):
                runs.append(SweepRun(spec, method, j, t, fold, hparams, budget,
                                     run_path(root, spec, method, j, t, fold), code))
    return runs


def _write_json(path: Path, payload: dict[str, Any]) -> None:
    """Atomic: a temp file beside ``path``, then a rename, so an interrupted run leaves no file to resume from."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(json.dumps(payload, indent=1, sort_keys=True, default=str) + "\n")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _accuracy(arrays: dict[str, np.ndarray], rule: str, split: str | None,
              mask: Callable[[dict[str, np.ndarray]], np.ndarray] | None = None) -> float | None:
    """Accuracy of ``rule``'s checkpoint on ``split`` from a seed's evidence (None when it was not kept)."""
    if split is None or f"{rule}:{split}.pred" not in arrays:
        return None
    correct = np.asarray(arrays[f"{rule}:{split}.pred"]) == np.asarray(arrays[f"{split}.y"])
    if mask is not None:
        correct = correct[mask(arrays)]
    return float(correct.mean()) if correct.size else None


def _metric(record: dict, name: str) -> float | None:
    m = record["metrics"].get(name)
    return None if m is None else m["per_seed"][0]


def execute(run: SweepRun, device: str = "cpu") -> dict[str, Any]:
    """Train one run and write its file; returns what was written."""
    spec = fold_spec(run.spec, run.fold) if run.fold else run.spec
    spec = variant(spec, run.budget)
    method = create_method(run.method, run.hparams)
    out: dict[str, Any] = {"schema": SCHEMA, "identity": run.identity(), "code": run.code,
                           "date": time.strftime("%Y-%m-%dT%H:%M:%S")}
    t0 = time.perf_counter()
    try:
        task = spec.build(spec)
        result = run_case(spec, method, [run.trial], torch.device(device), task=task)
    except Unsupported as err:  # a fold with too few domains for the method: its rule has no score
        out.update(status="unsupported", reason=str(err))
    except (HparamError, MethodError) as err:  # a drawn value the method refuses, or its step fails: that draw
        out.update(status="failed", reason=str(err))  # has no score; the same code would fail the same way again
    else:
        record = result.record
        arrays = result.arrays.get(run.trial, {})
        primary = record["primary_metric"]
        out.update(status=record["status"], primary_metric=primary,
                   diverged=record.get("diverged"),
                   selection={"val": _accuracy(arrays, "val", task.selection_split),
                              "oracle": _accuracy(arrays, "oracle", task.oracle_split)},
                   test={"val": _metric(record, primary), "oracle": _metric(record, "oracle_" + primary)},
                   per_domain={k: v["per_seed"][0] for k, v in record["per_domain"].items()},
                   metrics={k: v["per_seed"][0] for k, v in record["metrics"].items()},
                   selected_epoch=record["run"].get("selected_epoch"))
        if run.fold:
            # the fold domain is a held-out ("test") domain of this run only; the case's own held-out domains
            # are held out here too and are never read
            fold_id = list(task.data.domain_names).index(run.fold)
            out["fold_acc"] = _accuracy(arrays, "val", "test", lambda a: np.asarray(a["test.domain"]) == fold_id)
    out["wall_s"] = time.perf_counter() - t0
    _write_json(run.path, out)
    return out


def _execute_job(args: tuple[SweepRun, str]) -> tuple[str, dict[str, Any]]:
    torch.set_num_threads(1)  # one core per worker process: workers, not threads, share the machine
    return args[0].path.name, execute(*args)


def sweep(spec: CaseSpec, method: str, draws: int, trials: int, loo: bool = False, root: Path = SWEEP_ROOT,
          device: str = "cpu", workers: int = 1, executor: str = "inline",
          progress: Callable[[str], None] | None = None, task: Task | None = None,
          **executor_args: Any) -> dict[str, Any]:
    """Run every unfinished run of a sweep; returns counts and the run folder.

    ``executor``: "inline" (this process, or ``workers`` spawned processes) or a submitit kind ("slurm",
    "local") with ``executor_args`` as :func:`harness.running.launch.executor_for` takes them.
    """
    task = task or spec.build(spec)
    runs = plan(spec, method, draws, trials, loo, root, task)
    todo = [r for r in runs if not r.done()]
    say = progress or (lambda line: None)
    say(f"sweep {spec.suite}/{spec.case} {method} ({spec.profile}): {len(runs)} runs, {len(runs) - len(todo)} "
        f"already done, {len(todo)} to run")
    t0 = time.perf_counter()
    failed = 0
    if executor == "inline" and workers <= 1:
        for i, r in enumerate(todo, 1):
            out = execute(r, device)
            say(f"[{i}/{len(todo)}] {r.path.name}: {out['status']} ({out['wall_s']:.1f}s)")
    elif executor == "inline":
        with ProcessPoolExecutor(max_workers=workers, mp_context=get_context("spawn")) as pool:
            for i, (name, out) in enumerate(pool.map(_execute_job, [(r, device) for r in todo]), 1):
                say(f"[{i}/{len(todo)}] {name}: {out['status']} ({out['wall_s']:.1f}s)")
    else:
        ex = executor_for(executor, root / "submitit", **executor_args)
        jobs = ex.map_array(_execute_job, [(r, device) for r in todo])
        for job in jobs:
            try:
                job.result()
            except Exception as err:  # noqa: BLE001 - a failed array task is reported, the others are kept
                failed += 1
                say(f"job {job.job_id} failed: {err}")
    folder = runs[0].path.parent
    space = describe_space(search_space(get_method_class(method), budget_kind(task)))
    _write_json(folder / "space.json", {"method": method, "space": space, "draw 0": "the defaults"})
    return {"runs": len(runs), "ran": len(todo) - failed, "failed": failed, "folder": folder,
            "wall_s": time.perf_counter() - t0}


__all__ = ["SWEEP_ROOT", "SweepRun", "budget_kind", "draw_setting", "execute", "fold_spec", "plan",
           "search_space", "sweep", "training_domains"]
