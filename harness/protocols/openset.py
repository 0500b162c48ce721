"""The open-set protocol, after Vaze et al. (ICLR 2022), "Open-Set Recognition: a Good Closed-Set Classifier is All
You Need?", and its Semantic Shift Benchmark.

One seed of one (case, method):

1. **Closed-set model.** A classifier over the known classes is trained by the *trainer*: the method itself when it
   trains (any supervised method, the losses and DG families, and erm-strong), or, for an open-set score (a method
   with a ``trainer`` hparam, see baselines/osr/), the method that hparam names, default ``erm``, at its default
   hparams. The model is trained once per (task fingerprint, data content, trainer, trainer hparams, seed, device
   type, precision, code digest) through :class:`~harness.protocols.store.ModelStore` and reused by every score;
   its train and test outputs (logits, penultimate features) are cached beside it, so a second score neither
   retrains nor re-infers. Training uses the trainer's budget (erm-strong's schedule and augmentation) and the last
   epoch is evaluated: the SSB protocol has no validation data for unknowns, so nothing is selected.
   At a few epochs (:func:`checkpoint_epochs`, plus the last) the closed-set accuracy and the MLS AUROC on the test
   split are kept (record ``run.checkpoints``: ``[epoch, acc, auroc]`` per seed): the points of the
   accuracy-AUROC correlation.
2. **Score.** ``method.calibrate(model, train_outputs, state)`` when the method overrides it, then
   ``method.score(logits, features)`` on the test outputs, or ``method.score_inputs(model, x, state)`` per
   evaluation batch for input-perturbation scores (ODIN).
   A score that declares a hyperparameter grid in its file (class attribute ``search``) first has its setting
   chosen by :func:`choose_hparams` (OpenOOD v1.5's automatic parameter search) on the task's validation splits
   ``val_known`` / ``val_unknown`` when it has them (the CIFAR-10 cases: see :mod:`harness.suites.openset`), never
   on the test split; the record's ``run.search`` says, per seed, what was chosen, the validation AUROC of every
   grid point and what data it was chosen on. Cases without validation unknowns keep the file's defaults and say so.
   Hparams set with ``--hparam`` are not searched.
3. **Metrics** come from the seed's arrays (``y``, ``pred``, ``part``, ``score``) through the task's ``metrics_fn``,
   which suites set to :func:`openset_metrics_from_arrays` (also their ``recompute_fn``). A training method's row is
   scored with its own score (MLS unless it overrides ``score``) and, for comparison, with MSP: every metric again
   with the suffix ``_msp`` (array ``score_msp``).

What a suite's open-set task provides: splits ``train`` (known classes only) and ``test`` (known and unknown);
``num_classes`` = the number of known classes K, with unknown samples labelled K or above in ``task.data.y``;
``task.data.meta["openset_part"]``, a part code per sample; and ``task.info["openset"]`` naming the parts and the
evaluation groups (see :func:`openset_metrics_from_arrays`) and, optionally, how many intermediate checkpoints to
evaluate (``"checkpoints"``, default 3: a test-set inference each, which costs seconds on a pretrained backbone).

Timing: a training method's row reports its training steps (kept with the stored model, so a reused model reports
the same figures); a score's row reports the time to score one evaluation batch.
"""

from __future__ import annotations

import copy
import itertools
import sys
from collections.abc import Callable
from dataclasses import asdict
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from harness.core.digest import code_digest
from harness.core.method import Method, State
from harness.core.registry import create_method
from harness.core.timing import StepStats, StepTimer
from harness.data import source as data_source
from harness.errors import HarnessError, Unsupported, UsageError
from harness.metrics.openset import auroc, openood_metrics, openset_metrics
from harness.protocols import register_protocol
from harness.protocols.kit import (
    Outputs,
    RunContext,
    SeedResult,
    fit,
    infer,
    make_optimizer,
    train_batches,
    train_epoch,
)
from harness.protocols.store import ModelStore, get_or_compute, store_key

TRAINER_HPARAM = "trainer"
STORE = "openset"
INTERMEDIATE_CHECKPOINTS = 3
FPR_METRICS = ("fpr95", "fpr95_openood")  # ours (knowns accepted at 95%) and OpenOOD v1.5's (unknowns rejected)


# -- evaluation --------------------------------------------------------------------------------------


