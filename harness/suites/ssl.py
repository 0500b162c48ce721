"""Self-supervised suite: pretraining methods scored by probes on frozen features (the ``pretrain`` protocol).

Cases (labels never reach the pretraining; images as stored, uint8):

* ``cifar10``: pretrain on CIFAR-10's train images (shared copy: 1,000 per class), probe on them, score on the
  test images.
* ``mnist5k``: the embedded MNIST-5k digits (needs no data folder, so the default run covers SSL): a stratified
  80/20 train/test split.
* ``pacs``: PACS, all four domains pooled, stratified 80/20 by class and domain.
* ``eurosat``: EuroSAT RGB (shared copy: 300 per class), stratified 80/20.
* ``pacs-photo-to-sketch`` (transfer): pretrain on every photo, probe on sketches (stratified 60/20/20
  train/val/test within sketch).
* ``rsscn7-fine-to-coarse`` (transfer): pretrain on RSSCN7's two finest ground scales, probe on the two coarsest
  (60/20/20 within them).

In the in-domain cases the encoder pretrains on the labelled train split's images; ``val`` is carved from that
split (20%, stratified) and only chooses the linear probe's C. Splits are fixed per case by ``data_seed``; seeds
vary initialisation, batch order, views and the method's own randomness. The profile caps every split (a seeded
prefix of a stratified order) and fixes the encoder and budget:

* ``smoke``: conv encoder 8-16-32 (BatchNorm), 1 epoch, 256 pretraining images, seconds per case.
* ``standard``: conv encoder 16-32-64-128 (strides 1-2-2-2, 128-d features) at 32 px; 1,280 pretraining
  images; probes on 1,000 train / 250 val / 1,000 test images; 4 epochs of batch 128 (40 steps), AdamW lr 2e-3,
  weight decay 1e-4, cosine with a half-epoch warm-up. Sized for the whole suite (7 methods and random-init,
  6 cases, 3 seeds) to take about 45 CPU-minutes, half an hour on two quiet cores; scatsimclr's kymatio scattering
  is over half of it. Absolute accuracies are far below published ones.
* ``full``: timm resnet18 from scratch, all images, native sizes up to 96 px, 200 epochs of batch 256 (GPU).

Online kNN (``online_knn`` points per profile: smoke 4, every quarter of its one epoch; standard 4, every epoch;
full 20, every 10 epochs; plus the encoder before training): a weighted kNN fitted on ``train`` and scored on ``val``
during pretraining, recorded as a curve (``run.online_knn``), never on ``test`` (see
:mod:`harness.protocols.pretrain`). Every case has a ``val`` split, so none is carved for it.

Metrics and evaluation: see :mod:`harness.protocols.pretrain` (linear probe with C chosen on val, kNN k = 20,
alignment, uniformity, time per epoch, peak memory; the last epoch is evaluated, nothing selects on test). The
primary metric is ``probe_acc``; the leaderboard compares each method with ``random-init`` (the untrained encoder of
the same seed) by a paired test. Pretrained encoders are cached (see :func:`cached_encoders`).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from harness import data as hdata
from harness.core.registry import get_method_class
from harness.core.task import PROFILES, Budget, CaseSpec, Task
from harness.data.dataset import ArrayDataset, to_float
from harness.errors import DataError, HarnessError
from harness.protocols.pretrain import NAMESPACE, build_encoder, encoder_code, encoder_identity, pretrain_metrics
from harness.protocols.store import ModelStore

NAME = "ssl"
PROTOCOL = "pretrain"
BASELINE = "random-init"
PRIMARY = "probe_acc"
LOWER_IS_BETTER = ["alignment", "uniformity", "epoch_time_s", "peak_memory_mb"]
DATASETS = ["cifar10", "mnist5k", "pacs", "eurosat", "rsscn7"]
VERSION = "1"


def _conv(widths: list[int], strides: list[int]) -> dict[str, Any]:
    return {"builder": "harness.protocols.pretrain:conv_encoder", "kwargs": {"widths": widths, "strides": strides}}


def _budget(epochs: int, batch_size: int, rounds: int) -> Budget:
    return Budget(epochs=epochs, batch_size=batch_size, lr=2e-3, weight_decay=1e-4, optimizer="adamw",
                  schedule="cosine", warmup_epochs=min(0.5, epochs / 10), augment="ssl", selection="last",
                  benchmark_rounds=rounds)


PROFILE: dict[str, dict[str, Any]] = {
    "smoke": dict(encoder=_conv([8, 16, 32], [1, 2, 2]), caps=dict(pretrain=256, train=256, val=64, test=256),
                  size=32, budget=_budget(1, 64, 3), online_knn=4),
    "standard": dict(encoder=_conv([16, 32, 64, 128], [1, 2, 2, 2]),
                     caps=dict(pretrain=1280, train=1000, val=250, test=1000), size=32, budget=_budget(4, 128, 5),
                     online_knn=4),
    "full": dict(encoder={"builder": "harness.protocols.pretrain:timm_encoder", "kwargs": {"name": "resnet18"}},
                 caps=dict(pretrain=None, train=None, val=None, test=None), size=96, budget=_budget(200, 256, 20),
                 online_knn=20),
}

# case -> (dataset, how its splits are drawn, what the pretraining sees, what the probes see)
CASES = {
    "cifar10": dict(dataset="cifar10", split="given"),
    "mnist5k": dict(dataset="mnist5k", split="stratified"),
    "pacs": dict(dataset="pacs", split="stratified"),
    "eurosat": dict(dataset="eurosat", split="stratified"),
    "pacs-photo-to-sketch": dict(dataset="pacs", split="transfer", pretrain=["photo"], probe=["sketch"]),
    "rsscn7-fine-to-coarse": dict(dataset="rsscn7", split="transfer", pretrain=["scale1", "scale2"],
                                  probe=["scale3", "scale4"]),
}
NATIVE_SIZE = {"cifar10": None, "mnist5k": None, "pacs": 96, "eurosat": 64, "rsscn7": 128}


def case_specs(profile: str) -> list[CaseSpec]:
    cfg = PROFILE[profile]
    specs = []
    for case, how in CASES.items():
        size = NATIVE_SIZE[how["dataset"]] and min(cfg["size"], NATIVE_SIZE[how["dataset"]])
        params = dict(how, size=size, data_seed=0, caps=cfg["caps"], encoder=cfg["encoder"],
                      online_knn=cfg["online_knn"])
        specs.append(CaseSpec(NAME, case, profile, params, cfg["budget"], build, VERSION, PROTOCOL))
    return specs


@lru_cache(maxsize=4)
def _load(dataset: str, size: int | None) -> ArrayDataset:
    return hdata.load(dataset, size=size) if size else hdata.load(dataset)


def stratified_parts(y: torch.Tensor, fractions: Sequence[float], gen: torch.Generator) -> list[torch.Tensor]:
    """Positions of ``y`` cut into parts of the given fractions within every class; each part in shuffled order,
    so that a prefix of it is close to stratified."""
    parts: list[list[torch.Tensor]] = [[] for _ in fractions]
    bounds = np.cumsum([0.0, *fractions])
    for c in torch.unique(y):
        idx = torch.nonzero(y == c).flatten()
        idx = idx[torch.randperm(len(idx), generator=gen)]
        cuts = [int(round(b * len(idx))) for b in bounds]
        for k in range(len(fractions)):
            parts[k].append(idx[cuts[k]:cuts[k + 1]])
    out = []
    for chunks in parts:
        part = torch.cat(chunks)
        out.append(part[torch.randperm(len(part), generator=gen)])
    return out


def _domains(ds: ArrayDataset, names: list[str]) -> torch.Tensor:
    missing = [n for n in names if n not in (ds.domain_names or [])]
    if missing:
        raise DataError(f"{ds.name}: domain(s) {missing} not among {ds.domain_names}")
    ids = torch.tensor([ds.domain_names.index(n) for n in names])
    return torch.nonzero(torch.isin(ds.domain, ids)).flatten()


def split_indices(ds: ArrayDataset, p: dict[str, Any]) -> dict[str, torch.Tensor]:
    """The case's pretrain/train/val/test indices into ``ds`` before capping (see module docstring)."""
    gen = torch.Generator().manual_seed(p["data_seed"])
    # stratify by class, and by domain too where there are domains (PACS pooled)
    strata = ds.y if ds.domain is None else ds.y * len(ds.domain_names) + ds.domain
    if p["split"] == "transfer":
        source, target = _domains(ds, p["pretrain"]), _domains(ds, p["probe"])
        train, val, test = (target[i] for i in stratified_parts(strata[target], (0.6, 0.2, 0.2), gen))
        return {"pretrain": source[torch.randperm(len(source), generator=gen)], "train": train, "val": val,
                "test": test}
    if p["split"] == "given":
        codes = torch.as_tensor(ds.meta["split"])
        pool = torch.nonzero(codes == ds.meta["split_names"].index("train")).flatten()
        test = torch.nonzero(codes == ds.meta["split_names"].index("test")).flatten()
        test = test[torch.randperm(len(test), generator=gen)]
    else:
        pool, test = (torch.arange(len(ds))[i] for i in stratified_parts(strata, (0.8, 0.2), gen))
    train, val = (pool[i] for i in stratified_parts(strata[pool], (0.8, 0.2), gen))
    return {"pretrain": pool[torch.randperm(len(pool), generator=gen)], "train": train, "val": val, "test": test}


