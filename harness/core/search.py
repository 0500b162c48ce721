"""Hyperparameter search distributions: what a random sweep draws from.

A method declares the distribution of each hparam it wants searched in its own file, beside the defaults, as
DomainBed's ``hparams_registry.py`` pairs a default with a random-value function (but without a central
registry to edit)::

    hparams = dict(lam=100.0, anneal_frac=0.1)
    search_space = dict(lam=LogUniform(1e-1, 1e5), anneal_frac=LogUniform(2e-4, 1.0))

The optimiser's settings (learning rate, weight decay, batch size) are searched for every method; their
distributions are DomainBed's, per kind of case (:data:`BUDGET_SPACES`). Each value is drawn with its own
generator seeded from (suite, case, method, draw, hparam name), so a draw is a pure function of those and
adding an hparam to a space never changes the values the others draw (DomainBed seeds per name too).
Distributions are plain frozen dataclasses so a sweep can write the space it drew from next to its results.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class LogUniform:
    """exp(U(log low, log high)); ``integer`` truncates as DomainBed's ``int(2**r.uniform(a, b))``."""

    low: float
    high: float
    integer: bool = False

    def __post_init__(self) -> None:
        if not 0 < self.low <= self.high:
            raise ValueError(f"LogUniform needs 0 < low <= high, got {self.low}, {self.high}")

    def sample(self, rng: np.random.Generator) -> float | int:
        value = math.exp(rng.uniform(math.log(self.low), math.log(self.high)))
        return int(value) if self.integer else float(value)


@dataclass(frozen=True)
class Uniform:
    """U(low, high); ``integer`` truncates."""

    low: float
    high: float
    integer: bool = False

    def sample(self, rng: np.random.Generator) -> float | int:
        value = rng.uniform(self.low, self.high)
        return int(value) if self.integer else float(value)


@dataclass(frozen=True)
class Choice:
    """One of ``options``, uniformly."""

    options: tuple[Any, ...]

    def sample(self, rng: np.random.Generator) -> Any:
        value = self.options[int(rng.integers(len(self.options)))]
        return value.item() if isinstance(value, np.generic) else value


Distribution = LogUniform | Uniform | Choice

# DomainBed's optimiser ranges (hparams_registry.py), as budget fields. "small": the MNIST-sized cases trained from
# scratch (DomainBed's SMALL_IMAGES: lr 10^U(-4.5,-2.5), no weight decay, batch 2^U(3,9)); "pretrained": fine-tuning
# ImageNet weights (DomainBed's ResNet-50 datasets: lr 10^U(-5,-3.5), weight decay 10^U(-6,-2), batch 2^U(3,5.5)).
# DomainBed's batch size counts samples per training domain; ours is the whole (domain-balanced) batch.
BUDGET_SPACES: dict[str, dict[str, Distribution]] = {
    "small": dict(lr=LogUniform(10**-4.5, 10**-2.5), batch_size=LogUniform(2**3, 2**9, integer=True)),
    "pretrained": dict(lr=LogUniform(1e-5, 10**-3.5), weight_decay=LogUniform(1e-6, 1e-2),
                       batch_size=LogUniform(2**3, 2**5.5, integer=True)),
}


def draw_seed(*parts: Any) -> int:
    """A 63-bit seed from the parts' text: stable across processes and Python versions (no ``hash()``)."""
    return int(hashlib.sha256("/".join(map(str, parts)).encode()).hexdigest()[:16], 16) >> 1


def draw(space: dict[str, Distribution], *key: Any) -> dict[str, Any]:
    """One value per hparam of ``space``, each from its own generator seeded by ``key`` and the hparam's name."""
    return {name: dist.sample(np.random.default_rng(draw_seed(*key, name))) for name, dist in sorted(space.items())}


def describe_space(space: dict[str, Distribution]) -> dict[str, dict[str, Any]]:
    """JSON-able form of a space, for the sweep's outputs."""
    return {name: {"kind": type(dist).__name__, **asdict(dist)} for name, dist in sorted(space.items())}


__all__ = ["BUDGET_SPACES", "Choice", "Distribution", "LogUniform", "Uniform", "describe_space", "draw",
           "draw_seed"]
