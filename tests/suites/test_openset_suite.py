"""The open-set suite: its cases and fingerprints, your own folder with a known/unknown split, and a smoke run on
the shared data (strict, as CI runs it)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from PIL import Image

from harness.checks.verify import recompute
from harness.errors import UsageError
from harness.reporting.suites import openset as openset_report
from harness.suites import case_specs, get_suite, imagefolder
from harness.suites import openset as suite
from tests.factories import suite_records


def test_cases_and_fingerprints():
    smoke, standard = suite.case_specs("smoke"), suite.case_specs("standard")
    assert [s.case for s in smoke] == ["mnist-split0", "cifar10-split0", "cub-ssb", "pacs-covariate"]
    names = [s.case for s in standard]
    assert names == [f"mnist-split{i}" for i in range(5)] + [f"cifar10-split{i}" for i in range(5)] + \
        ["cub-ssb", "pacs-covariate"]
    assert len({s.fingerprint for s in standard}) == len(standard)
    for spec in standard[:10]:
        known = spec.params["known"]
        assert len(set(known)) == 6 and set(known) <= set(range(10)), spec.case
    assert all(s.protocol == "openset" for s in standard)
    assert get_suite("openset") is suite and case_specs(suite, "smoke", []) == smoke
    assert {"fpr95", "fpr95_easy", "fpr95_msp", "fpr95_sketch", "fpr95_openood", "fpr95_openood_hard"} <= \
        set(suite.LOWER_IS_BETTER)
    # smoke and standard: the image cases train a linear head on frozen Lite0 features; full fine-tunes (GPU scale)
    for specs in (smoke, standard):
        images = [s for s in specs if s.params["dataset"] in ("cifar10", "cub", "pacs")]
        assert images and all(s.params["features"] == "lite0-frozen" for s in images)
        assert all(s.budget.epochs >= 10 for s in images)  # a head: many cheap epochs
    cifar = [s for s in standard if s.params["dataset"] == "cifar10"]
    assert all(s.params["far"] == list(suite.FAR_OOD) and s.params["far_cap"] for s in cifar)
    assert {"fpr95_far", "fpr95_far_mnist", "fpr95_openood_far_sketch_msp"} <= set(suite.LOWER_IS_BETTER)
    assert set(openset_report.REPRODUCTIONS) <= set(names) and all(openset_report.REPRODUCTIONS.values())
    full = suite.case_specs("full")
    assert not any("features" in s.params or "far" in s.params for s in full)
    assert {s.params["model"] for s in full if s.params["dataset"] == "cifar10"} == {"osr_cnn"}


def make_folder(root: Path, classes: int = 5, per_class: int = 6) -> Path:
    for c in range(classes):
        (root / f"class{c}").mkdir(parents=True)
        for i in range(per_class):
            Image.new("RGB", (10, 10), (40 * c, 10 * i, 100)).save(root / f"class{c}" / f"{i}.png")
    return root


def test_own_folder_known_unknown_split(tmp_path, cache_dir):
    folder = make_folder(tmp_path / "shapes")
    path, rule = suite.parse_dataset(f"imagefolder:{folder}")
    assert path == folder.resolve() and rule == {"count": None, "seed": 0}
    default = suite.folder_spec(path, rule, "smoke")
    name = f"imagefolder-{imagefolder.folder_slug(folder)}"
    assert default.case == name and len(default.params["known"]) == 3  # round(0.6 * 5)
    _, rule = suite.parse_dataset(f"openset:{folder},known=4,seed=2")
    four = suite.folder_spec(path, rule, "smoke")
    assert four.case == f"{name}-known4-seed2" and len(four.params["known"]) == 4
    assert four.fingerprint != default.fingerprint
    listing = tmp_path / "known.txt"
    listing.write_text("class0\nclass3\nclass4\n")
    _, rule = suite.parse_dataset(f"openset:{folder},known={listing}")
    spec = suite.folder_spec(path, rule, "smoke")
    assert spec.params["known"] == ["class0", "class3", "class4"] and spec.case == f"{name}-known-known"
    task = spec.build(spec)
    assert task.num_classes == 3 and task.info["unknown"] == ["class1", "class2"]
    # stratified 70/30 per class: 4 train and 2 test images per class; only known classes train
    assert task.info["counts"] == {"train_known": 12, "test_known": 6, "test_unknown": 4}
    assert (task.data.y[task.splits["train"].indices] < 3).all()
    assert [s.case for s in suite.case_specs("smoke", [f"imagefolder:{folder}"])][-1] == name
    record = {"profile": "smoke", "case": spec.case, "task": {"params": spec.params}}
    assert suite.spec_for_record(record).fingerprint == spec.fingerprint
    assert suite.spec_for_record({"profile": "standard", "case": "cub-ssb"}).case == "cub-ssb"
    for bad, why in ((f"openset:{folder},known=9", "9 known of 5"), (f"openset:{folder},known=2", "at least 3"),
                     (f"openset:{folder},known=nofile.txt", "neither a class count nor a file"),
                     (f"openset:{folder},seed=x", "non-negative integer")):
        with pytest.raises(UsageError, match=why):
            suite.folder_spec(*suite.parse_dataset(bad), "smoke")
    listing.write_text("class0\nclass9\n")
    with pytest.raises(UsageError, match="class9"):
        suite.folder_spec(*suite.parse_dataset(f"openset:{folder},known={listing}"), "smoke")


def test_smoke_run_strict_on_shared_data(run_suite, tmp_path, real_data_root):
    """erm trains each closed-set model, mls reuses it (same key, no retraining); every case has its metrics."""
    out = run_suite(["suites/test_openset.py", "--method=erm,mls", "--strict-data"],
                    {"HARNESS_DATA": str(real_data_root), "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"})
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    recs = {(r["case"], r["method"]): r for r in suite_records(tmp_path)}
    cases = {"mnist-split0", "cifar10-split0", "cub-ssb", "pacs-covariate"}
    assert {c for c, _ in recs} == cases
    for case in cases:
        erm, mls = recs[case, "erm"], recs[case, "mls"]
        assert erm["status"] == mls["status"] == "ok"
        assert mls["run"]["model_key"][0] == erm["run"]["model_key"][0] and mls["run"]["model_reused"][0] is True
        assert mls["metrics"]["auroc"] == erm["metrics"]["auroc"]
        assert {"acc", "auroc", "oscr", "fpr95", "aupr_in", "aupr_out", "fpr95_openood", "aupr_in_openood",
                "aupr_out_openood", "ccr_fpr1e-1", "ccr_fpr1e-4"} <= set(mls["metrics"])
        assert {"auroc_msp", "oscr_msp"} <= set(erm["metrics"])
    cub = recs["cub-ssb", "mls"]
    applied = cub["task_info"]["ssb_applied"]
    assert len(applied["known"]) == 24 and {k: len(v) for k, v in applied["unknown"].items()} == \
        {"Easy": 11, "Medium": 7, "Hard": 8}
    assert cub["task_info"]["classes_present"] == list(range(50))
    assert {f"auroc_{d}" for d in ("easy", "medium", "hard")} <= set(cub["metrics"])
    pacs = recs["pacs-covariate", "mls"]
    assert {"acc_photo", "auroc_art_painting", "auroc_sketch"} <= set(pacs["metrics"])
    assert pacs["task_info"]["unknown"] == ["horse", "house", "person"]
    assert recs["mnist-split0", "erm"]["metrics"]["acc"]["mean"] > 0.8  # the digits train in two epochs
    cifar = recs["cifar10-split0", "mls"]
    assert {f"auroc_far_{f}" for f in suite.FAR_OOD} | {"auroc_far", "ccr_fpr1e-2_far"} <= set(cifar["metrics"])
    assert cifar["task_info"]["far"] == list(suite.FAR_OOD)
    tasks: dict = {}
    for path in sorted((tmp_path / "results").rglob("*.json")):  # each record's evidence recomputes its metrics exactly
        outcome = recompute(path, json.loads(path.read_text()), tasks)
        assert outcome.ok and "recomputed 1 seed(s) exactly" in outcome.message, outcome.message


def test_far_ood_images_in_the_cifar_format(real_data_root):
    for name in suite.FAR_OOD:
        x = suite.far_images(name, 7, 32, 0)
        assert x.shape == (7, 3, 32, 32) and x.dtype == torch.uint8, name
        assert torch.equal(x, suite.far_images(name, 7, 32, 0))  # the draw is seeded
    grey = suite.far_images("mnist", 3, 32, 0)
    assert torch.equal(grey[:, 0], grey[:, 1]) and torch.equal(grey[:, 1], grey[:, 2])


def test_far_groups_share_the_knowns_and_keep_near_apart(real_data_root, monkeypatch):
    monkeypatch.setattr(suite.frozen, "frozen_features", lambda x, kind, size: x.float().flatten(1)[:, :8])
    spec = next(s for s in suite.case_specs("smoke") if s.case == "cifar10-split0")
    task = spec.build(spec)
    groups = task.info["openset"]["groups"]
    assert groups[""] == ["known", "near"] and groups["_far"] == ["known", *suite.FAR_OOD]
    parts = task.data.meta["openset_part"][task.splits["test"].indices]
    y = task.data.y[task.splits["test"].indices]
    assert ((parts == 0) == (y < 6)).all()  # knowns are exactly part "known"
    assert torch.bincount(parts.long()).tolist()[2:] == [spec.params["far_cap"]] * len(suite.FAR_OOD)
    assert set(task.info["unknown"]) >= {f"far:{f}" for f in suite.FAR_OOD}
    # the parameter search's validation: disjoint from train and test, its unknowns from no test source
    rows = {name: set(task.splits[name].indices.tolist()) for name in ("train", "test", "val_known", "val_unknown")}
    assert not (rows["val_known"] | rows["val_unknown"]) & (rows["train"] | rows["test"])
    assert (task.data.y[task.splits["val_known"].indices] < 6).all()
    val_classes = {task.data.classes[c] for c in task.data.y[task.splits["val_unknown"].indices].tolist()}
    assert val_classes == {"val:pacs"} and "val:pacs" not in {task.data.classes[c] for c in y.tolist()}