def build(spec: CaseSpec) -> Task:
    p = spec.params
    ds = _load(p["dataset"], p["size"])
    idx = {k: v if p["caps"][k] is None else v[:p["caps"][k]] for k, v in split_indices(ds, p).items()}
    xs = to_float(ds.x[idx["pretrain"]])
    normalize = (tuple(xs.mean((0, 2, 3)).tolist()), tuple(xs.std((0, 2, 3)).clamp_min(1e-6).tolist()))
    encoder = {**p["encoder"], "kwargs": {**p["encoder"]["kwargs"], "in_chans": int(ds.x.shape[1])}}
    sizes = {k: len(v) for k, v in idx.items()}
    what = (f"pretrain on {', '.join(p['pretrain'])}, probe on {', '.join(p['probe'])}" if p["split"] == "transfer"
            else "pretrain on the labelled train split's images, probe on the same split")
    return Task(
        spec=spec, data=ds, splits={k: ds.subset(v) for k, v in idx.items()}, num_classes=ds.num_classes,
        model_factory=lambda: build_encoder(encoder), metrics_fn=pretrain_metrics, primary_metric=PRIMARY,
        selection_split="val",
        selection_rule="last epoch, no checkpoint selection; the linear probe's C chosen on val (from the labelled "
                       "train split)",
        normalize=normalize, lower_is_better=frozenset(LOWER_IS_BETTER), recompute_fn=pretrain_metrics,
        info={"dataset": p["dataset"], "num_classes": ds.num_classes, "encoder": encoder, "split_sizes": sizes,
              "online_knn": p.get("online_knn", 0)},
        notes=[f"{what}; split sizes {sizes}; normalised with the pretrain split's channel statistics"],
    )