def openset_metrics_from_arrays(arrays: dict[str, np.ndarray], num_known: int,
                                evaluation: dict[str, Any]) -> dict[str, float]:
    """A seed's metrics from its arrays: closed-set accuracy and the open-set metrics per evaluation group.

    ``arrays``: ``y`` (known classes 0..K-1, unknown >= K), ``pred`` (closed-set argmax), ``part`` (index into
    ``evaluation["parts"]``), ``score`` and optionally ``score_msp``. ``evaluation["groups"]`` maps a metric
    suffix to the parts it pools (``""`` is the case's main evaluation); a group's knowns are its samples with
    y < K and its unknowns those with y >= K. ``acc<suffix>`` is reported for the suffixes in
    ``evaluation["acc_groups"]``; ``auroc``, ``oscr``, ``fpr95``, ``aupr_in`` and ``aupr_out`` (definitions in
    :mod:`harness.metrics.openset`, unknown = positive for AUROC) for every group, with OpenOOD v1.5's conventions
    beside them (``fpr95_openood``, ``aupr_in_openood``, ``aupr_out_openood``, ``ccr_fpr1e-1`` .. ``ccr_fpr1e-4``;
    how they differ from ours is in that module's docstring), then all again from ``score_msp`` with the suffix
    ``_msp``.
    """
    y, pred, part = (np.asarray(arrays[k]).astype(np.int64) for k in ("y", "pred", "part"))
    scores = {tag: np.asarray(arrays[f"score{tag}"], dtype=np.float32) for tag in ("", "_msp")
              if f"score{tag}" in arrays}
    codes = {name: i for i, name in enumerate(evaluation["parts"])}
    known = y < num_known
    out: dict[str, float] = {}
    for suffix, names in evaluation["groups"].items():
        members = np.isin(part, [codes[n] for n in names])
        k, u = members & known, members & ~known
        correct = pred[k] == y[k]
        if suffix in evaluation["acc_groups"]:
            out[f"acc{suffix}"] = float(correct.mean()) if correct.size else float("nan")
        for tag, s in scores.items():
            both = {**openset_metrics(s[k], s[u], correct), **openood_metrics(s[k], s[u], correct)}
            for name, value in both.items():
                out[f"{name}{suffix}{tag}"] = float(value)
    return out


def lower_is_better(evaluation: dict[str, Any]) -> frozenset[str]:
    """FPR@95 in both conventions, of every group, with and without ``_msp``: the open-set metrics where lower is
    better."""
    return frozenset(f"{name}{suffix}{tag}" for name in FPR_METRICS for suffix in evaluation["groups"]
                     for tag in ("", "_msp"))


def seed_arrays(task: Any, out: Outputs, scores: dict[str, Tensor]) -> dict[str, np.ndarray]:
    """Compact evidence of one seed: labels and predictions as small ints, scores as float32."""
    part = task.data.meta["openset_part"][out.index]
    return {"y": out.y.numpy().astype(np.int16), "pred": out.pred.numpy().astype(np.int16),
            "part": part.numpy().astype(np.int8),
            **{f"score{tag}": s.detach().float().cpu().numpy() for tag, s in scores.items()}}


def msp(logits: Tensor) -> Tensor:
    return logits.softmax(dim=1).max(dim=1).values


def mls(logits: Tensor) -> Tensor:
    return logits.max(dim=1).values


def acc_and_auroc(task: Any, out: Outputs) -> tuple[float, float]:
    """Closed-set accuracy and MLS AUROC of the case's main evaluation group (a checkpoint's point)."""
    m = task.metrics_fn(seed_arrays(task, out, {"": mls(out.logits)}))
    return m["acc"], m["auroc"]


# -- the closed-set model ----------------------------------------------------------------------------


def trainer_of(method: Method) -> Method:
    """The method that trains the closed-set model: ``method`` itself, or the one its ``trainer`` hparam names."""
    name = method.hparams.get(TRAINER_HPARAM)
    if name is None:
        return method
    trainer = create_method(name)
    if TRAINER_HPARAM in trainer.hparams:
        raise UsageError(f"{method.name}: trainer={name!r} is itself an open-set score; name a training method "
                         "(erm, erm-strong, a loss or a DG method)")
    return trainer


def trainer_label(trainer: Method) -> str:
    """The trainer's name, with its non-default hparams: how records and findings tell closed-set models apart."""
    changed = {k: v for k, v in trainer.hparams.items() if type(trainer).hparams.get(k) != v}
    return trainer.name + (str(dict(sorted(changed.items()))) if changed else "")


