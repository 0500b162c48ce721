"""The ImageFolder suite's report (:mod:`harness.suites.imagefolder` defines its cases): the leaderboard's tables,
and what the records say about the user's data (:func:`data_tables`): per case its classes with their counts per
split, the chance and majority baselines, each method's per-class test accuracy, and its confusion matrix on the
test split, from the records' evidence."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from harness.errors import RecordError
from harness.records import load_evidence

DESCRIPTION = "your own ImageFolder tree (--dataset=imagefolder:PATH): stratified 70/15/15 split, fixed seed"
LEADERBOARD_COLUMNS = ["test_acc", "test_macro_f1", "val_acc"]
PRED, TRUE = "val:test.pred", "test.y"  # the selected checkpoint's test predictions and the labels (evidence)
MAX_MATRIX = 25  # classes up to which the full confusion matrix is shown; above it, the most frequent confusions
TOP_CONFUSIONS = 20


def _predictions(record: dict) -> list[tuple[np.ndarray, np.ndarray]]:
    """(labels, predictions) on the test split for every seed whose evidence is readable; [] otherwise."""
    path = record.get("_path")
    if not path or not record.get("evidence"):
        return []
    try:
        arrays = load_evidence(Path(path), record)
    except RecordError:
        return []
    return [(a[TRUE].astype(int), a[PRED].astype(int)) for _, a in sorted(arrays.items()) if TRUE in a and PRED in a]


def baselines(counts: dict[str, list[int]]) -> tuple[float, float, int]:
    """(chance 1/K, majority accuracy, majority class): the majority baseline always predicts the train split's
    most frequent class and is scored on the test split."""
    train, test = counts["train"], counts["test"]
    major = int(np.argmax(train))
    return 1.0 / len(train), test[major] / max(1, sum(test)), major


def _data_line(rec: dict) -> str:
    info = rec.get("task_info", {})
    counts, classes = info["split_counts"], info["classes"]
    chance, majority, major = baselines(counts)
    data = (rec.get("run") or {}).get("data", {})
    folder = data.get("user_folder", {}).get("source") or info.get("path", "")
    total = sum(sum(v) for v in counts.values())
    extra = []
    if data.get("user_folder", {}).get("excluded"):
        extra.append(f"left out: {', '.join(data['user_folder']['excluded'])}")
    if data.get("skipped_count"):
        extra.append(f"{data['skipped_count']} undecodable file(s) skipped")
    return (f"{folder}: {total} images, {len(classes)} classes" + (f" ({'; '.join(extra)})" if extra else "")
            + f". Chance {chance:.3f}; majority baseline {majority:.3f} (always '{classes[major]}', the train "
            "split's most frequent class)")


def data_tables(records: list[dict]) -> list[tuple]:
    """Per case: a table of classes (counts per split, each method's per-class test accuracy, mean over seeds)
    with a note giving the chance and majority baselines; then each method's test confusion matrix (summed over
    seeds). Each item is (title, DataFrame) or (title, DataFrame, note)."""
    by_case: dict[str, list[dict]] = {}
    for rec in records:
        if "split_counts" in rec.get("task_info", {}):
            by_case.setdefault(rec["case"], []).append(rec)
    out: list[tuple] = []
    for case, recs in sorted(by_case.items()):
        recs = sorted(recs, key=lambda r: (r["method"], str(r["hparam_overrides"])))
        info = recs[0]["task_info"]
        classes, counts = info["classes"], info["split_counts"]
        table = pd.DataFrame({"class": classes, **{k: counts[k] for k in ("train", "val", "test") if k in counts}})
        matrices = []
        for rec in recs:
            label = rec["method"] + (f" {rec['hparam_overrides']}" if rec["hparam_overrides"] else "")
            pairs = _predictions(rec)
            if not pairs:
                table[f"{label}: test acc"] = "n/a"
                continue
            k = len(classes)
            matrix = np.zeros((k, k), dtype=int)
            per_seed = []
            for y, p in pairs:
                np.add.at(matrix, (y, p), 1)
                per_seed.append([float((p[y == c] == c).mean()) if (y == c).any() else np.nan for c in range(k)])
            table[f"{label}: test acc"] = [f"{v:.3f}" if np.isfinite(v) else "n/a"
                                           for v in np.nanmean(np.asarray(per_seed), axis=0)]
            matrices.append((label, len(pairs), matrix))
        mean = {f"{r['method']}: test_acc": r["metrics"].get("test_acc", {}).get("mean") for r in recs}
        accs = ", ".join(f"{k.split(':')[0]} {v:.3f}" for k, v in mean.items() if v is not None)
        out.append((f"`{case}`: the data", table, _data_line(recs[0])
                    + (f"; test accuracy: {accs}" if accs else "")
                    + ". Per class: images per split and each method's test accuracy on the class (recall), mean "
                    "over seeds."))
        for label, n, matrix in matrices:
            out.append(_confusion(case, label, n, classes, matrix))
    return out


def _confusion(case: str, label: str, seeds: int, classes: list[str], matrix: np.ndarray) -> tuple[str, pd.DataFrame]:
    where = f"`{case}`, {label}: test split, counts summed over {seeds} seed{'s' * (seeds != 1)}"
    if len(classes) <= MAX_MATRIX:
        frame = pd.DataFrame(matrix, columns=classes)
        frame.insert(0, "true class", classes)
        return f"{where}: confusion matrix (rows: true class, columns: predicted class)", frame
    off = [(int(matrix[i, j]), classes[i], classes[j]) for i in range(len(classes)) for j in range(len(classes))
           if i != j and matrix[i, j]]
    off.sort(key=lambda t: (-t[0], t[1], t[2]))
    frame = pd.DataFrame([{"true": t, "predicted": p, "count": c} for c, t, p in off[:TOP_CONFUSIONS]])
    return f"{where}: the {min(TOP_CONFUSIONS, len(off))} most frequent confusions of {len(classes)} classes", frame
