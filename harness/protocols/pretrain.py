"""The pretrain protocol: self-supervised pretraining of an encoder, scored by probes on its frozen features.

The protocol owns the loop, the views, the EMA schedule helper, the timing, the checkpoint cache and the probes; a
method owns only its heads (``Method.build``), its loss (``Method.pretrain_loss``) and what follows an update
(``Method.after_step``: a teacher's EMA, DINO's centre). The optimisation step is
:class:`harness.core.engine.StepEngine`'s.

One seed:

1. **Encoder.** ``build_encoder(method.encoder_spec(task.info["encoder"], task))``, initialised from the seed
   alone (in a forked RNG), so every method starts a seed from the same weights and a checkpoint can be rebuilt.
2. **Heads.** ``method.build(encoder, feature_dim, state)`` makes projectors, predictors and teachers and returns
   the modules to optimise with the budget's optimiser and per-step schedule. An empty list trains nothing.
3. **Loop.** ``budget.epochs`` passes over the ``pretrain`` split in shuffled whole batches (the last partial
   batch is dropped, as SSL loaders do: BatchNorm and in-batch negatives want full batches). Each batch is gathered
   as stored (uint8) and ``method.num_views`` views are drawn on the device by the budget's policy
   (``AugmentPolicy.views``: per-sample draws from the run's augmentation generator), then normalised. Under
   ``augment="none"`` every view is the un-augmented batch (random-teacher). Labels never reach the method.
   Each batch is one engine step: ``method.pretrain_loss(views, state)`` under the run's autocast (``--precision``),
   backward, the budget's clipping, the optimiser and the per-step schedule, then ``method.after_step(state)``. The
   engine's ``max_steps`` is the budget's ``epochs x steps per epoch``. ``--compile`` is refused (one line).
4. **Evaluation of the last epoch** (no checkpoint is selected on any split): the encoder, in eval mode, embeds
   ``train``, ``val`` and ``test`` un-augmented, and two ``ssl``-policy views of ``test``.

Online kNN (solo-learn's online evaluation; the curve, not a metric): when ``task.info["online_knn"]`` gives
``points`` > 0, the encoder is scored before the first step and after the steps
``ceil(i * total_steps / points)``, i = 1..points (``points`` = epochs: every epoch end; fewer: every few epochs and
the last; more: within epochs, as on the 1-epoch smoke profile). At each point the encoder, in eval mode, embeds
``train`` and ``val`` un-augmented, a weighted kNN (Wu et al., 2018, as solo-learn's ``WeightedKNNClassifier``:
cosine similarity, k = 20 neighbours (at most the train size), a neighbour's vote exp(sim / 0.07)) is fitted on the
``train`` features and labels and scored on ``val``; ``test`` is never read. It differs from the final ``knn_acc``
(majority vote on train-z-scored features, on ``test``) on purpose: it is solo-learn's online kNN. The encoder's and
its submodules' train/eval flags are restored afterwards, and nothing in it draws from a generator, so the
trajectory is the one without it (a test checks that losses and metrics are identical). Its time is kept out of the
timed steps and out of ``epoch_seconds``; it is reported as ``online_knn_seconds``. Its memory is not kept out:
``peak_memory_mb`` is a peak over the run, evaluation batches included. The curve ``[[epoch, val accuracy], ...]``
(epoch = step / steps per epoch) is kept in the encoder's sidecar, so a reused encoder reports the same curve, and
in the record as ``run.online_knn`` (one curve per seed). An encoder that trains nothing (random-init) has the point
at epoch 0 only.

Metrics: the protocol hands the seed's evidence arrays to ``task.metrics_fn``; the SSL suite sets it and
``recompute_fn`` to :func:`pretrain_metrics`, so the arrays reproduce the metrics exactly:

- ``probe_acc``: a logistic-regression probe (sklearn lbfgs, L2, features z-scored with ``train`` statistics) is
  fitted on ``train`` for every C in ``PROBE_C``; the C with the best ``val`` accuracy is kept (ties: the smaller C,
  the stronger regularisation) and its ``test`` accuracy is reported. ``val`` is carved from the labelled train
  split; ``test`` chooses nothing.
- ``knn_acc``: :func:`harness.metrics.knn_predict`, k = 20 (at most the train size), cosine similarity on features
  z-scored with ``train`` statistics, majority vote; fitted on ``train``, scored on ``test``.
- ``alignment`` (Wang & Isola, 2020, alpha = 2): the mean over test images of ||f(v1) - f(v2)||^2, f the
  L2-normalised features and v1, v2 two ``ssl``-policy views from a generator seeded by the run's seed.
- ``uniformity`` (Wang & Isola, t = 2): log of the mean over test pairs i != j of exp(-2 ||f(x_i) - f(x_j)||^2),
  on un-augmented test images. Both are lower-is-better.
- ``epoch_time_s``: mean wall time of a pretraining epoch (views, steps and all). ``peak_memory_mb``: peak memory
  at the end of pretraining (CUDA's max allocated; on a CPU the case's peak RSS so far, the data included).
- ``frozen_initial_teacher`` methods (random-teacher) add ``teacher_probe_acc`` and ``teacher_knn_acc``, the
  probes of the teacher's encoder (the seed's initial encoder, rebuilt from the seed), and ``gain_probe_acc``,
  ``gain_knn_acc``: student minus teacher.

Checkpoints: the pretrained encoder is stored by ``ModelStore("ssl")`` under a key over the task fingerprint and
data hash, the method, its hparams and code, the seed, the encoder spec, the budget and the device type. The JSON
sidecar holds what is needed to rebuild and probe the encoder (see ``harness.suites.ssl.cached_encoders``): its
identity (:func:`encoder_identity`: what trained it, all but the code) and the digest of the code that trained it
(:func:`encoder_code`), so another suite can ask for "this encoder, trained by the current code". A seed
whose key is stored reuses the encoder; its timing then comes from the sidecar and ``info`` says
``encoder_reused``.
"""

