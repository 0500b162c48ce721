"""The unlearning protocol: start from a model trained on everything, let the method forget a set, and compare the
result with models retrained without that set.

Reference models. Per (case, seed) the protocol gets, through :class:`~harness.protocols.store.ModelStore`
(trained once, cached under ``$HARNESS_CACHE/models/unlearning``, shared by every method):

* the *original* model, trained on the whole pool (forget and retain). Its key holds the pool's fingerprint, not the
  case's: the random-10% and the whole-class case of one dataset start from the same original;
* ``n_oracles`` *scoring oracles*, trained on the retain set only, with independent seeds (``seed*1000 + 101 + i``).
  Oracle 0 is the retrained model of the literature's tables: the gap, CKA and kNN "to retrain" and the RTE
  denominator. Oracles 1..n-1 of every seed form KLoM's reference distribution. No method ever sees a scoring oracle;
* for a method with ``uses_oracles`` only, ``n_oracles - 1`` (at least 1) *method oracles*: retrained the same way
  from seeds of their own (``seed*1000 + 501 + i``, role ``method-oracle``), so the oracles a method learns from
  are disjoint from the ones it is scored against. ``dmm`` matches their mean logits; ``retrain`` returns method
  oracle 0, a genuine retraining, so its gap and KLoM are the retraining-noise floor (not 0 by construction).

A key holds the role, the oracle index, the seed, the pool or case fingerprint, the data's content hash and the
source digest of the training code (the kit, the model factories, this module and the suite's factory). The
references' outputs (logits, penultimate features) are cached beside their weights.

RTE = the method's wall time / oracle 0's training wall time, both on the run's device. When this process trained
oracle 0, its time is used as is (``rte_basis: in-process``). When it came from the disk cache (an earlier
process, maybe another load or device), the cached time is rescaled by the ratio of the training-step time
re-measured now (``RETIME_STEPS`` steps of the same recipe, in this process) to the step time the cache recorded
(``rte_basis: cached, rescaled ...``), once per oracle and process.

RTE counts every model a method needs: each method oracle a method reads (``state.oracle_logits``: all of them;
``state.retrain()``: oracle 0) is charged its training time (on this device and precision, as above).

The method's hook is ``unlearn(model, forget, retain, state)`` (see :meth:`harness.core.method.Method.unlearn`). Its
updates come from :class:`UnlearnEngines` on ``state``: ``state.engine(params_or_optimizer, lr_factor)`` builds a
:class:`~harness.core.engine.StepEngine` at the run's precision (autocast around each step) that spends ONE shared
``state.budget`` (``total_steps`` updates, whichever engine takes them: LAF's VAEs as well as its model), and
``state.optimize(model, engine, step, batches, steps=None)`` is the loop. An update past the budget raises
:class:`~harness.core.engine.BudgetExceeded`; ``--compile`` is refused (:func:`check_speed`). A precision other than
fp32 retimes oracle 0's training at that precision for RTE. Methods with ``reads_labels = False`` get loaders
whose batches withhold labels (:class:`LabelFreeLoader`); methods with ``uses_oracles = True`` get
``state.oracle_logits(index)`` and ``state.retrain()`` over their own method oracles, and records say
``oracle_matching`` when the logits were read.

Evidence and metrics. Each seed keeps compact arrays (:func:`seed_metrics` recomputes every seed metric from them):
labels, predictions and float32 logits on forget, retain and test for the unlearned model, oracle 0
(``retrain_*``) and the original (``original_*``); the seeds of the membership-inference attack's subsamples
(``mia_seeds``, see below); kNN predictions of the forget samples from penultimate features
(bank: the validation split); float16 penultimate features of up to ``CKA_SAMPLES`` forget samples (linear CKA);
margins on forget, up to ``KLOM_RETAIN_SAMPLES`` retain samples and validation for the unlearned model and oracles
1..n-1 (KLoM, the case-level metric of :func:`klom_metrics`, with at least 6 oracles per histogram bin, measured,
against the reference's 5: :func:`klom_bins`); and the two times of RTE.

Membership inference: the five attacks of SalUn (:data:`harness.metrics.unlearning.MIA_ATTACKS`: correctness,
confidence, entropy, modified entropy, prob), each an SVC fitted on a balanced subsample of retain (members) and
test (non-members; at most ``MIA_MAX_PER_SIDE`` of each), repeated over ``MIA_SUBSAMPLES`` subsamples whose seeds
come from the run's seed stream and the case (:func:`mia_seeds`), the same subsamples for the unlearned model,
oracle 0 and the original. Each attack's metric is the mean MIA-efficacy over the subsamples, with their sd beside
it (``<name>_sd``): ``MIA`` (the confidence attack, SalUn's reported "MIA-efficacy", the one the gap averages;
before suite version 2 it was one subsample at a fixed RNG seed), ``MIA_correctness``, ``MIA_entropy``,
``MIA_m_entropy`` and ``MIA_prob``.
"""

