"""The supervised protocol: train with the method's loss or train step, select
a checkpoint on validation data, evaluate every split.

The protocol owns the loop, data movement, timing and evaluation; the method
owns only ``loss``/``train_step``. Small datasets live on the device as whole
tensors; batches are gathered by index, so there is no per-sample Python.
"""

from __future__ import annotations

import copy
import math
import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from harness.errors import Diverged
from harness.method import Batch, Method, State
from harness.task import Budget, Task
from harness.timing import StepStats, StepTimer


@dataclass
class SplitOutput:
    """Model outputs on one split, on the CPU, for metric functions."""

    logits: Tensor
    y: Tensor
    domain: Tensor | None
    group: Tensor | None

    @property
    def pred(self) -> Tensor:
        return (self.logits > 0).long() if self.logits.ndim == 1 else self.logits.argmax(1)

    @property
    def correct(self) -> Tensor:
        return (self.pred == self.y).float()


@dataclass
class SeedResult:
    metrics: dict[str, float]
    timing: StepStats
    per_domain: dict[str, float] = field(default_factory=dict)
    train_step: Any = None  # closure running one more train step, for pytest-benchmark
    selected_epoch: int = -1


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


@dataclass
class DeviceData:
    """The task's base tensors on the device (normalised once), shared by all splits."""

    x: Tensor
    y: Tensor
    domain: Tensor | None
    group: Tensor | None


def to_device(task: Task, device: torch.device) -> DeviceData:
    d = task.data
    x = d.x.to(device, dtype=torch.float32)
    if task.normalize is not None:
        mean, std = (torch.tensor(v, dtype=torch.float32, device=device) for v in task.normalize)
        shape = (1, -1) + (1,) * (x.ndim - 2)
        x = (x - mean.view(shape)) / std.view(shape)
    def opt(t):
        return (None if t is None else t.to(device))
    return DeviceData(x, d.y.to(device), opt(d.domain), opt(d.group))


def make_optimizer(model: nn.Module, budget: Budget) -> torch.optim.Optimizer:
    if budget.optimizer == "sgd":
        return torch.optim.SGD(model.parameters(), lr=budget.lr, momentum=budget.momentum,
                               weight_decay=budget.weight_decay)
    return torch.optim.Adam(model.parameters(), lr=budget.lr, weight_decay=budget.weight_decay)


