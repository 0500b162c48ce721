"""The probe protocol: a frozen encoder under a grid of preprocessing policies, scored by probes on its features.

A :class:`ProbeTask` holds one encoder, a pool of labelled images, the rows of the pool the grid is scored on
(``grid_rows``: all, or a per-class subsample, since the grid multiplies the extraction cost while the few-shot
curve needs many images per class but only one grid point) and the grid (:mod:`harness.core.preprocess`: geometry x
normalisation). Nothing is trained but the probes. Per seed:

1. The pool is split per class into train and test (``train_fraction`` to train) with the seed's generator,
   stratified by class and by membership of the grid rows; the grid uses the split restricted to its rows.
2. For every grid point the features of the grid rows (of the whole pool for the reference point) are extracted
   once: :class:`FeatureCache` keys them by the encoder's weights digest, the preprocessing (with its
   statistics), the pool's content hash and the rows, stores them under ``$HARNESS_CACHE/features`` and hands
   them to every probe and every later seed (and run). Before a batch reaches the encoder, the band count is
   checked against the model and the transformed input must be finite; per-band mean and std of the transformed
   images are kept, and a band with no spread is an error.
3. Each grid point is scored with kNN (k = 5 and 20: cosine on train-z-scored features) and a linear probe
   (logistic regression on standardised features, C = 1), see :mod:`harness.metrics.probes`.
4. Few-shot, at the reference grid point on the whole pool: for each number of labelled samples per class,
   ``draws`` random draws from the train split (seeded by seed, shots and draw), each fitting logistic regression
   and Gaussian naive Bayes on the same features; a shot count above the smallest class's train count is skipped,
   and ``all`` uses the whole train split once (both fits are deterministic).

Every prediction goes into ``SeedResult.arrays`` (int16 labels), and :func:`probe_metrics` computes every metric
from those arrays alone, so the task's ``recompute_fn`` reproduces a seed's metrics exactly. Metric names:
``<probe>@<geometry>/<norm>`` per grid point; ``ref:<probe>`` at the reference point; ``swing:<probe>`` = max -
min over the grid (lower is better: the encoder is less sensitive to preprocessing); ``resize_gain:<probe>`` =
reference geometry minus native at the reference normalisation; ``fewshot_lr@<shots>`` and ``fewshot_nb@<shots>``
(mean over draws).

The method takes no part beyond being run: encoders come from the case, so the protocol has no method hook and
one method (``frozen``) runs it.
"""

from __future__ import annotations

import hashlib
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from harness.core.digest import code_digest
from harness.core.engine import autocast
from harness.core.models import check_in_chans
from harness.core.preprocess import Preprocess
from harness.core.task import Task
from harness.data.dataset import tensor_digest
from harness.data.paths import cache_root
from harness.errors import DataError, UsageError
from harness.metrics.probes import knn_predict, linear_probe_predict, naive_bayes_predict
from harness.protocols import register_protocol
from harness.protocols.kit import RunContext, SeedResult
from harness.protocols.store import get_or_compute, store_key

PROBES = ("knn5", "knn20", "linear")
FEWSHOT = ("lr", "nb")
# On a CPU, big batches of big images are slower, not faster: EfficientNet-Lite0 at 224 px spent 62 ms of CPU per
# image at batch 64 (39 ms of it in the kernel, faulting in fresh activation pages) and 36 ms at batch 8. So a
# CPU batch holds about this many input pixels (batch 8 at 224 px, 64 at 64 px).
_CPU_BATCH_PIXELS = 8 * 224 * 224
_CPU_MAX_BATCH = 64


@dataclass
class Encoder:
    """A frozen feature extractor: ``build(in_chans)`` returns ``(module, info)``, the module mapping
    ``N x C x H x W`` to ``N x D`` and ``info`` a JSON-able description for the record (weights identity, the
    normalisation the weights expect)."""

    name: str
    build: Callable[[int], tuple[nn.Module, dict[str, Any]]]
    description: str


@dataclass
class ProbeTask(Task):
    """A :class:`~harness.core.task.Task` for the probe protocol (see module docstring)."""

    encoder: Encoder | None = None
    grid: list[Preprocess] = field(default_factory=list)
    grid_rows: Tensor | None = None  # pool positions the grid is scored on (sorted); None = every row
    reference: str = ""  # the grid point's name for few-shot and ref:* metrics
    shots: tuple[int | str, ...] = (1, 2, 5, 10, 20, 50, "all")
    draws: int = 5
    train_fraction: float = 0.5
    band_names: list[str] | None = None
    memo: dict[str, Any] = field(default_factory=dict, repr=False)  # the built encoder and its digest, per task


