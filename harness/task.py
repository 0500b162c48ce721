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
from dataclasses import dataclass, field
from typing import Any

from torch import nn

from harness.data.dataset import ArrayDataset, Split

PROFILES = ("smoke", "standard", "full")


@dataclass(frozen=True)
class Budget:
    epochs: int
    batch_size: int
    lr: float = 1e-3
    weight_decay: float = 0.0
    optimizer: str = "adam"  # "adam" | "sgd"
    momentum: float = 0.9
    eval_batch_size: int = 1024
    benchmark_rounds: int = 10


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

    @property
    def fingerprint(self) -> str:
        blob = json.dumps(
            {"suite": self.suite, "version": self.suite_version, "case": self.case, "profile": self.profile,
             "params": self.params, "budget": self.budget.__dict__},
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
    """

    spec: CaseSpec
    data: ArrayDataset
    splits: dict[str, Split]
    num_classes: int
    model_factory: Callable[[], nn.Module]
    metrics_fn: Callable[[dict[str, Any]], dict[str, float]]
    primary_metric: str
    higher_is_better: bool = True
    selection_split: str = "val"
    selection_rule: str = "training-domain validation (best epoch by val accuracy)"
    oracle_split: str | None = None  # test-domain validation, reported separately as oracle_*
    num_domains: int = 1  # training domains
    num_groups: int = 1
    balanced_domains: bool = False  # DomainBed-style batches with equal counts per training domain
    unlabeled_split: str | None = None
    normalize: tuple[tuple[float, ...], tuple[float, ...]] | None = None  # per-channel mean/std from train
    notes: list[str] = field(default_factory=list)

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