from __future__ import annotations

import copy
import hashlib
import inspect
import math
import sys
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, replace
from itertools import cycle, islice
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from harness.core import functional
from harness.core.digest import code_digest
from harness.core.engine import StepBudget, StepEngine
from harness.core.method import Batch, Method, State
from harness.core.speed import SpeedOptions
from harness.core.timing import synchronize
from harness.data.dataset import tensor_digest
from harness.errors import HarnessError, UsageError
from harness.metrics._checks import MetricError
from harness.metrics.probes import knn_predict, linear_cka
from harness.metrics.unlearning import (
    MIA_ATTACKS,
    average_gap,
    klom,
    margins,
    mia_attacks,
    run_time_efficiency,
)
from harness.protocols import kit, register_protocol
from harness.protocols.kit import RunContext, SeedResult, SplitLoader, fit, infer, make_optimizer
from harness.protocols.store import ModelStore, get_or_compute, store_key

NAMESPACE = "unlearning"
CKA_SAMPLES = 500  # forget samples whose features enter linear CKA
KLOM_RETAIN_SAMPLES = 1000  # retain samples whose margins enter KLoM (KLoM is per sample; a fixed subset suffices)
KNN_K = 20
# Attack subsamples per seed. Measured on the 63 smoke records (9 methods x 7 cases x 2 seeds x 3 models), the sd
# over the 5 subsamples: median 0.05 for the confidence attack (MIA), 0.075 entropy, 0.089 modified entropy, 0.115
# prob, 0 correctness; up to 0.55 on pacs-subpop-sketch-dog, whose smoke forget and test sets are a few images.
# 5 subsamples put the mean's standard error near sd / 2.2 at 25 SVC fits per model (0.6 s at smoke sizes, 7-8 s at
# standard's 1000 per side, single thread).
MIA_SUBSAMPLES = 5
# Members and non-members per attack subsample, at most: SalUn trains on the whole test set, but an RBF SVC's fit
# grows faster than quadratically (measured: 5 attacks x 5 subsamples take 7.4 s at 1000 per side, 283 s at 5000),
# so the ``full`` profile's larger test sets are subsampled to this (``smoke`` and ``standard`` never reach it).
MIA_MAX_PER_SIDE = 1000
RETIME_STEPS = 8
_PROCESS = uuid.uuid4().hex  # marks reference models trained by this process
_RETIMED: dict[tuple[str, str], tuple[float, str]] = {}  # (key, precision) -> (seconds, basis), per process
_DIGESTS: dict[str, str] = {}  # suite file -> training-code digest, per process
KLOM_MODELS_PER_BIN = 6  # measured (docs/tuning/unlearning_klom_bins.*); the reference has 5: 20 bins, 100 oracles
METHOD_ORACLE_SEED = 501  # method-facing oracle i trains from seed*1000 + 501 + i (scoring ones: 101 + i)
SPLITS = ("forget", "retain", "test", "val")
ROLES = ("", "retrain_", "original_")  # metric prefixes: unlearned model, oracle 0, original


