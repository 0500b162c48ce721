"""The protocol kit: the parts every protocol is built from.

* :class:`RunContext`: one (task, method, seed) run: device, data source,
  generators, step timer, the effective budget, and a store for models and
  arrays that later stages of the same run need.
* :func:`fit`: train a model with the method's step, selecting a checkpoint by
  the task's rule (best epoch on a selection split, or the last epoch).
* :func:`infer`: logits and, on request, penultimate features of a split.
* :class:`SplitLoader`: batches of one split, for hooks that iterate data
  themselves (unlearning, calibration, pretraining).
* :class:`SeedResult`: metrics (floats) and named arrays of one seed; the
  runner hands all seeds to the task's case-level metrics hook.

Protocols own loops, data movement, timing and evaluation; methods own only
their mathematics.
"""

from __future__ import annotations

import copy
import math
import random
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from harness.core.augment import get_policy
from harness.core.engine import StepEngine, prepare_model
from harness.core.method import Batch, Method, State
from harness.core.speed import SpeedOptions
from harness.core.task import Budget, Task
from harness.core.timing import StepStats, StepTimer
from harness.data.source import DataSource, choose_source
from harness.errors import Diverged, MethodError

CPU_EVAL_BATCH = 256  # on a CPU, batch-1024 forward passes ran ~25% slower than batch 64-256 (cache-bound)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def eval_batch_size(budget: Budget, device: torch.device) -> int:
    """The evaluation batch for this device: the budget's bound, capped on a CPU."""
    return budget.eval_batch_size if device.type != "cpu" else min(budget.eval_batch_size, CPU_EVAL_BATCH)


@dataclass
class Outputs:
    """Model outputs on one split, on the CPU, for metric functions."""

    logits: Tensor
    y: Tensor
    domain: Tensor | None
    group: Tensor | None
    features: Tensor | None = None
    index: Tensor | None = None  # positions in the base dataset

    @property
    def pred(self) -> Tensor:
        return (self.logits > 0).long() if self.logits.ndim == 1 else self.logits.argmax(1)

    @property
    def correct(self) -> Tensor:
        return (self.pred == self.y).float()


@dataclass
class SeedResult:
    """One seed's outcome.

    ``arrays`` is the seed's compact evidence (predictions, labels, scores, margins): what the task's
    ``recompute_fn`` recomputes ``metrics`` from, and what its ``case_metrics_fn`` combines across seeds
    (e.g. margins for KLoM). Keep it small: it is stored beside the record.
    """

    metrics: dict[str, float]
    timing: StepStats | None = None
    per_domain: dict[str, float] = field(default_factory=dict)
    arrays: dict[str, np.ndarray] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)  # JSON-able facts for the record
    train_step: Callable[[], None] | None = None  # one more train step, for pytest-benchmark
    selected_epoch: int = -1


