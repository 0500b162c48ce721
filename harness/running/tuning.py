"""Choosing a case's settings without touching reported data.

A setting (a learning rate, a resolution) is chosen by its *selection metric* (training-domain validation
accuracy for the shift suite: DomainBed's rule) on *tuning seeds*, which no reported record may use. Every grid
point runs as its own case variant, nothing is written to ``results/``, and the outcome (grid, scores, choice,
seeds, metric, date) is kept as JSON under ``docs/tuning/`` so that the suite can cite it and records carry the
citation (``task_info.tuned``).

    python -m harness tune --suite shift --case pacs_pretrained-sketch --profile standard \
        --grid lr=1e-4,3e-4 --grid size=64,96
"""

from __future__ import annotations

import itertools
import json
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from harness.core.registry import create_method
from harness.core.task import CaseSpec
from harness.errors import UsageError
from harness.running.runner import run_case
from harness.suites.seeds import TUNING_DIR, TUNING_SEED_START, is_tuning_seed, tuning_path


def variant(spec: CaseSpec, setting: dict[str, Any]) -> CaseSpec:
    """The case with ``setting`` applied: budget fields (lr, epochs, ...) or case params (size, cap, ...)."""
    budget_fields = set(spec.budget.__dataclass_fields__)
    budget = {k: v for k, v in setting.items() if k in budget_fields}
    params = {k: v for k, v in setting.items() if k not in budget_fields}
    unknown = [k for k in params if k not in spec.params]
    if unknown:
        raise UsageError(f"tune: {', '.join(unknown)} is neither a budget field nor a parameter of {spec.case} "
                         f"(params: {', '.join(sorted(spec.params))})")
    return replace(spec, budget=replace(spec.budget, **budget), params={**spec.params, **params})


def tune(spec: CaseSpec, method: Any, grid: dict[str, list[Any]], metric: str, seeds: list[int],
         device: torch.device) -> dict[str, Any]:
    """Run every grid point on the tuning seeds; the choice is the best mean selection metric (ties: first).

    A grid key that is one of the method's hparams (an unlearning method's ``lr_factor``) sets that hparam;
    others set budget fields or case params (:func:`variant`). The best is the highest mean, or the lowest for a
    metric the record marks lower-is-better (the unlearning gap).
    """
    bad = [s for s in seeds if not is_tuning_seed(s)]
    if bad:
        raise UsageError(f"tune: seeds {bad} can be reported; tuning seeds start at {TUNING_SEED_START}")
    rows = []
    lower = False
    for values in itertools.product(*grid.values()):
        setting = dict(zip(grid, values))
        hp = {k: v for k, v in setting.items() if k in type(method).hparams}
        case_setting = {k: v for k, v in setting.items() if k not in hp}
        run_method = create_method(method.name, {**method.hparams, **hp}) if hp else method
        record = run_case(variant(spec, case_setting), run_method, seeds, device).record
        if metric not in record["metrics"]:
            raise UsageError(f"tune: {spec.case} reports no {metric!r}; metrics: {', '.join(record['metrics'])}")
        lower = record["metrics"][metric].get("higher_is_better") is False
        per_seed = record["metrics"][metric]["per_seed"]
        rows.append({"setting": setting, "per_seed": per_seed, "mean": float(np.mean(per_seed))})
    best = (min if lower else max)(rows, key=lambda r: r["mean"])  # min/max keep the first of equal means
    out = {"suite": spec.suite, "case": spec.case, "profile": spec.profile, "method": method.name,
           "metric": metric, "seeds": seeds, "grid": grid, "rows": rows, "chosen": best["setting"],
           "date": time.strftime("%Y-%m-%d")}
    if any(k in type(method).hparams for k in grid):
        out["method_hparams"] = True  # filed per method: <suite>__<case>__<profile>__<method>.json
        out["lower_is_better"] = lower
    return out


def write_tuning(result: dict[str, Any], folder: Path = TUNING_DIR) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    method = result["method"] if result.get("method_hparams") else None
    path = tuning_path(result["suite"], result["case"], result["profile"], method, folder)
    path.write_text(json.dumps(result, indent=1, sort_keys=True) + "\n")
    return path


__all__ = ["tune", "variant", "write_tuning"]