class LabelAccess(HarnessError):
    """A method that declares ``reads_labels = False`` read a label."""


# -- the hook's helpers ----------------------------------------------------------------------------


class UnlearnEngines:
    """Where an unlearning hook gets its updates: ``state.engine(...)`` and ``state.optimize(...)``.

    Every engine it makes shares ONE :class:`~harness.core.engine.StepBudget` (``state.budget``, ``state.total_steps``
    updates): the model's steps, an auxiliary model's (LAF's VAEs), SCRUB's max- and min-steps alike. An update
    past it raises :class:`~harness.core.engine.BudgetExceeded`. Each engine runs its closure under the run's
    autocast (``--precision``), with the run's device, seed and the budget's gradient clipping.
    """

    def __init__(self, budget: StepBudget, optimizer: Callable[[Any, float], torch.optim.Optimizer],
                 engine: Callable[[torch.optim.Optimizer, bool], StepEngine]) -> None:
        self.budget, self._optimizer, self._engine = budget, optimizer, engine

    @classmethod
    def for_run(cls, ctx: RunContext, state: State, total: int) -> UnlearnEngines:
        """The run's engines: the case's optimiser recipe, precision, device, seed and clipping; ``total`` updates."""
        budget = StepBudget(total, f"unlearning updates ({ctx.task.info['unlearning']['unlearn_frac']:g} of a "
                                   f"retraining's steps)")
        return cls(budget, lambda params, lr_factor: make_optimizer(
                       params, replace(ctx.budget, lr=ctx.budget.lr * lr_factor)),
                   lambda optimizer, count: ctx.engine(optimizer, state, budget=budget, count=count))

    def attach(self, state: State) -> State:
        """Hand the hook its engines: ``state.engine``, ``state.optimize``, ``state.budget``."""
        state.budget, state.engine, state.optimize = self.budget, self.engine, self.optimize
        return state

    def engine(self, params: nn.Module | Iterable[Tensor] | torch.optim.Optimizer, lr_factor: float = 1.0,
               count: bool = True) -> StepEngine:
        """An engine over ``params`` (the case's optimiser at ``lr_factor`` times its rate) or over an optimizer
        the method built; ``count=False`` keeps its updates out of ``state.step`` (they still spend the budget)."""
        optimizer = params if isinstance(params, torch.optim.Optimizer) else self._optimizer(params, lr_factor)
        return self._engine(optimizer, count)

    def optimize(self, model: nn.Module, engine: StepEngine, step: Callable[[Any], Any], batches: Iterable[Any],
                 steps: int | None = None) -> None:
        """``steps`` engine updates (default: what is left of the budget) of ``step(batch)`` over ``batches``.

        ``step`` returns the loss (or a dict with ``"loss"``), or calls ``engine.backward`` itself and returns its
        logs. Asking for more steps than the budget has left raises :class:`BudgetExceeded`.
        """
        steps = self.budget.left if steps is None else steps
        model.train()
        for batch in islice(batches, steps):
            engine.step(lambda b=batch: step(b))


def frozen_copy(model: nn.Module) -> nn.Module:
    """A frozen copy in eval mode (kept for callers outside ``baselines``; methods use harness.core.functional)."""
    return functional.frozen_copy(model)


class _LabelFreeBatch(Batch):
    def __getattribute__(self, name: str) -> Any:
        if name in ("y", "group"):  # groups encode labels in some sets
            raise LabelAccess(f"this method declares reads_labels = False but read batch.{name}")
        return object.__getattribute__(self, name)

    def __len__(self) -> int:
        return len(self.x)


