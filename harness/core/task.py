"""Tasks: one concrete benchmark case, built by a suite for a profile.

A :class:`CaseSpec` is cheap: an id, JSON-able parameters and a builder. Its
fingerprint hashes the parameters, the profile's budget and the suite version,
so ``leaderboard --check`` can tell stale records without loading any data.
Building it yields a :class:`Task` with the data splits and the model factory.
The data's own content hash is stored in each record as ``data_fingerprint``.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field, fields, replace
from typing import Any

from torch import nn

from harness.data.dataset import ArrayDataset, Split
from harness.errors import SealedData

PROFILES = ("smoke", "standard", "full")


OPTIMIZERS = ("adam", "adamw", "sgd")
SCHEDULES = ("constant", "cosine")
SELECTIONS = ("best", "last")
# Budget fields that existed when the first records were written: always part of the fingerprint. Fields added
# since are hashed only when they differ from their default, so adding a field never makes old records stale.
_LEGACY_BUDGET_FIELDS = ("epochs", "batch_size", "lr", "weight_decay", "optimizer", "momentum", "eval_batch_size",
                         "benchmark_rounds")


@dataclass(frozen=True)
class Budget:
    """Training budget of a case. A method may adjust it through ``Method.budget`` (recorded per record)."""

    epochs: int
    batch_size: int
    lr: float = 1e-3
    weight_decay: float = 0.0
    optimizer: str = "adam"  # one of OPTIMIZERS; sgd uses ``momentum`` (heavy ball, no Nesterov)
    momentum: float = 0.9
    eval_batch_size: int = 1024  # upper bound; the protocol picks the evaluation batch per device
    benchmark_rounds: int = 10
    schedule: str = "constant"  # one of SCHEDULES, stepped per training step
    warmup_epochs: float = 0.0  # linear warm-up from 0 to lr, then the schedule
    grad_clip: float | None = None  # max global gradient norm, applied before every optimizer step
    augment: str = "none"  # a policy of harness.core.augment, applied per batch on the device (training batches only)
    selection: str = "best"  # one of SELECTIONS: best epoch on the task's selection split, or the last epoch

    def __post_init__(self) -> None:
        for name, value, allowed in (("optimizer", self.optimizer, OPTIMIZERS), ("schedule", self.schedule, SCHEDULES),
                                     ("selection", self.selection, SELECTIONS)):
            if value not in allowed:
                raise ValueError(f"Budget.{name}={value!r}: choose one of {', '.join(allowed)}")

    def fingerprint_dict(self) -> dict[str, Any]:
        out = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name in _LEGACY_BUDGET_FIELDS or value != f.default:
                out[f.name] = value
        return out

    def with_overrides(self, overrides: dict[str, Any]) -> Budget:
        """A copy with a method's budget changes; ``epochs_factor`` scales the epochs."""
        changes = dict(overrides)
        factor = changes.pop("epochs_factor", None)
        if factor is not None:
            changes["epochs"] = max(1, round(self.epochs * factor))
        unknown = set(changes) - {f.name for f in fields(self)}
        if unknown:
            raise ValueError(f"unknown Budget field(s) {sorted(unknown)}")
        return replace(self, **changes)


@dataclass(frozen=True)
class CaseSpec:
    suite: str
    case: str
    profile: str
    params: dict[str, Any]
    budget: Budget
    build: Callable[[CaseSpec], Task] = field(compare=False, repr=False)
    suite_version: str = "1"
    protocol: str = "supervised"
    # seeds to run when the user gives no --seeds (at least the profile's default); not part of the fingerprint
    default_seeds: int | None = None

    @property
    def fingerprint(self) -> str:
        blob = json.dumps(
            {"suite": self.suite, "version": self.suite_version, "case": self.case, "profile": self.profile,
             "params": self.params, "budget": self.budget.fingerprint_dict()},
            sort_keys=True, default=str,
        )
        return hashlib.sha256(blob.encode()).hexdigest()[:32]

    def describe(self) -> dict[str, Any]:
        return {"params": self.params, "budget": dict(self.budget.__dict__), "suite_version": self.suite_version}