def checkpoint_epochs(epochs: int, n: int = INTERMEDIATE_CHECKPOINTS) -> list[int]:
    """Up to ``n`` evenly spread epochs before the last (the last is always evaluated)."""
    return sorted({(i + 1) * epochs // (n + 1) - 1 for i in range(n)} - {-1, epochs - 1})


def model_key(ctx: RunContext, trainer: Method) -> str:
    """Everything that shapes the closed-set weights, including the code that trains them."""
    code = code_digest(type(trainer), sys.modules[__name__], data_source, ctx.task.spec.build)
    return store_key(task=ctx.task.fingerprint, data=ctx.task.data.fingerprint, trainer=trainer.name,
                     hparams=trainer.hparams, seed=ctx.seed, device=ctx.device.type, code=code,
                     precision=ctx.speed.precision, compile=ctx.speed.compile)


def closed_set_model(ctx: RunContext, trainer: Method) -> tuple[nn.Module, dict[str, Any], str]:
    """The trained closed-set model of this seed (from the store, or trained now) with its training facts."""
    task = ctx.task
    tctx = RunContext.create(task, trainer, ctx.device, ctx.seed, source=ctx.source, speed=ctx.speed)  # its budget
    key = model_key(ctx, trainer)
    at = checkpoint_epochs(tctx.budget.epochs, task.info["openset"].get("checkpoints", INTERMEDIATE_CHECKPOINTS))

    def train(model: nn.Module) -> dict[str, Any]:
        history: list[list[float]] = []

        def checkpoint(epoch: int, m: nn.Module) -> None:
            if epoch in at:
                history.append([epoch, *acc_and_auroc(task, infer(tctx, m, "test"))])

        fit(tctx, model, method=trainer, on_epoch_end=checkpoint)
        return {"trainer": trainer_label(trainer), "epochs": tctx.budget.epochs, "checkpoints": history,
                "timing": asdict(tctx.timer.summary()), "budget": tctx.budget.fingerprint_dict()}

    model, info = ModelStore(STORE).get(key, task.model_factory, train, ctx.device)
    return model, info, key


def cached_outputs(ctx: RunContext, model: nn.Module, key: str, split: str) -> Outputs:
    """Logits and features of ``split`` for the stored model ``key``, computed once and kept beside the model."""
    def compute() -> tuple[dict[str, torch.Tensor], dict]:
        out = infer(ctx, model, split, features=True)
        return {"logits": out.logits, "y": out.y, "features": out.features, "index": out.index}, {}

    t, _, _ = get_or_compute(ModelStore(STORE).folder / f"{key}.{split}.outputs.safetensors", compute)
    return Outputs(t["logits"], t["y"], None, None, t["features"], t["index"])


# -- scoring -----------------------------------------------------------------------------------------


def score_name(method: Method) -> str:
    """What ranked the samples: "mls" for a training method that keeps the default score, else the method's name."""
    default = type(method).score is Method.score and not method.scores_inputs
    return "mls" if default else method.name


def input_std(task: Any) -> tuple[float, ...]:
    channels = int(task.data.x.shape[1])
    return tuple(task.normalize[1]) if task.normalize is not None else (1.0,) * channels


def score_split(ctx: RunContext, method: Method, model: nn.Module, out: Outputs, state: State
                ) -> tuple[Tensor, StepStats]:
    """The method's score for every sample of ``out``, timed per evaluation batch."""
    timer = StepTimer(ctx.device, warmup=0)
    parts = []
    if method.scores_inputs:
        model.eval()
        for x, _ in ctx.source.inputs(out.index, ctx.eval_batch):
            timer.start()
            parts.append(method.score_inputs(model, x, state).detach().float().cpu())
            timer.stop(len(x))
    else:
        for start in range(0, len(out.y), ctx.eval_batch):
            rows = slice(start, start + ctx.eval_batch)
            timer.start()
            parts.append(method.score(out.logits[rows], out.features[rows]).detach().float().cpu())
            timer.stop(len(out.logits[rows]))
    scores = torch.cat(parts) if parts else torch.empty(0)
    if scores.shape != (len(out.y),):
        raise HarnessError(f"{method.name}: score returned shape {tuple(scores.shape)} for {len(out.y)} samples; "
                           "expected one score per sample")
    if not torch.isfinite(scores).all():
        raise HarnessError(f"{method.name}: score returned NaN or infinite values")
    return scores, timer.summary()


def score_benchmark(ctx: RunContext, method: Method, model: nn.Module, out: Outputs,
                    state: State) -> Callable[[], None]:
    """One evaluation batch scored again (what pytest-benchmark times for a score)."""
    rows = slice(0, ctx.eval_batch)
    if not method.scores_inputs:
        return lambda: method.score(out.logits[rows], out.features[rows])
    x = next(ctx.source.inputs(out.index[rows], ctx.eval_batch))[0]
    return lambda: method.score_inputs(model, x, state)


def train_benchmark(ctx: RunContext, trainer: Method, model: nn.Module) -> Callable[[], None]:
    """One more training step of the trainer on a fixed batch, on a copy of the model (built on first call)."""
    built: list[Callable[[], None]] = []

    def step() -> None:
        if not built:
            tctx = RunContext.create(ctx.task, trainer, ctx.device, ctx.seed, source=ctx.source, speed=ctx.speed)
            m = copy.deepcopy(model)
            state = tctx.make_state(1)
            engine = tctx.engine(make_optimizer(m, tctx.budget), state)
            trainer.setup(ctx.task.sealed(), state)
            idx = next(train_batches(tctx)(torch.Generator().manual_seed(ctx.seed)))
            built.append(lambda: train_epoch(tctx, trainer, m, engine, state, [idx], timer=StepTimer(ctx.device)))
        built[0]()

    return step


# -- automatic parameter search (OpenOOD v1.5's APS) ---------------------------------------------------

SEARCH_ATTR = "search"
VAL_SPLITS = ("val_known", "val_unknown")


def search_grid(method: Method) -> dict[str, tuple]:
    """The grid a score declares in its file (class attribute ``search``: hparam -> candidate values), less the
    hparams the user set (``--hparam``): a value given by hand is kept, not searched."""
    grid = getattr(type(method), SEARCH_ATTR, None) or {}
    defaults = type(method).hparams
    return {k: tuple(v) for k, v in grid.items() if method.hparams.get(k) == defaults.get(k)}


def choose_hparams(ctx: RunContext, method: Method, model: nn.Module, key: str, state: State
                   ) -> tuple[Method, dict[str, Any] | None]:
    """The method at the grid point with the best validation AUROC (OpenOOD's APS), and what was chosen on what.

    Every combination of the grid is calibrated on the training outputs, as the score itself is, and scored on
    the task's ``val_known`` and ``val_unknown`` splits (known-class images left out of training, and unknowns from
    a source that no test group uses); the highest AUROC wins, ties to the first combination in the file's order.
    The test split is never read. A case without validation splits keeps the defaults and says so.
    """
    grid = search_grid(method)
    if not grid:
        return method, None
    if not set(VAL_SPLITS) <= set(ctx.task.splits):
        return method, {"chosen": None, "grid": grid, "on": "none: this case has no validation unknowns, so the "
                        "file's defaults were used"}
    train = cached_outputs(ctx, model, key, "train")
    known, unknown = (cached_outputs(ctx, model, key, split) for split in VAL_SPLITS)
    tried = []
    for values in itertools.product(*grid.values()):
        candidate = type(method)({**method.hparams, **dict(zip(grid, values))})
        if type(candidate).calibrate is not Method.calibrate:
            candidate.calibrate(model, train, state)
        s_k, s_u = (score_split(ctx, candidate, model, out, state)[0].numpy() for out in (known, unknown))
        tried.append((auroc(s_k, s_u), dict(zip(grid, values)), candidate))
    best = max(range(len(tried)), key=lambda i: (tried[i][0], -i))
    value, chosen, candidate = tried[best]
    info = {"chosen": chosen, "val_auroc": round(float(value), 6), "grid": grid,
            "tried": [[round(float(a), 6), c] for a, c, _ in tried],
            "on": f"val_known ({len(known.y)}) vs val_unknown ({len(unknown.y)}): "
                  f"{ctx.task.info.get('validation', 'the case validation splits')}"}
    return candidate, info


@register_protocol("openset")
def run_openset(task: Any, method: Method, ctx: RunContext) -> SeedResult:
    trainer = trainer_of(method)
    if trainer is not method:
        try:
            trainer.check_task(task.sealed())
        except Unsupported as err:
            raise Unsupported(f"{method.name} with trainer={trainer.name}: {err}") from None
    model, info, key = closed_set_model(ctx, trainer)
    test = cached_outputs(ctx, model, key, "test")
    state = ctx.make_state(0, 0, input_std=input_std(task))
    method, search = choose_hparams(ctx, method, model, key, state)
    searched = search is not None and search["chosen"] is not None  # the chosen candidate is calibrated already
    if type(method).calibrate is not Method.calibrate and not searched:
        method.calibrate(model, cached_outputs(ctx, model, key, "train"), state)
    score, score_timing = score_split(ctx, method, model, test, state)
    scores = {"": score}
    if trainer is method:
        scores["_msp"] = msp(test.logits)
    arrays = seed_arrays(task, test, scores)
    metrics = task.metrics_fn(arrays)
    final = [info["epochs"] - 1, *acc_and_auroc(task, test)]
    seed_info = {"trainer": info["trainer"], "score": score_name(method), "model_key": key,
                 "model_reused": bool(info["reused"]),
                 "train_seconds": round(float(info["train_seconds"]), 3), "trainer_budget": info["budget"],
                 "checkpoints": [*info["checkpoints"], final]}
    if search is not None:
        seed_info["search"] = search
    if trainer is method:
        timing, bench = StepStats(**info["timing"]), train_benchmark(ctx, trainer, model)
    else:
        timing, bench = score_timing, score_benchmark(ctx, method, model, test, state)
    return SeedResult(metrics, timing, arrays=arrays, info=seed_info, train_step=bench,
                      selected_epoch=info["epochs"] - 1)
