"""The method contract. A method owns its mathematics; the protocol owns loops,
devices, timing and evaluation.

Conventions every method can rely on:

* ``model(x)`` returns logits: shape ``(N,)`` for a binary task (one score f(x),
  positive class = 1) and ``(N, K)`` for a K-class task.
* ``model.featurizer`` and ``model.classifier`` exist and
  ``model(x) == model.classifier(model.featurizer(x))`` (DomainBed's split).
* ``batch`` is a :class:`Batch`; ``state`` is a :class:`State`.
"""

from __future__ import annotations

import ast
import difflib
from dataclasses import dataclass, fields
from types import SimpleNamespace
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from harness.errors import HparamError, Unsupported

PROTOCOLS = ("supervised", "openset", "unlearn", "pretrain", "probe")
FAMILIES = ("loss", "dg", "osr", "unlearning", "ssl", "probe")


@dataclass
class Batch:
    """One training minibatch, already on the training device."""

    x: Tensor
    y: Tensor
    domain: Tensor | None = None  # training-domain index per sample
    group: Tensor | None = None  # group index per sample (e.g. label x attribute)
    index: Tensor | None = None  # position in the training split (for per-sample state)
    unlabeled_x: Tensor | None = None  # target-domain inputs, only for methods with uses_unlabeled

    def to(self, device: torch.device | str) -> Batch:
        return Batch(**{f.name: None if getattr(self, f.name) is None else getattr(self, f.name).to(device)
                        for f in fields(self)})

    def __len__(self) -> int:
        return len(self.y)


class State(SimpleNamespace):
    """Run state handed to every method call.

    The protocol sets ``step``, ``epoch``, ``total_steps``, ``device``,
    ``generator`` (seeded, on the device), ``num_classes``, ``num_domains``,
    ``num_groups`` and ``num_train``. Methods may add their own buffers
    (ALDR's per-sample lambda, GroupDRO's q) in ``setup``.
    """


def is_binary(logits: Tensor) -> bool:
    return logits.ndim == 1


def cross_entropy(logits: Tensor, y: Tensor, reduction: str = "mean") -> Tensor:
    """CE for K-class logits, BCE-with-logits for binary scores: the ERM loss of either task."""
    if is_binary(logits):
        return F.binary_cross_entropy_with_logits(logits, y.to(logits.dtype), reduction=reduction)
    return F.cross_entropy(logits, y, reduction=reduction)