@dataclass
class RunContext:
    """Everything a protocol needs for one seed of one case."""

    task: Task
    method: Method
    device: torch.device
    seed: int
    source: DataSource
    budget: Budget  # the case's budget with the method's changes
    timer: StepTimer
    index_gen: torch.Generator  # CPU generator: the same batches on every device
    augment: Any = None  # harness.core.augment policy for training batches, or None
    augment_gen: torch.Generator | None = None  # its own stream, so augmenting never shifts the batch order
    store: dict[str, Any] = field(default_factory=dict)
    speed: SpeedOptions = field(default_factory=SpeedOptions)  # --compile / --precision for the training steps
    index: int | None = None  # the record's seed index (``seed`` is its stream, harness.suites.seeds.seed_stream)

    @classmethod
    def create(cls, task: Task, method: Method, device: torch.device, seed: int, data_path: str = "auto",
               source: DataSource | None = None, speed: SpeedOptions | None = None,
               index: int | None = None) -> RunContext:
        seed_everything(seed)
        budget = task.budget.with_overrides(method.budget_overrides) if method.budget_overrides else task.budget
        source = source or choose_source(task.data, device, data_path, task.normalize)
        augment = None
        if budget.augment != "none":
            augment = get_policy(budget.augment, task.image_size)
        speed = speed or SpeedOptions()
        return cls(task, method, device, seed, source, budget, StepTimer(device),
                   torch.Generator().manual_seed(seed), augment, torch.Generator().manual_seed(seed + 7919),
                   speed=speed, index=index)

    @property
    def eval_batch(self) -> int:
        return eval_batch_size(self.budget, self.device)

    def make_state(self, steps_per_epoch: int, epochs: int | None = None, **extra: Any) -> State:
        task = self.task
        gen = torch.Generator(device=self.device).manual_seed(self.seed)
        return State(
            step=0, epoch=0, total_steps=steps_per_epoch * (self.budget.epochs if epochs is None else epochs),
            device=self.device, generator=gen, num_classes=task.num_classes, num_domains=task.num_domains,
            num_groups=task.num_groups, num_train=len(task.data), **extra,
        )

    def loader(self, split: str | Tensor, batch_size: int | None = None, augment: bool = False) -> SplitLoader:
        indices = self.task.splits[split].indices if isinstance(split, str) else split
        return SplitLoader(self, indices, batch_size or self.budget.batch_size, augment)

    def engine(self, optimizer: torch.optim.Optimizer, state: State | None = None, scheduler: Any = None,
               **kwargs: Any) -> StepEngine:
        """The step engine for ``optimizer`` with this run's precision, device, seed and the budget's clipping."""
        return StepEngine(optimizer, device=self.device, precision=self.speed.precision,
                          grad_clip=self.budget.grad_clip, scheduler=scheduler, state=state, seed=self.seed,
                          **kwargs)

    def describe(self) -> dict[str, Any]:
        out = self.source.describe()
        out["augment"] = self.augment.describe() if self.augment is not None else "none"
        return out


# -- optimisation ----------------------------------------------------------------------------------


def make_optimizer(params: nn.Module | Iterable[Tensor], budget: Budget) -> torch.optim.Optimizer:
    """Adam, AdamW or SGD with momentum (the step engine applies the budget's gradient-norm clipping)."""
    params = list(params.parameters() if isinstance(params, nn.Module) else params)
    if budget.optimizer == "sgd":
        opt: torch.optim.Optimizer = torch.optim.SGD(params, lr=budget.lr, momentum=budget.momentum,
                                                     weight_decay=budget.weight_decay)
    elif budget.optimizer == "adamw":
        opt = torch.optim.AdamW(params, lr=budget.lr, weight_decay=budget.weight_decay)
    else:
        opt = torch.optim.Adam(params, lr=budget.lr, weight_decay=budget.weight_decay)
    return opt


def make_scheduler(optimizer: torch.optim.Optimizer, budget: Budget, total_steps: int,
                   steps_per_epoch: int) -> torch.optim.lr_scheduler.LRScheduler | None:
    """Per-step schedule: linear warm-up over ``warmup_epochs``, then constant or cosine to 0. None if constant."""
    warmup = int(round(budget.warmup_epochs * steps_per_epoch))
    if budget.schedule == "constant" and warmup == 0:
        return None
    cosine = budget.schedule == "cosine"

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        if not cosine:
            return 1.0
        progress = (step - warmup) / max(1, total_steps - warmup)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


# -- batches ---------------------------------------------------------------------------------------


