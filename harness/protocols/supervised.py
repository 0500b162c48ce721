"""The supervised protocol: train with the method's loss or train step, select
a checkpoint on validation data, evaluate every split.

Built on the protocol kit: :func:`~harness.protocols.kit.fit` trains and keeps
the best epoch per selection rule (training-domain validation, and test-domain
validation as ``oracle_*`` where the task has an oracle split), then every
split is inferred once per rule and handed to the task's metric function.
"""

from __future__ import annotations

from harness.method import Method
from harness.protocols.kit import RunContext, SeedResult, benchmark_step, fit, infer_splits, model_info


def evaluate(ctx: RunContext, fitted, rules: tuple[tuple[str, str], ...] = (("val", ""), ("oracle", "oracle_"))
             ) -> tuple[dict[str, float], dict[str, float]]:
    """Metrics of every selection rule's checkpoint (prefixed per rule) and the primary rule's per-domain values."""
    task = ctx.task
    metrics: dict[str, float] = {}
    per_domain: dict[str, float] = {}
    for rule, prefix in rules:
        if rule != "val" and rule not in fitted.selected:
            continue
        fitted.load(rule)
        found = task.metrics_fn(infer_splits(ctx, fitted.model))
        per = found.pop("per_domain", {}) if isinstance(found.get("per_domain"), dict) else {}
        metrics.update({prefix + k: float(v) for k, v in found.items()})
        if rule == "val":
            per_domain = {k: float(v) for k, v in per.items()}
    return metrics, per_domain


def run_supervised(task, method: Method, ctx: RunContext) -> SeedResult:
    model = task.model_factory().to(ctx.device)
    fitted = fit(ctx, model, selection={"val": task.selection_split, "oracle": task.oracle_split})
    metrics, per_domain = evaluate(ctx, fitted)
    selected = fitted.load("val")
    return SeedResult(metrics, ctx.timer.summary(), per_domain, info={"model": model_info(model)},
                      train_step=benchmark_step(ctx, fitted), selected_epoch=selected)
