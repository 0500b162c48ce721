"""The CUB loader (original layout, partial copies) and the SSB json splits applied to a fixture tree."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from harness import data as hdata
from harness.data.ssb import apply_ssb_split, find_ssb_split, read_ssb_json, split_digest
from harness.errors import DataError, DataMissing
from harness.suites import openset

N_CLASSES, PER_CLASS, ON_DISK = 8, 4, 6  # 8 classes in the metadata, 4 images each, classes 1-6 on disk


def make_cub(root: Path) -> Path:
    """A CUB_200_2011 tree whose metadata lists 8 classes but whose images/ holds only the first 6 (as the shared
    copy holds 50 of 200); images 1-2 of each class are train, 3-4 test; colour encodes the class."""
    cub = root / "CUB_200_2011"
    names = [f"{c:03d}.Bird_{c}" for c in range(1, N_CLASSES + 1)]
    images, labels, split = [], [], []
    for c, name in enumerate(names, 1):
        for j in range(1, PER_CLASS + 1):
            image_id = len(images) + 1
            rel = f"{name}/Bird_{c}_{j:04d}.jpg"
            images.append(f"{image_id} {rel}")
            labels.append(f"{image_id} {c}")
            split.append(f"{image_id} {1 if j <= 2 else 0}")
            if c <= ON_DISK:
                (cub / "images" / name).mkdir(parents=True, exist_ok=True)
                Image.new("RGB", (12, 9), (20 * c, 100, 255 - 20 * c)).save(cub / "images" / rel)
    (cub / "images.txt").write_text("\n".join(images) + "\n")
    (cub / "image_class_labels.txt").write_text("\n".join(labels) + "\n")
    (cub / "train_test_split.txt").write_text("\n".join(split) + "\n")
    (cub / "classes.txt").write_text("\n".join(f"{c} {n}" for c, n in enumerate(names, 1)) + "\n")
    return cub


def make_ssb(root: Path, known=(0, 2, 4, 6), unknown=None) -> Path:
    unknown = unknown or {"Easy": [1], "Medium": [5, 7], "Hard": [3]}
    folder = root / "SSB_splits" / "SSB" / "splits"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "cub_ssb_splits.json"
    path.write_text(json.dumps({"known_classes": list(known), "unknown_classes": unknown,
                                "known_unknown_pairs": {}}))
    return path


def test_cub_loads_what_is_on_disk_and_records_it(tmp_path, cache_dir):
    make_cub(tmp_path)
    ds = hdata.load("cub", size=8, root=tmp_path)
    assert tuple(ds.x.shape) == (ON_DISK * PER_CLASS, 3, 8, 8) and ds.x.dtype == torch.uint8
    assert len(ds.classes) == N_CLASSES and ds.classes[0] == "001.Bird_1"
    assert ds.y.tolist() == [c for c in range(ON_DISK) for _ in range(PER_CLASS)]  # 0-based, as the SSB files
    assert ds.meta["classes_present"] == list(range(ON_DISK))
    assert (ds.meta["images_listed"], ds.meta["images_present"]) == (N_CLASSES * PER_CLASS, ON_DISK * PER_CLASS)
    assert ds.meta["split"].tolist() == [0, 0, 1, 1] * ON_DISK
    reds = ds.x[::PER_CLASS, 0, 4, 4].tolist()  # the colour follows the class: labels belong to their images
    assert reds == sorted(reds) and len(set(reds)) == ON_DISK


def test_cub_bad_layouts_are_clear_errors(tmp_path, cache_dir):
    with pytest.raises(DataMissing):
        hdata.load("cub", root=tmp_path)
    cub = make_cub(tmp_path)
    (cub / "train_test_split.txt").write_text("1 1\nnot a line\n")
    with pytest.raises(DataError, match="train_test_split.txt, line 2"):
        hdata.load("cub", root=tmp_path, cache=False)
    make_cub(tmp_path)
    for d in (cub / "images").iterdir():
        for f in d.iterdir():
            f.unlink()
    with pytest.raises(DataError, match="none of the 32 images"):
        hdata.load("cub", root=tmp_path, cache=False)


def test_ssb_json_is_read_checked_and_applied_to_the_classes_present(tmp_path):
    make_ssb(tmp_path)
    split = find_ssb_split("cub", root=tmp_path)
    assert split.name == "cub" and split.known_classes == [0, 2, 4, 6]
    applied = apply_ssb_split(split, range(ON_DISK))
    assert applied.known == [0, 2, 4]
    assert applied.unknown == {"Easy": [1], "Medium": [5], "Hard": [3]}
    assert applied.missing_known == 1 and applied.missing_unknown == {"Easy": 0, "Medium": 1, "Hard": 0}
    with pytest.raises(DataError, match="at least 2 known"):
        apply_ssb_split(split, [1, 3])
    bad = make_ssb(tmp_path / "bad", known=(0, 1), unknown={"Easy": [1]})
    with pytest.raises(DataError, match="both known and unknown"):
        read_ssb_json(bad)
    bad.write_text("{not json")
    with pytest.raises(DataError, match="not valid json"):
        read_ssb_json(bad)
    bad.write_text(json.dumps({"known_classes": [0]}))
    with pytest.raises(DataError, match="unknown_classes"):
        read_ssb_json(bad)
    with pytest.raises(DataMissing):
        find_ssb_split("aircraft", root=tmp_path)


def test_cub_case_on_a_fixture_tree(tmp_path, cache_dir, monkeypatch):
    """The suite's cub-ssb case built on the fixture: known classes train on their train images only, the test
    set holds every known and unknown test image, and each unknown carries its difficulty."""
    root = tmp_path / "data"
    make_cub(root)
    split = read_ssb_json(make_ssb(root))
    monkeypatch.setenv("HARNESS_DATA", str(root))
    spec = next(s for s in openset.case_specs("smoke") if s.case == "cub-ssb")
    spec = openset._spec(spec.case, "smoke", {**spec.params, "size": 8, "ssb_digest": split_digest(split)}, spec.budget)
    openset._load.cache_clear()
    task = spec.build(spec)
    assert task.num_classes == 3 and task.info["known"] == ["001.Bird_1", "003.Bird_3", "005.Bird_5"]
    assert task.info["unknown"] == ["002.Bird_2", "006.Bird_6", "004.Bird_4"]  # Easy, Medium, Hard
    assert task.info["classes_present"] == list(range(ON_DISK))
    assert task.info["ssb_applied"]["missing_known"] == 1
    assert task.info["counts"] == {"train_known": 6, "test_known": 6, "test_unknown": 6}
    test = task.splits["test"].indices
    parts = task.info["openset"]["parts"]
    assert parts == ["known", "easy", "medium", "hard"]
    got = {(int(task.data.y[i]), parts[int(task.data.meta["openset_part"][i])]) for i in test}
    assert got == {(0, "known"), (1, "known"), (2, "known"), (3, "easy"), (4, "medium"), (5, "hard")}
    assert (task.data.y[task.splits["train"].indices] < 3).all()
    spec_other = openset._spec(spec.case, "smoke", {**spec.params, "ssb_digest": "0" * 16}, spec.budget)
    with pytest.raises(DataError, match="differs from the published SSB"):
        spec_other.build(spec_other)


def test_cub_metrics_are_reported_per_difficulty():
    evaluation = {"parts": ["known", "easy", "hard"], "groups": {"": ["known", "easy", "hard"],
                                                                "_easy": ["known", "easy"], "_hard": ["known", "hard"]},
                  "acc_groups": [""]}
    # knowns score 3, 2; the easy unknown 0 (below both), the hard unknown 2.5 (between them)
    arrays = {"y": np.array([0, 1, 2, 3]), "pred": np.array([0, 0, 1, 1]), "part": np.array([0, 0, 1, 2]),
              "score": np.array([3.0, 2.0, 0.0, 2.5], dtype=np.float32)}
    from harness.protocols.openset import openset_metrics_from_arrays

    m = openset_metrics_from_arrays(arrays, 2, evaluation)
    assert m["acc"] == 0.5 and "acc_easy" not in m
    assert m["auroc_easy"] == 1.0 and m["auroc_hard"] == 0.5 and m["auroc"] == 0.75
    assert m["oscr_easy"] == 0.5 and m["oscr_hard"] == 0.5  # only the first known is right, and it outscores both
    assert m["fpr95_easy"] == 0.0 and m["fpr95_hard"] == 1.0