def batch_indices(task: Task, train_idx: Tensor, train_domain: Tensor | None, generator: torch.Generator
                  ) -> Iterator[Tensor]:
    """One epoch of minibatch positions into the base dataset.

    With ``balanced_domains`` each batch takes an equal share from every
    training domain (DomainBed's per-domain minibatches, concatenated), and
    the epoch lasts as long as the largest domain's pass.
    """
    bs = task.budget.batch_size
    if not task.balanced_domains or train_domain is None:
        perm = train_idx[torch.randperm(len(train_idx), generator=generator)]
        for start in range(0, len(perm), bs):
            yield perm[start:start + bs]
        return
    domains = torch.unique(train_domain)
    per = max(1, bs // len(domains))
    pools = [train_idx[train_domain == d] for d in domains]
    n_batches = max(1, max(len(p) for p in pools) // per)
    streams = []
    for pool in pools:  # cycle each domain's permutation so small domains repeat
        reps = -(-n_batches * per // len(pool))
        streams.append(torch.cat([pool[torch.randperm(len(pool), generator=generator)] for _ in range(reps)]))
    for b in range(n_batches):
        yield torch.cat([s[b * per:(b + 1) * per] for s in streams])


def make_state(task: Task, device: torch.device, seed: int, steps_per_epoch: int) -> State:
    gen = torch.Generator(device=device).manual_seed(seed)
    return State(
        step=0, epoch=0, total_steps=steps_per_epoch * task.budget.epochs, device=device, generator=gen,
        num_classes=task.num_classes, num_domains=task.num_domains, num_groups=task.num_groups,
        num_train=len(task.data),
    )


def train_epoch(method: Method, model: nn.Module, optimizer: torch.optim.Optimizer, state: State,
                data: DeviceData, batches: Iterator[Tensor], timer: StepTimer,
                unlabeled: Tensor | None = None, seed: int | None = None) -> None:
    """The hot loop: gather, step, time, check the loss. Nothing else."""
    model.train()
    device = data.x.device
    on_host = device.type == "cpu"
    for idx in batches:
        if not on_host:
            idx = idx.to(device, non_blocking=True)
        batch = Batch(
            x=data.x[idx], y=data.y[idx],
            domain=None if data.domain is None else data.domain[idx],
            group=None if data.group is None else data.group[idx],
            index=idx,
        )
        if unlabeled is not None:
            pick = torch.randint(len(unlabeled), (len(idx),), generator=state.generator, device=device)
            batch.unlabeled_x = data.x[unlabeled[pick]]
        timer.start()
        logs = method.train_step(model, batch, optimizer, state)
        timer.stop(len(idx))
        loss = float(logs["loss"])  # one scalar read per step (a sync on CUDA), as DomainBed's loss.item()
        if not math.isfinite(loss):
            raise Diverged(state.step, loss, seed)
        state.step += 1


@torch.no_grad()
def predict(model: nn.Module, data: DeviceData, indices: Tensor, batch_size: int) -> SplitOutput:
    model.eval()
    idx = indices.to(data.x.device)
    logits = torch.cat([model(data.x[idx[s:s + batch_size]]).float() for s in range(0, len(idx), batch_size)])
    def take(t):
        return (None if t is None else t[idx].cpu())
    return SplitOutput(logits.cpu(), data.y[idx].cpu(), take(data.domain), take(data.group))


def run_supervised(task: Task, method: Method, device: torch.device, seed: int) -> SeedResult:
    seed_everything(seed)
    data = to_device(task, device)
    model = task.model_factory().to(device)
    optimizer = make_optimizer(model, task.budget)
    train_idx = task.splits["train"].indices
    train_domain = task.data.domain[train_idx] if task.data.domain is not None else None
    index_gen = torch.Generator().manual_seed(seed)  # CPU generator: same batches on every device
    steps_per_epoch = sum(1 for _ in batch_indices(task, train_idx, train_domain, torch.Generator().manual_seed(0)))
    state = make_state(task, device, seed, steps_per_epoch)
    method.setup(task, state)
    unlabeled = None
    if method.uses_unlabeled and task.unlabeled_split:
        unlabeled = task.splits[task.unlabeled_split].indices.to(device)

    timer = StepTimer(device)
    best = {"val": (-1.0, -1, None), "oracle": (-1.0, -1, None)}
    for epoch in range(task.budget.epochs):
        state.epoch = epoch
        train_epoch(method, model, optimizer, state, data, batch_indices(task, train_idx, train_domain, index_gen),
                    timer, unlabeled, seed)
        for rule, split in (("val", task.selection_split), ("oracle", task.oracle_split)):
            if split is None:
                continue
            out = predict(model, data, task.splits[split].indices, task.budget.eval_batch_size)
            acc = float(out.correct.mean())
            if acc > best[rule][0]:  # strict: earliest best epoch wins ties
                best[rule] = (acc, epoch, copy.deepcopy(model.state_dict()))

    last_state = copy.deepcopy(model.state_dict())
    metrics: dict[str, float] = {}
    per_domain: dict[str, float] = {}
    for rule, prefix in (("val", ""), ("oracle", "oracle_")):
        _, _, weights = best[rule]
        if weights is None:
            continue
        model.load_state_dict(weights)
        outputs = {name: predict(model, data, split.indices, task.budget.eval_batch_size)
                   for name, split in task.splits.items()}
        found = task.metrics_fn(outputs)
        per = found.pop("per_domain", {}) if isinstance(found.get("per_domain"), dict) else {}
        metrics.update({prefix + k: float(v) for k, v in found.items()})
        if rule == "val":
            per_domain = {k: float(v) for k, v in per.items()}
    model.load_state_dict(best["val"][2] if best["val"][2] is not None else last_state)

    def one_more_step() -> None:  # the train step pytest-benchmark times, on a fixed batch
        idx = next(batch_indices(task, train_idx, train_domain, torch.Generator().manual_seed(seed)))
        train_epoch(method, model, optimizer, state, data, iter([idx]), StepTimer(device), unlabeled, seed)

    return SeedResult(metrics, timer.summary(), per_domain, one_more_step, best["val"][1])