# -- cached encoders (for other suites) ----------------------------------------------------------------


@dataclass(frozen=True)
class CachedEncoder:
    """An encoder pretrained by this suite and kept in the model store."""

    name: str  # "<method>/<case>/<profile>/seed<k>"
    path: Path  # safetensors weights
    info: dict[str, Any]  # the JSON sidecar (method, hparams, case, profile, seed, dataset, encoder spec, ...)

    @property
    def normalize(self) -> tuple[tuple[float, ...], tuple[float, ...]]:
        """Per-channel (mean, std) the encoder's input was normalised with, for images in [0, 1]."""
        mean, std = self.info["normalize"]
        return tuple(mean), tuple(std)

    @property
    def image_size(self) -> tuple[int, int]:
        return tuple(self.info["image_size"])

    @property
    def identity(self) -> dict[str, Any]:
        """What trained it, all but the code: the same on every machine and after a pure move of code."""
        return encoder_identity(self.info)

    @property
    def feature_dim(self) -> int:
        return int(self.info["feature_dim"])

    def load(self, device: str | torch.device = "cpu") -> nn.Module:
        """The encoder with its pretrained weights, in eval mode: ``(N, C, H, W)`` normalised input -> ``(N, D)``."""
        from safetensors.torch import load_file

        encoder = build_encoder(self.info["encoder"])
        encoder.load_state_dict(load_file(str(self.path)))
        return encoder.to(device).eval()


def _current_code(method: Any) -> str | None:
    """The digest of the code that would pretrain ``method`` now; None for a method not registered here."""
    try:
        return encoder_code(get_method_class(str(method)))
    except HarnessError:
        return None


def cached_encoders(dataset: str | None = None, *, method: str | None = None, case: str | None = None,
                    profile: str | None = None, current: bool = True, root: Path | None = None) -> list[CachedEncoder]:
    """Encoders this suite has pretrained and stored, filtered by dataset, method, case and profile.

    With ``current`` (default) only encoders of cases whose fingerprint matches the suite's current definition,
    trained by the current code of their method and protocol (``encoder_code``), are listed; of several stored for
    the same (method, hparams, case, profile, seed), e.g. on two devices, the newest is kept. Sorted by name.
    Nothing is trained here: run the suite to fill the store, e.g.
    ``pytest suites/test_ssl.py --method=simclr --profile=standard -k eurosat``.
    """
    folder = ModelStore(NAMESPACE, root).folder
    fingerprints = {(s.case, s.profile): s.fingerprint for prof in PROFILES for s in case_specs(prof)}
    newest: dict[tuple, tuple[float, CachedEncoder]] = {}
    for meta in sorted(folder.glob("*.json")) if folder.is_dir() else []:
        weights = meta.with_suffix(".safetensors")
        try:
            info = json.loads(meta.read_text())
        except (OSError, json.JSONDecodeError):
            continue
        if not weights.is_file() or info.get("suite") != NAME:
            continue
        if (dataset not in (None, info.get("dataset")) or method not in (None, info.get("method"))
                or case not in (None, info.get("case")) or profile not in (None, info.get("profile"))):
            continue
        if current and (fingerprints.get((info.get("case"), info.get("profile"))) != info.get("task_fingerprint")
                        or info.get("code") != _current_code(info.get("method"))):
            continue
        name = f"{info['method']}/{info['case']}/{info['profile']}/seed{info['seed']}"
        group = (name, json.dumps(info.get("hparams"), sort_keys=True))
        stamp = weights.stat().st_mtime
        if group not in newest or stamp > newest[group][0]:
            newest[group] = (stamp, CachedEncoder(name, weights, info))
    return sorted((enc for _, enc in newest.values()), key=lambda e: (e.name, json.dumps(e.info["hparams"])))