from __future__ import annotations

import importlib
import sys
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from functools import partial
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from harness.core.augment import get_policy
from harness.core.digest import code_digest
from harness.core.engine import StepEngine
from harness.core.functional import conv_encoder, ema_momentum, ema_update, mlp_head  # noqa: F401  (re-exported)
from harness.core.method import Method, State
from harness.core.timing import StepStats, StepTimer, peak_memory, synchronize
from harness.data.dataset import to_float
from harness.errors import UsageError
from harness.metrics.probes import knn_predict
from harness.protocols import register_protocol
from harness.protocols.kit import RunContext, SeedResult, make_optimizer, make_scheduler, model_info
from harness.protocols.store import ModelStore, store_key

NAMESPACE = "ssl"  # ModelStore namespace of pretrained encoders
PROBE_C = (1e-3, 1e-2, 1e-1, 1.0, 10.0)  # inverse L2 strengths tried by the linear probe, chosen on val
PROBE_MAX_ITER = 1000
KNN_K = 20
ONLINE_KNN_K = 20  # solo-learn's default k (Wu et al. used 200 on ImageNet)
ONLINE_KNN_T = 0.07  # the vote temperature of Wu et al. and solo-learn
UNIFORMITY_T = 2.0
ALIGNMENT_STREAM = 104_729  # the alignment views' generator is seeded with seed + this, apart from training streams
BUILDER_PACKAGES = ("harness.", "baselines.")  # where an encoder spec's builder may live (specs come from JSON)


# -- encoders --------------------------------------------------------------------------------------


def timm_encoder(name: str, in_chans: int) -> nn.Module:
    """A timm backbone from random initialisation, pooled features (``num_classes=0``)."""
    import timm  # heavy import, only when a timm encoder is asked for

    net = timm.create_model(name, num_classes=0, in_chans=in_chans)
    net.feature_dim = int(net.num_features)
    return net