def weights_digest(model: nn.Module) -> str:
    """sha256 (24 hex) over the state dict: names, dtypes, shapes and bytes, in key order."""
    h = hashlib.sha256()
    for name, t in sorted(model.state_dict().items()):
        h.update(f"{name}{t.dtype}{tuple(t.shape)}".encode())
        flat = t.detach().cpu().contiguous().reshape(-1)  # 1-d: a 0-d buffer cannot be viewed as bytes
        h.update(flat.view(torch.uint8).numpy() if flat.numel() else b"")
    return h.hexdigest()[:24]


class FeatureCache:
    """Features computed once per key, stored as safetensors under ``$HARNESS_CACHE/features``.

    Written to a temp file and renamed, under a file lock, so parallel workers never extract the same features
    twice. ``extractions`` counts computations per key, class-wide, so tests can check reuse.
    """

    extractions: Counter[str] = Counter()

    def __init__(self, root: Path | None = None) -> None:
        self.folder = (root or cache_root()) / "features"

    def get(self, key: str, compute: Callable[[], tuple[Tensor, dict[str, Any]]]) -> tuple[Tensor, dict[str, Any]]:
        """``(features, meta)`` for ``key``; ``compute()`` runs only when no readable entry exists."""
        def extract() -> tuple[dict[str, Tensor], dict[str, Any]]:
            features, meta = compute()
            type(self).extractions[key] += 1
            return {"features": features}, meta

        tensors, meta, reused = get_or_compute(self.folder / f"{key}.safetensors", extract)
        return tensors["features"], {**meta, "reused": reused}


def stratified_split(y: Tensor, train_fraction: float, seed: int) -> tuple[Tensor, Tensor]:
    """Per stratum (class), a seeded permutation: the first ``round(f * n)`` (at least 1, at most n - 1) train, the
    rest test."""
    g = torch.Generator().manual_seed(seed)
    train, test = [], []
    for c in torch.unique(y).tolist():
        idx = torch.nonzero(y == c).flatten()
        if len(idx) < 2:
            raise DataError(f"stratum {c} has {len(idx)} image(s) in the probe pool; a train/test split needs 2")
        idx = idx[torch.randperm(len(idx), generator=g)]
        n_train = min(len(idx) - 1, max(1, round(train_fraction * len(idx))))
        train.append(idx[:n_train])
        test.append(idx[n_train:])
    return torch.cat(train).sort().values, torch.cat(test).sort().values


def _encoder(task: ProbeTask, device: torch.device) -> tuple[nn.Module, str]:
    """The task's encoder on ``device`` (built once per task) and its weights digest; bands checked first."""
    channels = int(task.data.x.shape[1])
    if "model" not in task.memo:
        task.memo["model"] = task.encoder.build(channels)[0]
    model = task.memo["model"].eval()
    check_in_chans(model, channels, task.data.name)  # a clear DataError before any forward
    if "digest" not in task.memo:
        for p in model.parameters():
            p.requires_grad_(False)
        task.memo["digest"] = weights_digest(model)
    return model.to(device), task.memo["digest"]


def band_check(total: Tensor, sq: Tensor, count: int, prep: Preprocess, names: Sequence[str] | None,
               dataset: str) -> dict[str, list[float]]:
    """Per-band mean and std of the transformed pool; a band with no spread is a :class:`DataError`."""
    mean = total / count
    std = (sq / count - mean * mean).clamp_min(0).sqrt()
    dead = [f"{names[c] if names else f'channel {c}'} (all {float(mean[c]):.4g})" for c in range(len(std))
            if not float(std[c]) > 1e-8]
    if dead:
        raise DataError(f"{dataset}: band(s) {', '.join(dead)} have no spread after preprocessing {prep.name}; "
                        "drop them or check the data")
    return {"mean": [round(float(v), 6) for v in mean], "std": [round(float(v), 6) for v in std]}


