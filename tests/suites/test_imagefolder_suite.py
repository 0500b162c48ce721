"""The bring-your-own-data suite on a fixture tree: split, record, option errors, staleness."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch
from PIL import Image

from harness.errors import DataError, UsageError
from harness.suites import imagefolder

SUITE_FILE = '''
from harness.suites import imagefolder as SUITE


def test_imagefolder(harness_case, benchmark):
    harness_case.run(benchmark)
'''


@pytest.fixture
def tree(tmp_path, cache_dir):
    root = tmp_path / "pets"
    rng = np.random.default_rng(0)
    for c, name in enumerate(["cat", "dog", "owl"]):
        (root / name).mkdir(parents=True)
        for i in range(10 + 2 * c):
            arr = np.clip(rng.normal(60 + 70 * c, 20, (12, 12, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(arr).save(root / name / f"{i}.png")
    return root


def test_split_is_stratified_fixed_and_recorded(tree):
    (spec,) = imagefolder.case_specs("smoke", datasets=[f"imagefolder:{tree}"])
    assert spec.case == f"imagefolder-{imagefolder.folder_slug(tree)}" and spec.params["path"] == str(tree.resolve())
    task = spec.build(spec)
    parts = {k: v.indices for k, v in task.splits.items()}
    assert sum(len(v) for v in parts.values()) == len(task.data) == 10 + 12 + 14
    assert not set(parts["train"].tolist()) & set(parts["test"].tolist())
    for name, idx in parts.items():
        assert set(task.data.y[idx].tolist()) == {0, 1, 2}, name  # every class in every split
    again = spec.build(spec)
    assert all(torch.equal(parts[k], again.splits[k].indices) for k in parts)
    counts = task.info["split_counts"]
    assert counts["test"] == [2, 2, 2] and counts["train"] == [6, 8, 10]  # round(0.15 * n) per class
    assert task.info["classes"] == ["cat", "dog", "owl"]


def test_tiny_class_is_a_clear_error(tmp_path, cache_dir):
    root = tmp_path / "few"
    for name, n in (("a", 5), ("b", 2)):
        (root / name).mkdir(parents=True)
        for i in range(n):
            Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(root / name / f"{i}.png")
    (spec,) = imagefolder.case_specs("smoke", datasets=[f"imagefolder:{root}"])
    with pytest.raises(DataError, match="class 1 has 2 image"):
        spec.build(spec)


def test_bad_dataset_values_are_usage_errors(tmp_path):
    with pytest.raises(UsageError, match="expected imagefolder:PATH"):
        imagefolder.parse_dataset(str(tmp_path))
    with pytest.raises(UsageError, match="is not a folder"):
        imagefolder.parse_dataset(f"imagefolder:{tmp_path / 'nope'}")


def test_changed_files_make_the_record_stale(tree):
    (spec,) = imagefolder.case_specs("standard", datasets=[f"imagefolder:{tree}"])
    record = {"profile": "standard", "task": {"params": dict(spec.params)}}
    assert imagefolder.spec_for_record(record).fingerprint == spec.fingerprint
    f = tree / "cat" / "0.png"
    os.utime(f, ns=(f.stat().st_atime_ns, f.stat().st_mtime_ns + 10**9))
    assert imagefolder.spec_for_record(record).fingerprint != spec.fingerprint
    assert imagefolder.spec_for_record({"profile": "standard", "task": {"params": {"path": "/nope"}}}) is None


def test_end_to_end_through_pytest(pytester, tree):
    pytester.makepyfile(test_if=SUITE_FILE)
    out = pytester.path / "out"
    res = pytester.runpytest("--method=erm", f"--dataset=imagefolder:{tree}", f"--results-dir={out}",
                             "-p", "no:cacheprovider", "--benchmark-disable")
    res.assert_outcomes(passed=1)
    (path,) = out.glob(f"imagefolder/imagefolder-{imagefolder.folder_slug(tree)}/erm__smoke.json")
    rec = json.loads(path.read_text())
    assert rec["task_info"]["split_counts"]["val"] == [2, 2, 2] and rec["task"]["params"]["split_seed"] == 0
    assert 0.0 <= rec["metrics"]["test_acc"]["mean"] <= 1.0


def test_without_dataset_the_suite_skips_with_the_fix(pytester):
    pytester.makepyfile(test_if=SUITE_FILE)
    res = pytester.runpytest("--method=erm", "-rs", "--benchmark-disable")
    res.assert_outcomes(skipped=1)
    res.stdout.fnmatch_lines(["*--dataset=imagefolder:PATH*"])
