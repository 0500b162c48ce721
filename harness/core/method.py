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
import math
from dataclasses import dataclass, fields
from types import SimpleNamespace
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from harness.core.functional import cross_entropy
from harness.errors import HparamError, Unsupported

# Protocols a method also takes part in through another part it provides: a supervised method trains the
# open-set protocol's closed-set model, which is then scored with the method's ``score`` (MLS by default).
JOINS_THROUGH: dict[str, frozenset[str]] = {"openset": frozenset({"supervised"})}


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
            if not math.isfinite(raw):  # refused here: it would train, then fail writing the JSON record
                raise HparamError(f"hparam {key}={raw!r} for {owner!r} is not a finite number")
            return float(raw)
    elif isinstance(default, (tuple, list)):
        if isinstance(raw, (tuple, list)):
            if any(isinstance(v, float) and not math.isfinite(v) for v in raw):
                raise HparamError(f"hparam {key}={raw!r} for {owner!r} holds a number that is not finite")
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

    A method may also set ``search_space``: hparam name -> distribution
    (:mod:`harness.core.search`) that ``harness sweep`` draws from; hparams left
    out keep their default in every draw (absent: none of its own are searched).
    The optimiser's lr / weight decay / batch size are searched for every method.
    """

    name: ClassVar[str] = ""
    family: ClassVar[str] = ""
    protocols: ClassVar[frozenset[str]] = frozenset()
    hparams: dict[str, Any] = {}
    binary_only: ClassVar[bool] = False  # cannot run on K-class tasks
    needs_domains: ClassVar[bool] = False  # needs batch.domain (GroupDRO, VREx, IRM, CORAL)
    uses_unlabeled: ClassVar[bool] = False  # receives batch.unlabeled_x when the task has target data
    needs_unlabeled: ClassVar[bool] = False  # cannot run without target data (DANN, pseudo-labelling, DivDis)
    multiclass_note: ClassVar[str] = ""  # how a binary method extends to K classes, shown in records
    # changes to the case's Budget this method needs (e.g. erm-strong's cosine schedule and augmentation);
    # ``epochs_factor`` scales the epochs. Applied by the protocol and written to each record's ``run``.
    budget_overrides: ClassVar[dict[str, Any]] = {}

    def __init__(self, hparams: dict[str, Any] | None = None) -> None:
        self.hparams = resolve_hparams(type(self).hparams, hparams or {}, self.name or type(self).__name__)

    # -- lifecycle -----------------------------------------------------------
    def check_protocol(self, protocol: str) -> None:
        """Raise :class:`Unsupported` when this method has no part in ``protocol`` (checked before data loads).

        A method also takes part through a part it provides that the protocol uses (:data:`JOINS_THROUGH`).
        """
        if protocol not in self.protocols and not self.protocols & JOINS_THROUGH.get(protocol, frozenset()):
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
        if self.needs_unlabeled and not task.unlabeled_split:
            raise Unsupported(f"{self.name} trains on unlabeled target data and {task.suite}/{task.case} has none")

    def setup(self, task: Any, state: State) -> None:
        """Create per-run buffers on ``state`` (called once per seed, before training)."""

    def init_model(self, model: nn.Module, task: Any) -> None:
        """Adjust the model a training run starts from (an output-bias prior, extra heads, a discriminator).

        Called by :func:`~harness.protocols.kit.fit` before the optimizer is built, so modules the method
        attaches to ``model`` are trained with it and saved in its checkpoints. Default: nothing.
        """

    # -- supervised ----------------------------------------------------------
    def loss(self, logits: Tensor, batch: Batch, state: State) -> Tensor:
        return cross_entropy(logits, batch.y)

    def train_step(self, model: nn.Module, batch: Batch, engine: Any, state: State) -> dict | Tensor:
        """One optimisation step's objective; returns the loss (or a dict of scalars with ``"loss"``).

        ``engine`` is the protocol's :class:`~harness.core.engine.StepEngine`: it has zeroed the gradients,
        runs this under the run's autocast, backpropagates the returned loss, clips, steps the optimizer and the
        schedule and checks the loss for NaN/Inf. A multi-pass method (SAM, UDIM) calls ``engine.backward(loss)``
        itself, once per pass (gradients accumulate into one update), and ``engine.grad(loss, params)`` for
        directions that must not touch ``.grad``; it never calls ``optimizer.step()``.
        """
        return {"loss": self.loss(model(batch.x), batch, state)}

    # -- openset -------------------------------------------------------------
    # The open-set protocol scores a closed-set classifier trained on the known classes. A method with a
    # ``trainer`` hparam (the scores in baselines/osr/) scores the model that the named method trains (default
    # "erm"); any other method trains the model itself and is scored with its own ``score`` (MLS by default).
    scores_inputs: ClassVar[bool] = False  # True: the protocol calls score_inputs (input perturbation, ODIN)

    def calibrate(self, model: nn.Module, train: Any, state: State) -> None:
        """Fit what the score needs from the closed-set training data (class means, a feature bank...).

        ``train`` holds the training split's outputs in eval mode, unaugmented, on the CPU
        (:class:`~harness.protocols.kit.Outputs`: ``logits``, ``features``, ``y``). Called once per seed, before
        any score. Default: nothing to fit.
        """

    def score(self, logits: Tensor, features: Tensor | None = None) -> Tensor:
        """Known-ness score, higher = more likely known. Default: maximum logit (MLS)."""
        return logits.max(dim=1).values

    def score_inputs(self, model: nn.Module, x: Tensor, state: State) -> Tensor:
        """Known-ness score from a batch of model inputs (only with ``scores_inputs``); may take gradients
        with respect to ``x``. ``state.input_std`` is the per-channel std that normalised the inputs."""
        raise NotImplementedError(f"{self.name} sets scores_inputs but defines no score_inputs")

    # -- unlearn -------------------------------------------------------------
    # reads the retrained oracles (``state.oracle_logits``, ``state.retrain``): its record is labelled oracle-matching
    uses_oracles: ClassVar[bool] = False
    # False: the forget/retain batches carry no labels (reading ``batch.y`` raises), so label-free claims are enforced
    reads_labels: ClassVar[bool] = True

    def unlearn(self, model: nn.Module, forget: Any, retain: Any, state: State) -> nn.Module:
        """Return the unlearned model, starting from ``model`` (a private copy of the original, trained on all data).

        ``forget`` and ``retain`` are SplitLoaders (:class:`~harness.protocols.kit.SplitLoader`: ``.batches()``,
        ``.forever()``, ``len``). ``state`` carries ``total_steps`` (the step budget: optimiser updates of the
        model, about a fifth of a retraining by default), ``step``, ``device``, ``generator``, ``num_classes``, and
        ``optimizer(params, lr_factor=1.0)``, the case's optimiser recipe. Updates come from the protocol's engines
        (:class:`harness.protocols.unlearn.UnlearnEngines`): ``engine = state.engine(params_or_optimizer,
        lr_factor)`` and ``state.optimize(model, engine, step, batches, steps=None)``; every engine spends the one
        ``state.budget``. The protocol times this call (the numerator of RTE).
        """
        raise NotImplementedError(f"{self.name} defines no unlearn step")

    # -- pretrain ------------------------------------------------------------
    # views per sample the pretrain protocol draws on the device with the budget's augmentation policy (``ssl``);
    # a method whose ``budget_overrides`` set ``augment="none"`` gets the un-augmented batch instead
    num_views: ClassVar[int] = 2
    # the method's teacher is the encoder as initialised, frozen (random-teacher): the protocol probes it too
    frozen_initial_teacher: ClassVar[bool] = False

    def encoder_spec(self, spec: dict[str, Any], task: Any) -> dict[str, Any]:
        """The encoder to pretrain, as a spec for ``harness.protocols.pretrain.build_encoder``. Default: the task's."""
        return spec

    def build(self, encoder: nn.Module, feature_dim: int, state: State) -> list[nn.Module]:
        """Create the heads (projector, predictor, teacher) on ``state``, once per seed before pretraining.

        Returns the modules whose trainable parameters the protocol optimises, the encoder included when it
        learns; an empty list means nothing is trained (the random-init floor). Teachers are kept on ``state``
        and are not returned: they change only through the method's own rule (``ema_update``, or never).
        """
        return [encoder]

    def pretrain_loss(self, views: list[Tensor], state: State) -> dict | Tensor:
        """One self-supervised step's objective on ``num_views`` views of a batch; returns the loss (or a dict of
        scalars with ``"loss"``).

        The protocol's :class:`~harness.core.engine.StepEngine` has put the returned modules in train mode and zeroed
        the gradients; it runs this under the run's autocast, backpropagates, clips, steps the optimizer and the
        schedule, then calls :meth:`after_step`. The modules live on ``state`` (made in :meth:`build`).
        """
        raise NotImplementedError(f"{self.name} defines no pretrain loss")

    def after_step(self, state: State) -> None:
        """After each applied update, before ``state.step`` advances: teacher EMA, DINO's centre. Default: nothing."""

    # -- probe ---------------------------------------------------------------
    # The probe protocol scores the case's frozen encoders under a preprocessing grid; ``baselines/probe/frozen.py``
    # is its one method. Its only hook is how features are read off the encoder.

    def embed(self, encoder: nn.Module, x: Tensor) -> Tensor:
        """Features of a preprocessed batch, under the run's autocast and inference mode. Default: ``encoder(x)``."""
        return encoder(x)

    def describe(self) -> dict[str, Any]:
        out = {"name": self.name, "family": self.family, "protocols": sorted(self.protocols), "hparams": self.hparams}
        if self.multiclass_note:
            out["multiclass"] = self.multiclass_note
        return out


__all__ = [
    "Batch", "State", "Method", "resolve_hparams",
]