def build_encoder(spec: dict[str, Any]) -> nn.Module:
    """The encoder of ``{"builder": "module:function", "kwargs": {...}}``, a module with an int ``feature_dim``.

    Specs are read back from checkpoint sidecars, so the builder must live in ``harness`` or ``baselines``.
    """
    target = spec.get("builder", "") if isinstance(spec, dict) else ""
    module_name, _, attr = str(target).partition(":")
    if not module_name.startswith(BUILDER_PACKAGES) or not attr:
        raise UsageError(f"encoder spec {spec!r}: 'builder' must be 'module:function' in harness or baselines")
    try:
        builder = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as err:
        raise UsageError(f"encoder builder {target!r} is not available: {err}") from err
    encoder = builder(**spec.get("kwargs", {}))
    if not isinstance(getattr(encoder, "feature_dim", None), int):
        raise UsageError(f"encoder builder {target!r} returned a module without an int feature_dim")
    return encoder


def seeded_factory(spec: dict[str, Any], seed: int) -> Callable[[], nn.Module]:
    """A factory building the spec's encoder with the weights of ``seed`` (the global RNG is left untouched)."""

    def factory() -> nn.Module:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            return build_encoder(spec)

    return factory


# -- the loop --------------------------------------------------------------------------------------


def draw_views(ctx: RunContext, x_raw: Tensor, n: int) -> list[Tensor]:
    """``n`` model inputs of a stored batch: policy views (per-sample draws), or the plain batch without a policy."""
    source = ctx.source
    if ctx.augment is None:
        return [source.prepare(x_raw)] * n
    views = ctx.augment.views(to_float(x_raw), n, ctx.augment_gen)
    return views if source.normalizer is None else [source.normalizer(v) for v in views]


def whole_batches(indices: Tensor, batch_size: int, generator: torch.Generator) -> Iterator[Tensor]:
    """One shuffled epoch of full batches; a split smaller than a batch is one batch."""
    perm = indices[torch.randperm(len(indices), generator=generator)]
    size = min(batch_size, len(perm))
    for start in range(0, len(perm) - size + 1, size):
        yield perm[start:start + size]