def extract(ctx: RunContext, model: nn.Module, prep: Preprocess, rows: Tensor, timed: bool = False
            ) -> tuple[Tensor, dict[str, Any]]:
    """Features of the pool's ``rows`` under ``prep`` (in that order), and the transformed input's per-band stats."""
    task: ProbeTask = ctx.task
    indices = rows
    batch = ctx.eval_batch
    if ctx.device.type == "cpu":
        h, w = prep.output_size(tuple(task.data.x.shape[-2:]))
        batch = max(1, min(batch, _CPU_MAX_BATCH, _CPU_BATCH_PIXELS // (h * w)))
    chunks = [indices[s:s + batch] for s in range(0, len(indices), batch)]
    feats = []
    channels = int(task.data.x.shape[1])
    total = torch.zeros(channels, dtype=torch.float64)
    sq = torch.zeros_like(total)
    count = 0
    t0 = time.perf_counter()
    with torch.inference_mode():
        for raw in ctx.source.raw_batches(chunks):
            x = prep(raw.x)
            if not torch.isfinite(x).all():
                raise DataError(f"{task.data.name}: preprocessing {prep.name} produced NaN or inf values")
            flat = x.transpose(0, 1).reshape(channels, -1).double()
            total += flat.sum(1).cpu()
            sq += (flat * flat).sum(1).cpu()
            count += flat.shape[1]
            if timed:
                ctx.timer.start()
            with autocast(ctx.device, ctx.speed.precision):
                f = ctx.method.embed(model, x)
            if timed:
                ctx.timer.stop(len(x))
            feats.append(f.float().flatten(1).cpu())
    stats = band_check(total, sq, count, prep, task.band_names, task.data.name)
    return torch.cat(feats), {"band_stats": stats, "seconds": time.perf_counter() - t0, "images": len(indices)}


def _labels(y: np.ndarray) -> np.ndarray:
    return y.astype(np.int16)


def draw_shots(y: np.ndarray, shots: int, seed: int) -> np.ndarray:
    """``shots`` positions per class from ``y`` (labels of the train split), without replacement."""
    rng = np.random.default_rng(seed)
    return np.sort(np.concatenate([rng.choice(np.flatnonzero(y == c), shots, replace=False) for c in np.unique(y)]))


def fewshot(train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray, shots: Sequence[int | str], draws: int,
            seed: int) -> tuple[dict[str, np.ndarray], list[str]]:
    """Logistic-regression and naive-Bayes predictions per shot count (``draws x n_test`` each) and the skipped
    counts (more shots than the smallest class has in train)."""
    smallest = int(np.bincount(train_y).min()) if len(train_y) else 0
    out, skipped = {}, []
    for s in shots:
        if s != "all" and int(s) > smallest:
            skipped.append(str(s))
            continue
        picks = [np.arange(len(train_y))] if s == "all" else \
            [draw_shots(train_y, int(s), seed * 1_000_003 + int(s) * 1009 + d) for d in range(draws)]
        lr, nb = [], []
        for p in picks:
            xs, ys = train_x[p], train_y[p]
            lr.append(linear_probe_predict(xs, ys, test_x))
            nb.append(naive_bayes_predict(xs, ys, test_x))
        out[f"fewshot:lr:{s}"] = _labels(np.stack(lr))
        out[f"fewshot:nb:{s}"] = _labels(np.stack(nb))
    return out, skipped


def probe_predictions(train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray) -> dict[str, np.ndarray]:
    return {
        "knn5": knn_predict(train_x, train_y, test_x, k=5),
        "knn20": knn_predict(train_x, train_y, test_x, k=min(20, len(train_y))),
        "linear": linear_probe_predict(train_x, train_y, test_x),
    }


def probe_metrics(arrays: dict[str, np.ndarray], reference: str) -> dict[str, float]:
    """Every metric of one seed from its arrays alone (names in the module docstring)."""
    y, few_y = arrays["y"], arrays.get("fewshot_y")
    out: dict[str, float] = {}
    per_probe: dict[str, dict[str, float]] = {p: {} for p in PROBES}
    for key, pred in arrays.items():
        kind, *rest = key.split(":")
        if kind == "pred":
            geometry, norm, probe = rest
            acc = float(np.mean(pred == y))
            out[f"{probe}@{geometry}/{norm}"] = per_probe[probe][f"{geometry}/{norm}"] = acc
        elif kind == "fewshot":
            clf, shots = rest
            out[f"fewshot_{clf}@{shots}"] = float(np.mean(pred == few_y[None, :]))
    ref_geometry, ref_norm = reference.split("/")
    for probe, accs in per_probe.items():
        if not accs:
            continue
        out[f"swing:{probe}"] = max(accs.values()) - min(accs.values())
        out[f"ref:{probe}"] = accs[reference]
        if ref_geometry != "native" and f"native/{ref_norm}" in accs:
            out[f"resize_gain:{probe}"] = accs[reference] - accs[f"native/{ref_norm}"]
    return out


class _Features:
    """Features of some pool rows, looked up by pool position."""

    def __init__(self, rows: Tensor, features: Tensor, n_pool: int) -> None:
        self.features = features.numpy()
        self.row = np.full(n_pool, -1)
        self.row[rows.numpy()] = np.arange(len(rows))

    def __getitem__(self, positions: Tensor) -> np.ndarray:
        return self.features[self.row[positions.numpy()]]


@register_protocol("probe")
def run_probe(task: ProbeTask, method: Any, ctx: RunContext) -> SeedResult:
    if ctx.speed.compile is not None:
        raise UsageError("--compile has no effect on the probe protocol (it trains nothing and each encoder runs "
                         "a few forward passes); run probe cases without --compile")
    model, digest = _encoder(task, ctx.device)
    cache = FeatureCache()
    code = code_digest(Preprocess, extract)
    n = len(task.data)
    everything = torch.arange(n)
    grid_rows = everything if task.grid_rows is None else task.grid_rows
    on_grid = torch.zeros(n, dtype=torch.bool)
    on_grid[grid_rows] = True
    # strata = (class, on the grid): the grid rows split in the same proportion as the whole pool
    train, test = stratified_split(task.data.y * 2 + on_grid.long(), task.train_fraction, ctx.seed)
    grid_train, grid_test = train[on_grid[train]], test[on_grid[test]]
    y = task.data.y.numpy()
    arrays: dict[str, np.ndarray] = {
        "y": _labels(y[grid_test.numpy()]), "test_index": grid_test.numpy().astype(np.int32),
        "fewshot_y": _labels(y[test.numpy()]), "fewshot_test_index": test.numpy().astype(np.int32),
    }
    t0 = time.perf_counter()
    computed, reused, extract_s, band_stats = 0, 0, 0.0, {}
    features: dict[str, _Features] = {}
    for prep in task.grid:
        rows = everything if prep.name == task.reference else grid_rows
        key = store_key(encoder=digest, preprocess=prep.key(), data=task.data.fingerprint, rows=tensor_digest(rows),
                        code=code, **({} if ctx.speed.precision == "fp32" else {"precision": ctx.speed.precision}))
        feats, meta = cache.get(key, lambda p=prep, r=rows: extract(ctx, model, p, r, timed=p.name == task.reference))
        computed, reused = computed + (not meta["reused"]), reused + meta["reused"]
        extract_s += 0.0 if meta["reused"] else meta["seconds"]
        band_stats[prep.name] = meta["band_stats"]
        features[prep.name] = _Features(rows, feats, n)
    t1 = time.perf_counter()
    for name, f in features.items():
        geometry, norm = name.split("/")
        for probe, pred in probe_predictions(f[grid_train], y[grid_train.numpy()], f[grid_test]).items():
            arrays[f"pred:{geometry}:{norm}:{probe}"] = _labels(pred)
    ref = features[task.reference]
    few, skipped = fewshot(ref[train], y[train.numpy()], ref[test], task.shots, task.draws, ctx.seed)
    arrays.update(few)
    info = {
        "encoder_digest": digest, "features_computed": computed, "features_reused": reused,
        "extract_seconds": round(extract_s, 3), "probe_seconds": round(time.perf_counter() - t1, 3),
        "feature_wall_seconds": round(t1 - t0, 3), "grid_train_test": [len(grid_train), len(grid_test)],
        "fewshot_train_test": [len(train), len(test)], "fewshot_skipped": skipped,
        "band_stats_reference": band_stats[task.reference],
    }
    return SeedResult(probe_metrics(arrays, task.reference), ctx.timer.summary(), arrays=arrays, info=info,
                      train_step=forward_step(ctx, model, next(p for p in task.grid if p.name == task.reference)))


def forward_step(ctx: RunContext, model: nn.Module, prep: Preprocess, n: int = 16) -> Callable[[], None]:
    """One preprocessing + encoder forward on a fixed batch of the pool: what pytest-benchmark times here."""
    raw = next(iter(ctx.source.raw_batches([torch.arange(min(n, len(ctx.task.data)))])))

    def step() -> None:
        with torch.inference_mode(), autocast(ctx.device, ctx.speed.precision):
            ctx.method.embed(model, prep(raw.x))

    return step


__all__ = ["FEWSHOT", "PROBES", "Encoder", "FeatureCache", "ProbeTask", "band_check", "draw_shots", "extract",
           "fewshot", "forward_step", "probe_metrics", "run_probe", "stratified_split", "weights_digest"]
