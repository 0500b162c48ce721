"""The supervised protocol: train with the method's loss or train step, select
a checkpoint on validation data, evaluate every split.

Built on the protocol kit: :func:`~harness.protocols.kit.fit` trains and keeps
the best epoch per selection rule (training-domain validation, and test-domain
validation as ``oracle_*`` where the task has an oracle split), then every
split is inferred once per rule and handed to the task's metric function.

Evidence: each seed keeps, per split, the predicted labels of each rule's
checkpoint (``<rule>:<split>.pred``, rule ``val`` or ``oracle``), the true
labels, domain and group ids (``<split>.y`` / ``.domain`` / ``.group``, the
same for every rule) and, on a binary task, the float32 score f(x)
(``<rule>:<split>.score``). Integer arrays
use the smallest signed dtype that holds them. :func:`recompute_with` turns a
suite's metric function into ``Task.recompute_fn``: it rebuilds each split as
:class:`SplitEvidence` (``pred``, ``y``, ``domain``, ``group``, ``correct`` and,
for binary tasks, ``logits``) and calls the same function, so a metric computed
from labels and binary scores is reproduced exactly. A metric that needs
K-class logits cannot be recomputed from this evidence and says so.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

from harness.core.method import Method
from harness.errors import HarnessError
from harness.protocols import register_protocol
from harness.protocols.kit import Outputs, RunContext, SeedResult, benchmark_step, fit, infer_splits, model_info

RULES = (("val", ""), ("oracle", "oracle_"))


def _small_int(t: Tensor) -> np.ndarray:
    a = t.cpu().numpy()
    for dtype in (np.int8, np.int16, np.int32):
        info = np.iinfo(dtype)
        if a.size == 0 or (a.min() >= info.min and a.max() <= info.max):
            return a.astype(dtype)
    return a.astype(np.int64)


def split_evidence(outputs: dict[str, Outputs], rule: str = "val") -> dict[str, np.ndarray]:
    """The compact arrays of one checkpoint's outputs (see the module docstring for the keys)."""
    arrays: dict[str, np.ndarray] = {}
    for split, out in outputs.items():
        arrays[f"{rule}:{split}.pred"] = _small_int(out.pred)
        if out.logits.ndim == 1:
            arrays[f"{rule}:{split}.score"] = out.logits.float().numpy()
        arrays[f"{split}.y"] = _small_int(out.y)
        for name in ("domain", "group"):
            value = getattr(out, name)
            if value is not None:
                arrays[f"{split}.{name}"] = _small_int(value)
    return arrays


@dataclass
class SplitEvidence:
    """A split rebuilt from evidence; offers what metric functions read from :class:`Outputs`."""

    pred: Tensor
    y: Tensor
    domain: Tensor | None
    group: Tensor | None
    score: Tensor | None

    @property
    def logits(self) -> Tensor:
        if self.score is None:
            raise HarnessError("the evidence keeps predicted labels only for K-class splits, not logits; "
                               "a metric that reads K-class logits cannot be recomputed from it")
        return self.score

    @property
    def correct(self) -> Tensor:
        return (self.pred == self.y).float()


def splits_from(arrays: dict[str, np.ndarray], rule: str = "val") -> dict[str, SplitEvidence]:
    """The splits of one rule's checkpoint rebuilt from a seed's arrays."""

    def get(key: str) -> Tensor | None:
        a = arrays.get(key)
        if a is None:
            return None
        return torch.from_numpy(np.asarray(a, dtype=np.float32 if a.dtype.kind == "f" else np.int64))

    head = f"{rule}:"
    splits = sorted(k[len(head):-len(".pred")] for k in arrays if k.startswith(head) and k.endswith(".pred"))
    return {s: SplitEvidence(get(f"{head}{s}.pred"), get(f"{s}.y"), get(f"{s}.domain"), get(f"{s}.group"),
                             get(f"{head}{s}.score")) for s in splits}


def recompute_with(metrics_fn: Callable[[dict[str, Any]], dict[str, Any]]
                   ) -> Callable[[dict[str, np.ndarray]], dict[str, float]]:
    """``Task.recompute_fn`` for a supervised task whose metrics come from ``metrics_fn(outputs)``."""

    def recompute(arrays: dict[str, np.ndarray]) -> dict[str, float]:
        metrics: dict[str, float] = {}
        for rule, prefix in RULES:
            splits = splits_from(arrays, rule)
            if not splits:
                continue
            found = metrics_fn(splits)
            found.pop("per_domain", None)
            metrics.update({prefix + k: float(v) for k, v in found.items()})
        return metrics

    return recompute


def evaluate(ctx: RunContext, fitted, rules: tuple[tuple[str, str], ...] = RULES,
             arrays: dict[str, np.ndarray] | None = None) -> tuple[dict[str, float], dict[str, float]]:
    """Metrics of every selection rule's checkpoint (prefixed per rule) and the primary rule's per-domain values.

    With ``arrays`` given, each rule's evidence is added to it.
    """
    task = ctx.task
    metrics: dict[str, float] = {}
    per_domain: dict[str, float] = {}
    for rule, prefix in rules:
        if rule != "val" and rule not in fitted.selected:
            continue
        fitted.load(rule)
        outputs = infer_splits(ctx, fitted.model)
        found = task.metrics_fn(outputs)
        if arrays is not None:
            arrays.update(split_evidence(outputs, rule))
        per = found.pop("per_domain", {}) if isinstance(found.get("per_domain"), dict) else {}
        metrics.update({prefix + k: float(v) for k, v in found.items()})
        if rule == "val":
            per_domain = {k: float(v) for k, v in per.items()}
    return metrics, per_domain


@register_protocol("supervised")
def run_supervised(task, method: Method, ctx: RunContext) -> SeedResult:
    model = task.model_factory().to(ctx.device)
    fitted = fit(ctx, model, selection={"val": task.selection_split, "oracle": task.oracle_split})
    arrays: dict[str, np.ndarray] = {}
    metrics, per_domain = evaluate(ctx, fitted, arrays=arrays)
    selected = fitted.load("val")
    return SeedResult(metrics, ctx.timer.summary(), per_domain, arrays=arrays, info={"model": model_info(model)},
                      train_step=benchmark_step(ctx, fitted), selected_epoch=selected)