def online_knn_steps(total_steps: int, points: int) -> list[int]:
    """The steps after which the online kNN scores the encoder: 0 (before training), then ``ceil(i * total_steps /
    points)`` for i = 1..points, the last being ``total_steps``; none when ``points`` is 0."""
    if points <= 0:
        return []
    return sorted({0, *((i * total_steps + points - 1) // points for i in range(1, points + 1))})


def _vote_weights(distances: np.ndarray, temperature: float) -> np.ndarray:
    """A neighbour's vote exp(cos sim / T), from sklearn's cosine distance 1 - cos sim (Wu et al., 2018)."""
    return np.exp((1.0 - distances) / temperature)


def weighted_knn_accuracy(train: tuple[np.ndarray, np.ndarray], val: tuple[np.ndarray, np.ndarray],
                          k: int = ONLINE_KNN_K, temperature: float = ONLINE_KNN_T) -> float:
    """Accuracy on ``val`` of the temperature-weighted cosine kNN fitted on ``train`` (solo-learn's online kNN)."""
    from sklearn.neighbors import KNeighborsClassifier  # lazy: slow import, only probes need it

    clf = KNeighborsClassifier(n_neighbors=min(k, len(train[1])), metric="cosine", algorithm="brute",
                               weights=partial(_vote_weights, temperature=temperature))
    clf.fit(train[0].astype(np.float64), train[1])
    return float(np.mean(clf.predict(val[0].astype(np.float64)) == val[1]))


@dataclass
class Pretrainer:
    """A method's heads, optimiser, state and step engine around one encoder: what the loop and the benchmark
    step drive. ``engine`` is None when the method trains nothing (random-init)."""

    ctx: RunContext
    method: Method
    encoder: nn.Module
    modules: list[nn.Module]
    optimizer: torch.optim.Optimizer | None
    scheduler: Any
    state: State
    engine: StepEngine | None
    steps_per_epoch: int

    @classmethod
    def create(cls, ctx: RunContext, method: Method, encoder: nn.Module) -> Pretrainer:
        n = len(ctx.task.splits["pretrain"])
        if n < 2:
            raise UsageError(f"{ctx.task.case}: the pretrain split needs at least 2 samples, has {n}")
        steps_per_epoch = n // min(ctx.budget.batch_size, n)
        state = ctx.make_state(steps_per_epoch)
        modules = method.build(encoder, encoder.feature_dim, state)
        params = list({id(p): p for m in modules for p in m.parameters() if p.requires_grad}.values())
        optimizer = make_optimizer(params, ctx.budget) if params else None
        scheduler = make_scheduler(optimizer, ctx.budget, state.total_steps, steps_per_epoch) if params else None
        engine = None
        if optimizer is not None:
            engine = ctx.engine(optimizer, state, scheduler, max_steps=state.total_steps,
                                after_step=[lambda: method.after_step(state)])
        return cls(ctx, method, encoder, modules, optimizer, scheduler, state, engine, steps_per_epoch)

    def step(self, x_raw: Tensor, timer: StepTimer | None = None, engine: StepEngine | None = None) -> float:
        """One engine step on the views of a stored batch (drawn outside the timed window); returns the loss."""
        engine = engine or self.engine
        if engine is None:
            raise UsageError(f"{self.method.name} trains nothing: it has no pretraining step")
        views = draw_views(self.ctx, x_raw, self.method.num_views)
        if timer is not None:
            timer.start()
        logs = engine.step(lambda: self.method.pretrain_loss(views, self.state))
        if timer is not None:
            timer.stop(len(x_raw))
        return float(logs["loss"])

    def train_mode(self) -> None:
        for module in self.modules:
            module.train()

    def online_knn(self) -> tuple[list[float], float]:
        """One point of the online-kNN curve, ``[epoch, val accuracy]``, and the seconds it took (see module
        docstring): ``train`` and ``val`` only; the encoder's modules get their train/eval flags back."""
        ctx = self.ctx
        synchronize(ctx.device)
        t0 = time.perf_counter()
        modes = [(m, m.training) for m in self.encoder.modules()]
        try:
            feats = {s: (embed(ctx, self.encoder, ctx.task.splits[s].indices).numpy(), ctx.task.splits[s].y.numpy())
                     for s in ("train", "val")}
        finally:
            for module, mode in modes:
                module.training = mode
        acc = weighted_knn_accuracy(feats["train"], feats["val"])
        return [self.state.step / self.steps_per_epoch, acc], time.perf_counter() - t0

    def run(self) -> dict[str, Any]:
        """Every epoch (nothing when there is nothing to optimise), with the online-kNN points; returns the facts
        the record and sidecar keep."""
        ctx = self.ctx
        indices = ctx.task.splits["pretrain"].indices
        epochs = ctx.budget.epochs if self.optimizer is not None else 0
        at = set(online_knn_steps(self.steps_per_epoch * epochs, int(ctx.task.info.get("online_knn", 0))))
        curve, eval_seconds = [], 0.0

        def evaluate() -> float:
            """The online-kNN point of this step if it is one; the seconds it took, kept out of the epoch's time."""
            nonlocal eval_seconds
            if self.state.step not in at:
                return 0.0
            point, seconds = self.online_knn()
            curve.append(point)
            eval_seconds += seconds
            return seconds

        evaluate()
        epoch_seconds, epoch_loss = [], []
        for epoch in range(epochs):
            self.state.epoch = epoch
            self.train_mode()
            t0 = time.perf_counter()
            losses, paused = [], 0.0
            for raw in ctx.source.raw_batches(whole_batches(indices, ctx.budget.batch_size, ctx.index_gen)):
                losses.append(self.step(raw.x, ctx.timer))
                paused += evaluate()
            synchronize(ctx.device)
            epoch_seconds.append(time.perf_counter() - t0 - paused)
            epoch_loss.append(float(np.mean(losses)))
        peak, kind = peak_memory(ctx.device)
        out = {"epoch_seconds": epoch_seconds, "epoch_loss": epoch_loss, "steps": self.state.step,
               "peak_memory_bytes": peak, "memory_kind": kind, "step_stats": asdict(ctx.timer.summary())}
        if at:
            out.update(online_knn=curve, online_knn_seconds=eval_seconds)
        return out

    def benchmark_step(self) -> Callable[[], None] | None:
        """One more step on a fixed batch (pytest-benchmark's workload); None when nothing is trained."""
        if self.optimizer is None:
            return None
        # past the training budget on purpose: the benchmark's extra steps run on their own engine (same optimizer
        # and after-step hook, no schedule, ``state.step`` not moved), as the supervised protocols' benchmark step
        engine = self.ctx.engine(self.optimizer, self.state, count=False,
                                 after_step=[lambda: self.method.after_step(self.state)])
        idx = next(whole_batches(self.ctx.task.splits["pretrain"].indices, self.ctx.budget.batch_size,
                                 torch.Generator().manual_seed(self.ctx.seed)))

        def step() -> None:
            self.train_mode()
            for raw in self.ctx.source.raw_batches([idx]):
                self.step(raw.x, engine=engine)

        return step


# -- evaluation ------------------------------------------------------------------------------------


@torch.no_grad()
def embed(ctx: RunContext, encoder: nn.Module, indices: Tensor) -> Tensor:
    """Features of un-augmented images, in stored order, on the CPU."""
    encoder.eval()
    return torch.cat([encoder(x).float().cpu() for x, _ in ctx.source.inputs(indices, ctx.eval_batch)])


@torch.no_grad()
def embed_view_pairs(ctx: RunContext, encoder: nn.Module, indices: Tensor) -> tuple[Tensor, Tensor]:
    """Features of two ``ssl``-policy views of each image, from a generator seeded by the run's seed."""
    encoder.eval()
    policy = get_policy("ssl", ctx.task.image_size)
    gen = torch.Generator(device=ctx.device).manual_seed(ctx.seed + ALIGNMENT_STREAM)
    size = ctx.eval_batch
    first, second = [], []
    for raw in ctx.source.raw_batches(indices[s:s + size] for s in range(0, len(indices), size)):
        first.append(encoder(ctx.source.prepare(raw.x, policy, gen)).float().cpu())
        second.append(encoder(ctx.source.prepare(raw.x, policy, gen)).float().cpu())
    return torch.cat(first), torch.cat(second)


def alignment_terms(f1: Tensor, f2: Tensor) -> np.ndarray:
    """Per image ||f(v1) - f(v2)||^2 of L2-normalised features (their mean is the alignment)."""
    return (F.normalize(f1.double(), dim=1) - F.normalize(f2.double(), dim=1)).pow(2).sum(1).numpy()


def uniformity_terms(features: Tensor, t: float = UNIFORMITY_T, chunk: int = 512) -> np.ndarray:
    """Per image i, sum over j != i of exp(-t ||f_i - f_j||^2) of L2-normalised features, in float64 chunks."""
    z = F.normalize(features.double(), dim=1)
    out = np.empty(len(z))
    for start in range(0, len(z), chunk):
        block = z[start:start + chunk]
        kernel = torch.exp(-t * (2.0 - 2.0 * block @ z.T).clamp_min(0.0))  # ||a - b||^2 = 2 - 2 a.b on the sphere
        rows = torch.arange(len(block))
        kernel[rows, rows + start] = 0.0
        out[start:start + len(block)] = kernel.sum(1).numpy()
    return out


def linear_probe(train: tuple[np.ndarray, np.ndarray], val: tuple[np.ndarray, np.ndarray], test_x: np.ndarray
                 ) -> tuple[np.ndarray, float, list[float]]:
    """Test predictions of the logistic-regression probe whose C scored best on val; (preds, C, unconverged Cs)."""
    from sklearn.exceptions import ConvergenceWarning  # lazy: slow import, only probes need it
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    scaler = StandardScaler().fit(train[0])
    ztr, zval, zte = (scaler.transform(a) for a in (train[0], val[0], test_x))
    best: tuple[float, float, Any] | None = None
    unconverged = []
    for c in sorted(PROBE_C):  # ascending, and only a strictly better val accuracy replaces: ties keep the smaller C
        clf = LogisticRegression(C=c, max_iter=PROBE_MAX_ITER)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", ConvergenceWarning)
            clf.fit(ztr, train[1])
        if any(issubclass(w.category, ConvergenceWarning) for w in caught):
            unconverged.append(c)
        acc = float(np.mean(clf.predict(zval) == val[1]))
        if best is None or acc > best[0]:
            best = (acc, c, clf)
    assert best is not None
    return best[2].predict(zte), best[1], unconverged


def probe_evidence(ctx: RunContext, encoder: nn.Module, prefix: str = ""
                   ) -> tuple[dict[str, np.ndarray], dict[str, Any], Tensor]:
    """Probe predictions on ``test`` (linear and kNN) as compact arrays, facts about the probe fit, and the test
    features."""
    task = ctx.task
    feats = {s: embed(ctx, encoder, task.splits[s].indices) for s in ("train", "val", "test")}
    xs = {s: f.numpy() for s, f in feats.items()}
    ys = {s: task.splits[s].y.numpy() for s in ("train", "val", "test")}
    probe_pred, c, unconverged = linear_probe((xs["train"], ys["train"]), (xs["val"], ys["val"]), xs["test"])
    knn_pred = knn_predict(xs["train"], ys["train"], xs["test"], k=min(KNN_K, len(ys["train"])))
    arrays = {f"{prefix}probe_pred": probe_pred.astype(np.int16), f"{prefix}knn_pred": knn_pred.astype(np.int16),
              f"{prefix}probe_C": np.array([c])}
    return arrays, {f"{prefix}probe_C": c, f"{prefix}probe_unconverged_C": unconverged}, feats["test"]


def pretrain_metrics(arrays: dict[str, np.ndarray]) -> dict[str, float]:
    """The seed's metrics from its evidence arrays (the definitions are in the module docstring)."""
    y = arrays["y_test"]
    out = {"probe_acc": float(np.mean(arrays["probe_pred"] == y)), "knn_acc": float(np.mean(arrays["knn_pred"] == y)),
           "alignment": float(np.mean(arrays["align_sq_dist"]))}
    rows = arrays["unif_row_sums"]
    out["uniformity"] = float(np.log(rows.sum() / (len(rows) * (len(rows) - 1))))
    if arrays["epoch_seconds"].size:
        out["epoch_time_s"] = float(np.mean(arrays["epoch_seconds"]))
    out["peak_memory_mb"] = float(arrays["peak_memory_bytes"][0]) / 2**20
    if "teacher_probe_pred" in arrays:
        out["teacher_probe_acc"] = float(np.mean(arrays["teacher_probe_pred"] == y))
        out["teacher_knn_acc"] = float(np.mean(arrays["teacher_knn_pred"] == y))
        out["gain_probe_acc"] = out["probe_acc"] - out["teacher_probe_acc"]
        out["gain_knn_acc"] = out["knn_acc"] - out["teacher_knn_acc"]
    return out


# -- the protocol ----------------------------------------------------------------------------------


def encoder_code(method_cls: type) -> str:
    """The digest of the code that pretrains an encoder: the method's closure and this protocol's."""
    return code_digest(method_cls, sys.modules[__name__])


# what trained a stored encoder, all but the code: stable when code only moves, and the same on every machine
IDENTITY = ("method", "hparams", "case", "profile", "seed", "task_fingerprint", "data_fingerprint", "device",
            "precision")


def encoder_identity(facts: dict[str, Any]) -> dict[str, Any]:
    """The :data:`IDENTITY` fields of a stored encoder's sidecar (see :func:`checkpoint_facts`)."""
    return {k: facts.get(k) for k in IDENTITY}


def checkpoint_key(ctx: RunContext, method: Method, spec: dict[str, Any]) -> str:
    task = ctx.task
    precision = {} if ctx.speed.precision == "fp32" else {"precision": ctx.speed.precision}  # a bf16 encoder is another
    return store_key(task=task.fingerprint, data=task.data.fingerprint, method=method.name, hparams=method.hparams,
                     code=encoder_code(type(method)), seed=ctx.seed, encoder=spec,
                     budget=ctx.budget.fingerprint_dict(),
                     device=ctx.device.type, **precision)


def checkpoint_facts(ctx: RunContext, method: Method, spec: dict[str, Any], encoder: nn.Module) -> dict[str, Any]:
    """What ``cached_encoders`` needs to rebuild and probe a stored encoder (kept in its JSON sidecar)."""
    task = ctx.task
    return {"suite": task.suite, "case": task.case, "profile": task.spec.profile, "method": method.name,
            "hparams": method.hparams, "seed": ctx.seed if ctx.index is None else ctx.index, "seed_stream": ctx.seed,
            "encoder": spec, "feature_dim": encoder.feature_dim,
            "dataset": task.info.get("dataset"), "in_chans": int(task.data.x.shape[1]),
            "image_size": list(task.image_size or ()), "normalize": task.normalize,
            "task_fingerprint": task.fingerprint, "data_fingerprint": task.data.fingerprint,
            "device": ctx.device.type, "precision": ctx.speed.precision, "code": encoder_code(type(method)),
            "budget": ctx.budget.fingerprint_dict(), "augment": ctx.describe().get("augment")}


@register_protocol("pretrain")
def run_pretrain(task, method: Method, ctx: RunContext) -> SeedResult:
    if ctx.speed.compile is not None:
        raise UsageError("--compile is not supported by the pretrain protocol (methods build teacher copies of the "
                         "eager encoder, which a compiled forward would not reach); run pretrain cases without "
                         "--compile")
    spec = method.encoder_spec(task.info["encoder"], task.sealed())
    factory = seeded_factory(spec, ctx.seed)
    trained: list[Pretrainer] = []

    def train(encoder: nn.Module) -> dict[str, Any]:
        trainer = Pretrainer.create(ctx, method, encoder)
        trained.append(trainer)
        return {**checkpoint_facts(ctx, method, spec, encoder), **trainer.run()}

    encoder, facts = ModelStore(NAMESPACE).get(checkpoint_key(ctx, method, spec), factory, train, ctx.device)

    arrays, probe_info, test_features = probe_evidence(ctx, encoder)
    arrays["y_test"] = task.splits["test"].y.numpy().astype(np.int16)
    arrays["align_sq_dist"] = alignment_terms(*embed_view_pairs(ctx, encoder, task.splits["test"].indices))
    arrays["unif_row_sums"] = uniformity_terms(test_features)
    arrays["epoch_seconds"] = np.asarray(facts["epoch_seconds"], dtype=np.float64)
    arrays["peak_memory_bytes"] = np.array([facts["peak_memory_bytes"]], dtype=np.int64)
    if method.frozen_initial_teacher:
        teacher_arrays, teacher_info, _ = probe_evidence(ctx, factory().to(ctx.device), prefix="teacher_")
        arrays.update(teacher_arrays)
        probe_info.update(teacher_info)
    metrics = task.metrics_fn(arrays)

    trainer = trained[0] if trained else Pretrainer.create(ctx, method, encoder)  # fresh heads for the benchmark
    timing = ctx.timer.summary() if trained else StepStats(**facts["step_stats"])
    info = {"model": model_info(encoder), "encoder": spec, "feature_dim": encoder.feature_dim,
            "encoder_reused": bool(facts.get("reused")), "pretrain_steps": facts["steps"],
            "epoch_loss": facts["epoch_loss"], "memory_kind": facts["memory_kind"], **probe_info}
    if "online_knn" in facts:  # from the sidecar: a reused encoder reports the curve measured when it trained
        info.update(online_knn=facts["online_knn"], online_knn_seconds=facts["online_knn_seconds"])
    return SeedResult(metrics, timing, arrays=arrays, info=info, train_step=trainer.benchmark_step())


__all__ = [
    "IDENTITY", "NAMESPACE", "PROBE_C", "Pretrainer", "alignment_terms", "build_encoder", "checkpoint_key",
    "conv_encoder", "draw_views", "ema_momentum", "ema_update", "embed", "encoder_code", "encoder_identity",
    "linear_probe", "mlp_head", "online_knn_steps", "pretrain_metrics",
    "run_pretrain", "seeded_factory", "timm_encoder", "uniformity_terms", "weighted_knn_accuracy", "whole_batches",
]