@dataclass
class Task:
    """Everything a protocol needs to run one case for one seed.

    ``splits`` must hold ``"train"`` and the selection split named by
    ``selection_split``; every other split is evaluated and handed to
    ``metrics_fn(outputs)``, which returns the case's metrics as floats.
    Metrics named in ``lower_is_better`` rank ascending (FPR@95, KLoM, gaps);
    every other metric is higher-is-better. ``case_metrics_fn`` sees every
    seed's :class:`~harness.protocols.kit.SeedResult` (floats and named
    arrays) and returns metrics of the whole case, such as KLoM over models.
    """

    spec: CaseSpec
    data: ArrayDataset
    splits: dict[str, Split]
    num_classes: int
    model_factory: Callable[[], nn.Module]
    metrics_fn: Callable[[dict[str, Any]], dict[str, float]]
    primary_metric: str
    selection_split: str = "val"
    selection_rule: str = "training-domain validation (best epoch by val accuracy)"
    oracle_split: str | None = None  # test-domain validation, reported separately as oracle_*
    num_domains: int = 1  # training domains
    num_groups: int = 1
    balanced_domains: bool = False  # DomainBed-style batches with equal counts per training domain
    unlabeled_split: str | None = None
    normalize: tuple[tuple[float, ...], tuple[float, ...]] | None = None  # per-channel mean/std from train
    notes: list[str] = field(default_factory=list)
    lower_is_better: frozenset[str] = frozenset()
    case_metrics_fn: Callable[[list[Any]], dict[str, float]] | None = None
    # metrics of one seed recomputed from that seed's SeedResult.arrays (the compact evidence kept beside the record)
    recompute_fn: Callable[[dict[str, Any]], dict[str, float]] | None = None
    info: dict[str, Any] = field(default_factory=dict)  # JSON-able facts for the record (classes present, splits...)

    def higher_is_better_for(self, metric: str) -> bool:
        return metric.removeprefix("oracle_") not in self.lower_is_better

    @property
    def higher_is_better(self) -> bool:
        """Direction of the primary metric."""
        return self.higher_is_better_for(self.primary_metric)

    @property
    def suite(self) -> str:
        return self.spec.suite

    @property
    def protocol(self) -> str:
        return self.spec.protocol

    @property
    def case(self) -> str:
        return self.spec.case

    @property
    def budget(self) -> Budget:
        return self.spec.budget

    @property
    def fingerprint(self) -> str:
        return self.spec.fingerprint

    @property
    def image_size(self) -> tuple[int, int] | None:
        shape = tuple(self.data.x.shape)
        return (int(shape[-2]), int(shape[-1])) if len(shape) == 4 else None

    def sealed(self) -> TaskView:
        """The view of this task a method gets: no data and no split, so no evaluation example can reach it."""
        return TaskView(self.spec, self.num_classes, self.num_domains, self.num_groups, self.unlabeled_split,
                        self.image_size, int(self.data.x.shape[1]) if self.data.x.ndim > 1 else 1, dict(self.info))


@dataclass(frozen=True)
class TaskView:
    """What a method's hooks (``check_task``, ``setup``, ``init_model``, ``encoder_spec``) see of a task: its name,
    sizes and facts. Its examples reach the method only as training batches and model-selection outputs from the
    protocol; ``data``, ``splits`` and the evaluation functions are sealed, and asking for them is one line."""

    spec: CaseSpec
    num_classes: int
    num_domains: int
    num_groups: int
    unlabeled_split: str | None
    image_size: tuple[int, int] | None
    in_chans: int
    info: dict[str, Any]

    @property
    def suite(self) -> str:
        return self.spec.suite

    @property
    def case(self) -> str:
        return self.spec.case

    @property
    def protocol(self) -> str:
        return self.spec.protocol

    def __getattr__(self, name: str) -> Any:
        raise SealedData(f"{self.spec.suite}/{self.spec.case}: a method sees the training and model-selection data "
                         f"only through the batches and outputs the protocol hands it; Task.{name} is sealed")