def signed_margin_targets(logits: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
    """Scores f and targets in {-1, +1}, for margin losses z = y~ * f.

    Binary: ``(f, 2y-1)`` of shape (N,). Multiclass: the one-vs-all extension,
    ``(logits, ±1 one-hot)`` of shape (N, K), each column a binary problem.
    """
    if is_binary(logits):
        return logits, 2.0 * y.to(logits.dtype) - 1.0
    signs = -torch.ones_like(logits)
    signs.scatter_(1, y[:, None], 1.0)
    return logits, signs


def group_means(values: Tensor, groups: Tensor, num_groups: int) -> tuple[Tensor, Tensor]:
    """Per-group means of ``values`` and a mask of the groups present in the batch."""
    sums = torch.zeros(num_groups, dtype=values.dtype, device=values.device).index_add(0, groups, values)
    counts = torch.bincount(groups, minlength=num_groups).to(values.dtype)
    present = counts > 0
    return sums / counts.clamp_min(1), present


def annealed_penalty_weight(state: State, optimizer: torch.optim.Optimizer, lam: float, anneal_frac: float,
                            reset_optimizer: bool) -> float:
    """DomainBed's penalty schedule (IRM, VREx): weight 1 for the first ``anneal_frac`` of the steps, then ``lam``.

    With ``reset_optimizer`` the optimizer's state is cleared at the jump, as DomainBed rebuilds Adam:
    its moments were scaled for the small penalty.
    """
    anneal = int(anneal_frac * state.total_steps)
    if state.step == anneal and reset_optimizer:
        optimizer.state.clear()
    return lam if state.step >= anneal else 1.0


def _coerce(key: str, raw: Any, default: Any, owner: str) -> Any:
    """Type a user value (often a ``--hparam`` string) against the default's type."""
    if isinstance(raw, str) and not isinstance(default, str):
        try:
            raw = ast.literal_eval(raw)
        except (ValueError, SyntaxError):
            if isinstance(default, bool) and raw.lower() in ("true", "false", "yes", "no", "on", "off"):
                raw = raw.lower() in ("true", "yes", "on")
    if default is None:
        return raw
    if isinstance(default, bool):
        if isinstance(raw, bool):
            return raw
    elif isinstance(default, int):
        if isinstance(raw, int) and not isinstance(raw, bool):
            return raw
    elif isinstance(default, float):
        if isinstance(raw, (int, float)) and not isinstance(raw, bool):
            return float(raw)
    elif isinstance(default, (tuple, list)):
        if isinstance(raw, (tuple, list)):
            return type(default)(raw)
    elif isinstance(raw, type(default)):
        return raw
    raise HparamError(
        f"hparam {key}={raw!r} for {owner!r} has the wrong type: expected {type(default).__name__} "
        f"(default {default!r})"
    )


def resolve_hparams(defaults: dict[str, Any], overrides: dict[str, Any], owner: str) -> dict[str, Any]:
    """Defaults updated with typed overrides; an unknown key is an error that suggests the nearest."""
    resolved = dict(defaults)
    for key, raw in overrides.items():
        if key not in defaults:
            near = difflib.get_close_matches(key, list(defaults), n=1)
            hint = f" Did you mean {near[0]!r}?" if near else ""
            valid = ", ".join(sorted(defaults)) or "(none)"
            raise HparamError(f"unknown hparam {key!r} for method {owner!r}.{hint} Valid hparams: {valid}")
        resolved[key] = _coerce(key, raw, defaults[key], owner)
    return resolved


class Method:
    """Base class for every method plugin (see module docstring for conventions).

    Subclasses set ``family``, ``protocols`` and ``hparams`` (the defaults) and
    override only the parts they provide. Anything not provided falls back to
    the plain baseline: ERM training, MLS score.
    """

    name: ClassVar[str] = ""
    family: ClassVar[str] = ""
    protocols: ClassVar[frozenset[str]] = frozenset()
    hparams: dict[str, Any] = {}
    binary_only: ClassVar[bool] = False  # cannot run on K-class tasks
    needs_domains: ClassVar[bool] = False  # needs batch.domain (GroupDRO, VREx, IRM, CORAL)
    uses_unlabeled: ClassVar[bool] = False  # receives batch.unlabeled_x when the task has target data
    multiclass_note: ClassVar[str] = ""  # how a binary method extends to K classes, shown in records
    # changes to the case's Budget this method needs (e.g. erm-strong's cosine schedule and augmentation);
    # ``epochs_factor`` scales the epochs. Applied by the protocol and written to each record's ``run``.
    budget_overrides: ClassVar[dict[str, Any]] = {}

    def __init__(self, hparams: dict[str, Any] | None = None) -> None:
        self.hparams = resolve_hparams(type(self).hparams, hparams or {}, self.name or type(self).__name__)

    # -- lifecycle -----------------------------------------------------------
    def check_protocol(self, protocol: str) -> None:
        """Raise :class:`Unsupported` when this method has no part in ``protocol`` (checked before data loads)."""
        if protocol not in self.protocols:
            raise Unsupported(
                f"{self.name} ({self.family}) has no {protocol!r} protocol part, so it does not take part in the "
                f"{protocol!r} protocol (it supports: {', '.join(sorted(self.protocols)) or 'none'})"
            )

    def check_task(self, task: Any) -> None:
        """Raise :class:`Unsupported` with a reason when this method cannot run ``task``."""
        self.check_protocol(task.protocol)
        if self.binary_only and task.num_classes > 2:
            raise Unsupported(f"{self.name} is binary-only and {task.suite}/{task.case} has {task.num_classes} classes")
        if self.needs_domains and task.num_domains < 2:
            raise Unsupported(f"{self.name} needs at least 2 training domains; {task.case} has {task.num_domains}")

    def setup(self, task: Any, state: State) -> None:
        """Create per-run buffers on ``state`` (called once per seed, before training)."""

    # -- supervised ----------------------------------------------------------
    def loss(self, logits: Tensor, batch: Batch, state: State) -> Tensor:
        return cross_entropy(logits, batch.y)

    def train_step(self, model: nn.Module, batch: Batch, optimizer: torch.optim.Optimizer, state: State) -> dict:
        """One optimisation step; returns scalars to log. ``"loss"`` is checked for NaN/Inf."""
        optimizer.zero_grad(set_to_none=True)
        loss = self.loss(model(batch.x), batch, state)
        loss.backward()
        optimizer.step()
        return {"loss": loss.detach()}

    # -- openset -------------------------------------------------------------
    def calibrate(self, model: nn.Module, train: Any, state: State) -> None:
        """Fit what the score needs from the closed-set training data (class means, a feature bank...).

        ``train`` is a :class:`~harness.protocols.kit.SplitLoader`. Default: nothing to fit.
        """

    def score(self, logits: Tensor, features: Tensor | None = None) -> Tensor:
        """Known-ness score, higher = more likely known. Default: maximum logit (MLS)."""
        return logits.max(dim=1).values

    # -- unlearn -------------------------------------------------------------
    def unlearn(self, model: nn.Module, forget: Any, retain: Any, state: State) -> nn.Module:
        """Return the unlearned model, starting from the original ``model``; ``forget``/``retain`` are SplitLoaders."""
        raise NotImplementedError(f"{self.name} defines no unlearn step")

    # -- pretrain ------------------------------------------------------------
    num_views: ClassVar[int] = 2  # views per sample the pretrain protocol draws with the ssl augmentation policy

    def pretrain_step(self, encoder: nn.Module, views: list[Tensor], optimizer: torch.optim.Optimizer,
                      state: State) -> dict:
        """One self-supervised step on a batch of views; returns scalars to log (``"loss"`` is checked)."""
        raise NotImplementedError(f"{self.name} defines no pretrain step")

    # -- probe ---------------------------------------------------------------
    # No hook: the probe protocol scores the case's frozen encoders under a preprocessing grid, so nothing of a
    # method runs; ``baselines/probe/frozen.py`` is its one method.

    def describe(self) -> dict[str, Any]:
        out = {"name": self.name, "family": self.family, "protocols": sorted(self.protocols), "hparams": self.hparams}
        if self.multiclass_note:
            out["multiclass"] = self.multiclass_note
        return out


__all__ = [
    "Batch", "State", "Method", "cross_entropy", "signed_margin_targets", "group_means",
    "resolve_hparams", "is_binary", "annealed_penalty_weight",
]