def batch_indices(indices: Tensor, batch_size: int, generator: torch.Generator,
                  domains: Tensor | None = None) -> Iterator[Tensor]:
    """One epoch of minibatch positions into the base dataset.

    With ``domains`` (one training-domain id per index) each batch takes an
    equal share from every domain (DomainBed's per-domain minibatches,
    concatenated) and the epoch lasts as long as the largest domain's pass.
    """
    if domains is None:
        perm = indices[torch.randperm(len(indices), generator=generator)]
        for start in range(0, len(perm), batch_size):
            yield perm[start:start + batch_size]
        return
    ids = torch.unique(domains)
    per = max(1, batch_size // len(ids))
    pools = [indices[domains == d] for d in ids]
    n_batches = max(1, max(len(p) for p in pools) // per)
    streams = []
    for pool in pools:  # cycle each domain's permutation so small domains repeat
        reps = -(-n_batches * per // len(pool))
        streams.append(torch.cat([pool[torch.randperm(len(pool), generator=generator)] for _ in range(reps)]))
    for b in range(n_batches):
        yield torch.cat([s[b * per:(b + 1) * per] for s in streams])


def train_batches(ctx: RunContext, split: str = "train") -> Callable[[torch.Generator], Iterator[Tensor]]:
    """The epoch generator for a split: domain-balanced when the task asks for it."""
    task = ctx.task
    indices = task.splits[split].indices
    domains = None
    if task.balanced_domains and task.data.domain is not None:
        domains = task.data.domain[indices]
    return lambda gen: batch_indices(indices, ctx.budget.batch_size, gen, domains)


def to_batch(ctx: RunContext, raw: Any, augment: bool) -> Batch:
    x = ctx.source.prepare(raw.x, ctx.augment if augment else None, ctx.augment_gen if augment else None)
    return Batch(x=x, y=raw.y, domain=raw.domain, group=raw.group, index=raw.index)


class SplitLoader:
    """Batches of one split, prepared for the model; the iteration order comes from the run's generator."""

    def __init__(self, ctx: RunContext, indices: Tensor, batch_size: int, augment: bool = False) -> None:
        self.ctx, self.indices, self.batch_size, self.augment = ctx, indices, batch_size, augment

    def __len__(self) -> int:
        return len(self.indices)

    @property
    def steps_per_epoch(self) -> int:
        return -(-len(self.indices) // self.batch_size)

    def batches(self, shuffle: bool = True) -> Iterator[Batch]:
        """One pass in random (or stored) order."""
        if shuffle:
            chunks = batch_indices(self.indices, self.batch_size, self.ctx.index_gen)
        else:
            chunks = (self.indices[s:s + self.batch_size] for s in range(0, len(self.indices), self.batch_size))
        for raw in self.ctx.source.raw_batches(chunks):
            yield to_batch(self.ctx, raw, self.augment)

    def forever(self) -> Iterator[Batch]:
        """Shuffled passes without end (for step budgets that are not whole epochs)."""
        while True:
            yield from self.batches()

    def inputs(self) -> Tensor:
        """Every prepared input of the split, in stored order, on the device (small splits only)."""
        return torch.cat([b.x for b in self.batches(shuffle=False)])


# -- training --------------------------------------------------------------------------------------


def model_info(model: nn.Module) -> dict[str, Any]:
    """Facts about a model for the record: parameter count and, for pretrained backbones, the weights' sha256."""
    info: dict[str, Any] = {"parameters": int(sum(p.numel() for p in model.parameters()))}
    if getattr(model, "pretrained_info", None):
        info["pretrained"] = model.pretrained_info
    return info


CONVENTIONS = ("model(x) returns (N,) scores on binary tasks and (N, K) logits on K-class tasks; batch.y is int64 "
               "class indices (binary losses take y.float() themselves, see harness.core.functional.cross_entropy)")


def method_failure(method: Method, err: Exception, batch: Batch, model: nn.Module) -> MethodError:
    """A torch error from a method's step, as one line naming the method and the conventions it may have missed."""
    try:
        with torch.no_grad():
            shape = "(N" + "".join(f", {d}" for d in model(batch.x[:2]).shape[1:]) + ")"
    except Exception:  # the forward pass itself may be what failed
        shape = "unknown"
    first = (str(err).strip().splitlines() or [type(err).__name__])[0]
    return MethodError(f"{method.name}: its train step failed ({type(err).__name__}: {first}). The model's output "
                       f"has shape {shape} and y is {batch.y.dtype}; conventions: {CONVENTIONS}")


def check_model_output(model: nn.Module, x: Tensor, num_classes: int, where: str) -> None:
    """Before training: the task's model must follow the output convention, or the loss fails deep in torch."""
    was_training = model.training
    model.eval()
    with torch.no_grad():
        out = model(x[:2])
    model.train(was_training)
    want = (len(x[:2]),) if num_classes == 2 else (len(x[:2]), num_classes)
    if tuple(out.shape) != want:
        got = ("N",) + tuple(out.shape[1:])
        need = "(N,)" if num_classes == 2 else f"(N, {num_classes})"
        raise MethodError(f"{where}: the model returns shape {got} but this {num_classes}-class task needs {need}. "
                          f"Conventions: {CONVENTIONS}")


def check_loss(logs: dict, state: State, seed: int | None) -> None:
    loss = float(logs["loss"])  # one scalar read per step (a sync on CUDA), as DomainBed's loss.item()
    if not math.isfinite(loss):
        raise Diverged(state.step, loss, seed)


def training_batch(ctx: RunContext, raw: Any, state: State, unlabeled: Tensor | None = None) -> Batch:
    """A raw batch prepared for a train step: augmented, plus random unlabeled inputs where the method takes them."""
    batch = to_batch(ctx, raw, augment=True)
    if unlabeled is not None:
        source = ctx.source
        pick = torch.randint(len(unlabeled), (len(raw.y),), generator=state.generator, device=ctx.device)
        batch.unlabeled_x = source.prepare(source.gather_x(unlabeled[pick.cpu()]))
    return batch


def train_epoch(ctx: RunContext, method: Method, model: nn.Module, engine: StepEngine, state: State,
                index_batches: Iterable[Tensor], unlabeled: Tensor | None = None,
                timer: StepTimer | None = None) -> None:
    """The hot loop: gather and prepare, one engine step (timed), nothing else."""
    timer = timer or ctx.timer
    model.train()
    for raw in ctx.source.raw_batches(index_batches):
        batch = training_batch(ctx, raw, state, unlabeled)
        timer.start()
        supervised_step(method, model, batch, engine, state)
        timer.stop(len(raw.y))


def supervised_step(method: Method, model: nn.Module, batch: Batch, engine: StepEngine, state: State) -> dict:
    """One engine step of the method's ``train_step``; a torch error in it becomes one line naming the method."""
    try:
        return engine.step(lambda: method.train_step(model, batch, engine, state))
    except (RuntimeError, ValueError, TypeError, IndexError) as err:
        raise method_failure(method, err, batch, model) from err


@dataclass
class Checkpoint:
    score: float
    epoch: int
    weights: dict[str, Tensor] | None


@dataclass
class FitResult:
    model: nn.Module
    selected: dict[str, Checkpoint]  # rule -> best checkpoint ("val", "oracle", ...)
    last_weights: dict[str, Tensor]
    optimizer: torch.optim.Optimizer
    state: State
    engine: StepEngine
    epoch_batches: Callable[[torch.Generator], Iterator[Tensor]]
    history: list[dict[str, float]] = field(default_factory=list)  # per epoch: each rule's selection accuracy
    unlabeled: Tensor | None = None

    def load(self, rule: str) -> int:
        """Load the checkpoint a rule chose (the last epoch when it chose none); returns its epoch."""
        ckpt = self.selected.get(rule)
        if ckpt is None or ckpt.weights is None:
            self.model.load_state_dict(self.last_weights)
            return -1
        self.model.load_state_dict(ckpt.weights)
        return ckpt.epoch


def accuracy_on(ctx: RunContext, model: nn.Module, split: str) -> float:
    return float(infer(ctx, model, split).correct.mean())


def fit(ctx: RunContext, model: nn.Module, *, split: str = "train", method: Method | None = None,
        selection: dict[str, str | None] | None = None, epochs: int | None = None,
        on_epoch_end: Callable[[int, nn.Module], None] | None = None) -> FitResult:
    """Train ``model`` with the method's step over ``split`` for the budget's epochs.

    ``selection`` maps a rule name to a split: after every epoch the model is
    scored (accuracy) on each and the best epoch's weights are kept (ties go to
    the earliest epoch). With ``budget.selection == "last"`` no checkpoint is
    kept and every rule resolves to the last epoch.
    """
    method = method or ctx.method
    task, budget = ctx.task, ctx.budget
    epochs = budget.epochs if epochs is None else epochs
    epoch_batches = train_batches(ctx, split)
    first = next(iter(epoch_batches(torch.Generator().manual_seed(0))))
    check_model_output(model, ctx.source.prepare(ctx.source.gather_x(first[:2])), task.num_classes,
                       f"{task.suite}/{task.case}")  # on the eager model, before any compilation
    method.init_model(model, task.sealed())
    prepare_model(model, ctx.speed.compile)
    optimizer = make_optimizer(model, budget)
    steps_per_epoch = sum(1 for _ in epoch_batches(torch.Generator().manual_seed(0)))
    state = ctx.make_state(steps_per_epoch, epochs)
    scheduler = make_scheduler(optimizer, budget, state.total_steps, steps_per_epoch)
    engine = ctx.engine(optimizer, state, scheduler, max_steps=state.total_steps)
    method.setup(task.sealed(), state)
    unlabeled = None
    if method.uses_unlabeled and task.unlabeled_split:
        unlabeled = task.splits[task.unlabeled_split].indices
    rules = {r: s for r, s in (selection or {}).items() if s is not None} if budget.selection == "best" else {}
    best = {rule: Checkpoint(-1.0, -1, None) for rule in rules}
    history = []
    for epoch in range(epochs):
        state.epoch = epoch
        train_epoch(ctx, method, model, engine, state, epoch_batches(ctx.index_gen), unlabeled)
        scores = {}
        for rule, split_name in rules.items():
            scores[rule] = acc = accuracy_on(ctx, model, split_name)
            if acc > best[rule].score:  # strict: earliest best epoch wins ties
                best[rule] = Checkpoint(acc, epoch, copy.deepcopy(model.state_dict()))
        history.append(scores)
        if on_epoch_end is not None:
            on_epoch_end(epoch, model)
    last = copy.deepcopy(model.state_dict())
    return FitResult(model, best, last, optimizer, state, engine, epoch_batches, history, unlabeled)


def benchmark_step(ctx: RunContext, fitted: FitResult, method: Method | None = None) -> Callable[[], None]:
    """A closure running one more train step on a fixed batch: what pytest-benchmark times and
    ``--profile-kernels`` profiles.

    The batch is gathered and augmented once, up front, so the closure holds
    what the timed window holds: the method's step (with the run's precision)
    and the loss check, through the same engine settings.
    """
    method = method or ctx.method
    model, state = fitted.model, fitted.state
    # past the training budget on purpose: the benchmark's extra steps run on their own engine, same optimizer
    engine = ctx.engine(fitted.optimizer, state, count=False)
    idx = next(fitted.epoch_batches(torch.Generator().manual_seed(ctx.seed)))
    (batch,) = [training_batch(ctx, raw, state, fitted.unlabeled) for raw in ctx.source.raw_batches([idx])]

    def step() -> None:
        model.train()
        supervised_step(method, model, batch, engine, state)

    return step


# -- inference -------------------------------------------------------------------------------------


@torch.no_grad()
def infer(ctx: RunContext, model: nn.Module, split: str | Tensor, features: bool = False) -> Outputs:
    """Logits (and penultimate features with ``features=True``) of a split, in stored order, on the CPU.

    Features come from ``model.featurizer`` and logits from ``model.classifier``
    on the same pass, so asking for features costs no second forward pass.
    """
    model.eval()
    indices = ctx.task.splits[split].indices if isinstance(split, str) else split
    logits, feats, ys, doms, groups = [], [], [], [], []
    for x, raw in ctx.source.inputs(indices, ctx.eval_batch):
        if features:
            f = model.featurizer(x)
            feats.append(f.float().cpu())
            logits.append(model.classifier(f).float().cpu())
        else:
            logits.append(model(x).float().cpu())
        ys.append(raw.y.cpu())
        doms.append(None if raw.domain is None else raw.domain.cpu())
        groups.append(None if raw.group is None else raw.group.cpu())

    def cat(parts: list[Tensor | None]) -> Tensor | None:
        return None if not parts or parts[0] is None else torch.cat(parts)

    empty = torch.empty(0)
    return Outputs(cat(logits) if logits else empty, cat(ys) if ys else empty.long(), cat(doms), cat(groups),
                   cat(feats) if features else None, indices.cpu())


def infer_splits(ctx: RunContext, model: nn.Module, splits: Iterable[str] | None = None,
                 features: bool = False) -> dict[str, Outputs]:
    names = list(ctx.task.splits) if splits is None else list(splits)
    return {name: infer(ctx, model, name, features) for name in names}


__all__ = [
    "Checkpoint", "FitResult", "Outputs", "RunContext", "SeedResult", "SplitLoader",
    "accuracy_on", "batch_indices", "benchmark_step", "check_loss", "eval_batch_size", "fit", "infer",
    "infer_splits", "make_optimizer", "model_info", "make_scheduler", "seed_everything", "supervised_step",
    "train_batches", "train_epoch",
]