class LabelFreeLoader:
    """A :class:`SplitLoader` whose batches withhold labels: reading ``batch.y`` raises :class:`LabelAccess`."""

    def __init__(self, loader: SplitLoader) -> None:
        self._loader = loader
        self.batch_size = loader.batch_size

    def __len__(self) -> int:
        return len(self._loader)

    @property
    def steps_per_epoch(self) -> int:
        return self._loader.steps_per_epoch

    def batches(self, shuffle: bool = True) -> Iterator[Batch]:
        for b in self._loader.batches(shuffle):
            yield _LabelFreeBatch(x=b.x, y=None, domain=b.domain, group=None, index=b.index)

    def forever(self) -> Iterator[Batch]:
        while True:
            yield from self.batches()

    def inputs(self) -> Tensor:
        return self._loader.inputs()


# -- reference models ------------------------------------------------------------------------------


class _PlainCE(Method):
    """The references' trainer: the plain cross-entropy step."""

    name = "reference-ce"
    family = "unlearning"


_TRAINER = _PlainCE()


@dataclass
class Reference:
    key: str
    model: nn.Module | None  # kept only where a later step needs the weights
    info: dict[str, Any]
    logits: Tensor  # on the layout's evaluation indices
    features: Tensor  # on forget then val


@dataclass
class Layout:
    """The evaluation indices: forget, retain, test and val in this order (positions in the base dataset)."""

    parts: dict[str, Tensor]

    @property
    def eval_indices(self) -> Tensor:
        return torch.cat([self.parts[s] for s in SPLITS])

    def span(self, split: str) -> slice:
        start = 0
        for s in SPLITS:
            n = len(self.parts[s])
            if s == split:
                return slice(start, start + n)
            start += n
        raise KeyError(split)

    def feature_rows(self, split: str) -> slice:  # features are kept for forget, then val
        n_f = len(self.parts["forget"])
        return slice(0, n_f) if split == "forget" else slice(n_f, n_f + len(self.parts["val"]))


def _code_digest(task: Any) -> str:
    """The training code's digest, read once per process: the code that runs, even if the files change meanwhile."""
    where = inspect.getsourcefile(task.model_factory) or ""
    if where not in _DIGESTS:
        _DIGESTS[where] = code_digest(sys.modules[__name__], task.model_factory)
    return _DIGESTS[where]


def _train_fn(ctx: RunContext, split: str, seed: int) -> Callable[[nn.Module], dict[str, Any]]:
    def train(model: nn.Module) -> dict[str, Any]:
        sub = RunContext.create(ctx.task, _TRAINER, ctx.device, seed, source=ctx.source)
        synchronize(ctx.device)
        t0 = time.perf_counter()
        fitted = fit(sub, model, split=split)
        synchronize(ctx.device)
        seconds = time.perf_counter() - t0
        step = sub.timer.summary().median_s
        steps = fitted.state.step
        return {"train_seconds": seconds, "step_median_s": step if math.isfinite(step) else seconds / max(1, steps),
                "steps": steps, "split": split, "seed": seed, "process": _PROCESS}

    return train


def _factory(ctx: RunContext, seed: int) -> Callable[[], nn.Module]:
    def make() -> nn.Module:
        kit.seed_everything(seed)  # the initialisation depends on the reference's seed only
        return ctx.task.model_factory()

    return make


def _outputs(store: ModelStore, key: str, ctx: RunContext, model: nn.Module, layout: Layout) -> tuple[Tensor, Tensor]:
    """Logits on the evaluation indices and features on forget then val; cached beside the weights."""
    tag = store_key(model=key, eval=tensor_digest(layout.eval_indices))

    def compute() -> tuple[dict[str, Tensor], dict]:
        logits, features = _model_outputs(ctx, model, layout)
        return {"logits": logits, "features": features}, {}

    saved, _, _ = get_or_compute(store.folder / f"{tag}.outputs.safetensors", compute)
    return saved["logits"], saved["features"]


def _model_outputs(ctx: RunContext, model: nn.Module, layout: Layout) -> tuple[Tensor, Tensor]:
    out = infer(ctx, model, layout.eval_indices, features=True)
    feats = torch.cat([out.features[layout.span("forget")], out.features[layout.span("val")]])
    return out.logits, feats


def _reference(ctx: RunContext, layout: Layout, role: str, index: int, keep: bool) -> Reference:
    """One reference model of the seed (trained or loaded) with its outputs; see the module docstring for roles."""
    task, cfg = ctx.task, ctx.task.info["unlearning"]
    store = ModelStore(NAMESPACE)
    fingerprint, split = (cfg["pool_fingerprint"], "train") if role == "original" else (task.fingerprint, "retain")
    seed = ctx.seed * 1000 + {"original": 0, "oracle": 101, "method-oracle": METHOD_ORACLE_SEED}[role] + index
    key = store_key(role=role, index=index, fingerprint=fingerprint, kind="unlearning-reference", seed=ctx.seed,
                    data=task.data.fingerprint, code=_code_digest(task))
    model, info = store.get(key, _factory(ctx, seed), _train_fn(ctx, split, seed), ctx.device)
    logits, features = _outputs(store, key, ctx, model, layout)
    return Reference(key, model if keep else None, info, logits, features)


def reference_models(ctx: RunContext, layout: Layout) -> tuple[Reference, list[Reference]]:
    """The seed's original and its *scoring* oracles (never shown to a method)."""
    n = ctx.task.info["unlearning"]["n_oracles"]
    original = _reference(ctx, layout, "original", 0, keep=True)
    return original, [_reference(ctx, layout, "oracle", i, keep=False) for i in range(n)]


def n_method_oracles(task: Any) -> int:
    """How many oracles a method that asks for them gets: as many as KLoM's reference ensemble (at least 1)."""
    return max(1, task.info["unlearning"]["n_oracles"] - 1)


def method_oracles(ctx: RunContext, layout: Layout, count: int, keep_first: bool = False) -> list[Reference]:
    """The method-facing oracles: retrained like the scoring ones, from their own seeds, cached under their own
    role (``method-oracle``), so nothing a method learns from is what it is scored against."""
    return [_reference(ctx, layout, "method-oracle", i, keep=keep_first and i == 0) for i in range(count)]


def retrain_seconds(ctx: RunContext, oracle: Reference) -> tuple[float, str]:
    """A reference's training time on this device, in this process and at the run's precision (see module
    docstring), and how it was got."""
    info = oracle.info
    precision = ctx.speed.precision
    if info.get("process") == _PROCESS and precision == "fp32":
        return float(info["train_seconds"]), "in-process"
    if (oracle.key, precision) not in _RETIMED:
        sub = RunContext.create(ctx.task, _TRAINER, ctx.device, int(info["seed"]), source=ctx.source,
                                speed=SpeedOptions(precision=precision))
        model = _factory(ctx, int(info["seed"]))().to(ctx.device)
        state = sub.make_state(1)
        engine = sub.engine(make_optimizer(model, sub.budget), state, count=False)
        batches = list(kit.train_batches(sub, "retain")(sub.index_gen))
        kit.train_epoch(sub, _TRAINER, model, engine, state, islice(cycle(batches), RETIME_STEPS + sub.timer.warmup))
        ratio = sub.timer.summary().median_s / float(info["step_median_s"])
        why = ("trained at fp32, rescaled to this run's " + precision if info.get("process") == _PROCESS
               else "cached (trained by another process), rescaled")
        _RETIMED[(oracle.key, precision)] = (
            float(info["train_seconds"]) * ratio,
            f"{why} by this process's {precision} step time (ratio {ratio:.3f} over {RETIME_STEPS} steps)")
    return _RETIMED[(oracle.key, precision)]


# -- the protocol ----------------------------------------------------------------------------------


def layout_of(task: Any) -> Layout:
    return Layout({s: task.splits[s].indices for s in SPLITS})


def unlearn_steps(task: Any) -> int:
    """The step budget: ``unlearn_frac`` of a retraining's optimiser steps."""
    cfg, budget = task.info["unlearning"], task.budget
    per_epoch = -(-len(task.splits["retain"]) // budget.batch_size)
    return max(1, math.ceil(cfg["unlearn_frac"] * budget.epochs * per_epoch))


def hook_inputs(ctx: RunContext, method: Method) -> tuple[Any, Any, State]:
    """The forget and retain loaders (label-free for a method with ``reads_labels = False``) and the hook's state,
    with its engines (:class:`UnlearnEngines`: ``state.engine``, ``state.optimize``, ``state.budget``)."""
    forget = ctx.loader("forget", min(ctx.budget.batch_size, len(ctx.task.splits["forget"])))
    retain = ctx.loader("retain")
    if not method.reads_labels:
        forget, retain = LabelFreeLoader(forget), LabelFreeLoader(retain)
    state = ctx.make_state(retain.steps_per_epoch, seed=ctx.seed)
    state.total_steps = unlearn_steps(ctx.task)
    UnlearnEngines.for_run(ctx, state, state.total_steps).attach(state)
    state.optimizer = lambda params, lr_factor=1.0: make_optimizer(
        params, replace(ctx.budget, lr=ctx.budget.lr * lr_factor))
    return forget, retain, state


def check_speed(ctx: RunContext) -> None:
    """``--precision`` reaches every update through the engines; ``--compile`` is refused in one line."""
    if ctx.speed.compile is not None:
        raise UsageError("--compile has no effect on the unlearning protocol (a method's few hundred updates would "
                         "mostly be compilation, which RTE would then charge); run unlearning cases without --compile")


@register_protocol("unlearn")
def run_unlearn(task: Any, method: Method, ctx: RunContext) -> SeedResult:
    check_speed(ctx)
    layout = layout_of(task)
    original, oracles = reference_models(ctx, layout)
    retrain_time, rte_basis = retrain_seconds(ctx, oracles[0])
    model = copy.deepcopy(original.model)  # the method's private copy; the original stays for the evidence

    forget, retain, state = hook_inputs(ctx, method)
    charged: list[float] = []
    used: list[str] = []
    if method.uses_oracles:
        own = method_oracles(ctx, layout, n_method_oracles(task), keep_first=True)
        _give_oracles(ctx, state, layout, own, charged, used)
    kit.seed_everything(ctx.seed)  # the method's randomness does not depend on whether references were cached

    synchronize(ctx.device)
    t0 = time.perf_counter()
    model = method.unlearn(model, forget, retain, state)
    synchronize(ctx.device)
    seconds = time.perf_counter() - t0 + sum(charged)

    logits, features = _model_outputs(ctx, model, layout)
    arrays = evidence(layout, task.data.y, (logits, features), oracles[0], original, oracles[1:],
                      (seconds, retrain_time))
    arrays["mia_seeds"] = mia_seeds(task.spec.case, ctx.seed)
    info = {
        "oracle_matching": "oracle_logits" in used,  # fitted to (its own) oracles' outputs, their training charged
        "oracles_charged": len(charged),
        "label_free": not method.reads_labels,
        "rte_basis": rte_basis,
        "unlearn_seconds": seconds,
        "retrain_seconds": retrain_time,
        "unlearn_step_budget": state.total_steps,
        "unlearn_steps_taken": state.step,
        "unlearn_updates_taken": state.budget.used,
        "references_reused": [bool(r.info.get("reused")) for r in (original, *oracles)],
        "n_oracles": len(oracles),
    }
    return SeedResult(task.recompute_fn(arrays), None, arrays=arrays, info=info)


def _give_oracles(ctx: RunContext, state: State, layout: Layout, own: list[Reference], charged: list[float],
                  used: list[str]) -> None:
    """``state.oracle_logits(index)`` (mean logits of the method's own oracles, by base-dataset index) and
    ``state.retrain()`` (a copy of the method's own oracle 0).

    Producing an oracle is a retraining, so each one a method touches is charged its training time (on this
    device, at this precision: :func:`retrain_seconds`) into the method's time, and so into its RTE; reading the
    logits charges every oracle in the mean, once. The scoring oracles are never handed over.
    """
    mean = torch.stack([r.logits for r in own]).mean(0)
    table = torch.zeros(len(ctx.task.data), *mean.shape[1:])
    table[layout.eval_indices] = mean
    table = table.to(ctx.device)
    paid: set[int] = set()

    def pay(indices: range) -> None:
        for i in indices:
            if i not in paid:
                paid.add(i)
                charged.append(retrain_seconds(ctx, own[i])[0])

    def oracle_logits(index: Tensor) -> Tensor:
        if "oracle_logits" not in used:
            used.append("oracle_logits")
            pay(range(len(own)))
        return table[index.to(ctx.device)]

    def retrain() -> nn.Module:
        used.append("retrain")
        pay(range(1))
        return copy.deepcopy(own[0].model)

    state.oracle_logits, state.retrain = oracle_logits, retrain


# -- evidence and metrics --------------------------------------------------------------------------


def evidence(layout: Layout, y: Tensor, unlearned: tuple[Tensor, Tensor], oracle: Reference, original: Reference,
             klom_oracles: list[Reference], seconds: tuple[float, float]) -> dict[str, np.ndarray]:
    """The seed's compact arrays (see module docstring)."""
    ys = {s: y[layout.parts[s]].numpy() for s in (*SPLITS,)}
    arrays: dict[str, np.ndarray] = {f"y_{s}": ys[s].astype(np.int16) for s in SPLITS}
    for prefix, (logits, feats) in zip(ROLES, (unlearned, (oracle.logits, oracle.features),
                                               (original.logits, original.features))):
        for s in ("forget", "retain", "test"):
            part = logits[layout.span(s)].numpy()
            arrays[f"{prefix}pred_{s}"] = part.argmax(1).astype(np.int16)
            arrays[f"{prefix}logits_{s}"] = part.astype(np.float32)  # every MIA feature derives from these
        f_forget, f_val = feats[layout.feature_rows("forget")], feats[layout.feature_rows("val")]
        k = min(KNN_K, len(f_val))
        arrays[f"{prefix}knn_forget"] = knn_predict(f_val, ys["val"], f_forget, k).astype(np.int16)
        arrays[f"{prefix}feat_cka"] = f_forget[:CKA_SAMPLES].numpy().astype(np.float16)
    klom_rows = {"forget": layout.span("forget"), "val": layout.span("val")}
    retain = layout.span("retain")
    klom_rows["retain"] = slice(retain.start, min(retain.stop, retain.start + KLOM_RETAIN_SAMPLES))
    y_eval = y[layout.eval_indices].numpy()
    for s, rows in klom_rows.items():
        arrays[f"margins_{s}"] = margins(unlearned[0][rows].numpy(), y_eval[rows]).astype(np.float32)
        arrays[f"oracle_margins_{s}"] = np.stack(
            [margins(r.logits[rows].numpy(), y_eval[rows]) for r in klom_oracles]
        ).astype(np.float32).reshape(len(klom_oracles), -1)
    arrays["seconds"] = np.array(seconds, dtype=np.float64)
    return arrays


def mia_seeds(case: str, stream: int, count: int = MIA_SUBSAMPLES) -> np.ndarray:
    """The attack subsamples' seeds of one (case, seed): drawn from the run's seed stream and the case name, so
    they differ across seeds and across the cases that share a pool's stream (stored in the evidence)."""
    key = int.from_bytes(hashlib.sha256(f"unlearning-mia/{case}".encode()).digest()[:8], "little")
    return np.random.SeedSequence([int(stream), key]).generate_state(count, dtype=np.uint32).astype(np.int64)


def mia_metric(attack: str) -> str:
    """The metric name of an attack's mean efficacy (``MIA`` for confidence, SalUn's reported one)."""
    return "MIA" if attack == "confidence" else f"MIA_{attack}"


def _cka(a: np.ndarray, b: np.ndarray) -> float:
    try:
        return linear_cka(a, b)
    except MetricError:  # features collapsed to a constant (e.g. after runaway gradient ascent): undefined
        return float("nan")


def seed_metrics(arrays: dict[str, np.ndarray]) -> dict[str, float]:
    """Every seed metric from the seed's arrays (the task's ``recompute_fn``)."""
    a = arrays
    out: dict[str, float] = {}
    for prefix in ROLES:
        acc = {s: float(np.mean(a[f"{prefix}pred_{s}"] == a[f"y_{s}"])) for s in ("forget", "retain", "test")}
        out[f"{prefix}UA"] = 1.0 - acc["forget"]
        out[f"{prefix}RA"] = acc["retain"]
        out[f"{prefix}TA"] = acc["test"]
        mia = mia_attacks(*(x for s in ("retain", "test", "forget") for x in (a[f"{prefix}logits_{s}"], a[f"y_{s}"])),
                          seeds=a["mia_seeds"], max_per_side=MIA_MAX_PER_SIDE)
        for attack in MIA_ATTACKS:
            name = mia_metric(attack)
            out[f"{prefix}{name}"], out[f"{prefix}{name}_sd"] = mia[attack].mean, mia[attack].sd
        out[f"{prefix}knn_forget"] = float(np.mean(a[f"{prefix}knn_forget"] == a["y_forget"]))
    out["gap"] = average_gap(out, {k: out[f"retrain_{k}"] for k in ("UA", "RA", "TA", "MIA")})
    out["RTE"] = run_time_efficiency(*(float(t) for t in a["seconds"]))
    out["cka_original"] = _cka(a["feat_cka"], a["original_feat_cka"])
    out["cka_retrain"] = _cka(a["feat_cka"], a["retrain_feat_cka"])
    out["retrain_cka_original"] = _cka(a["retrain_feat_cka"], a["original_feat_cka"])  # how far retraining moves
    return out


def klom_bins(n_reference_models: int) -> int:
    """Histogram bins for KLoM: at least ``KLOM_MODELS_PER_BIN`` (6) reference models per bin, 2 to 20 bins.

    The reference (Georgiev et al.'s KLoM, data-unlearning-bench) bins 100 oracles into 20 bins: 5 per bin. With the
    dozen oracles a CPU profile affords (``standard``: 4 KLoM oracles x 3 seeds = 12 -> 2 bins of 6), 20 bins would
    leave most bins empty and nearly every sample would score the eps floor. Measured
    (``docs/tuning/unlearning_klom_bins.py``, tiny MNIST MLP, 200 resamples: how often KLoM on forget orders three
    models of known distance, held-out retrained < trained on half the forget set < original): with 12 oracles,
    6 per bin ordered them in 80% of resamples, 3-4 per bin in 66-71%, 1 per bin in 50%; with 24 oracles, 6-12 per
    bin in 76-82%, 1.2-2 per bin in 50-67% (chance: 17%). Hence 6 per bin; at ``standard`` that is 2 bins, the most
    the measurement supports there (more bins need more oracles, not a thinner histogram).
    """
    return int(min(20, max(2, n_reference_models // KLOM_MODELS_PER_BIN)))


def klom_metrics(results: list[SeedResult]) -> dict[str, float]:
    """KLoM per split over the unlearned models of all seeds (P) against oracles 1..n-1 of all seeds (Q)."""
    out = {}
    for s in ("forget", "retain", "val"):
        q = np.concatenate([r.arrays[f"oracle_margins_{s}"] for r in results])
        if len(q) == 0:
            continue
        p = np.stack([r.arrays[f"margins_{s}"] for r in results])
        out[f"klom_{s}"] = klom(p, q, bins=klom_bins(len(q))).mean
    return out


__all__ = [
    "LabelAccess", "LabelFreeLoader", "Layout", "Reference", "UnlearnEngines", "check_speed", "evidence",
    "frozen_copy", "hook_inputs", "klom_bins", "klom_metrics", "layout_of", "method_oracles", "mia_metric",
    "mia_seeds", "n_method_oracles",
    "reference_models", "retrain_seconds", "run_unlearn", "seed_metrics", "unlearn_steps",
]
