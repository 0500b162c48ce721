"""A method's history across the commits that changed its records, and the change-point test on it."""

from __future__ import annotations

import subprocess

import numpy as np
import pytest

from harness.reporting import history
from tests.factories import make_record, write

CASES = ["mnist3v5-noise0", "mnist4v9-noise0"]


def git(repo, *args):
    subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True)


@pytest.fixture
def repo(tmp_path):
    """Ten commits of bce's standard records: accuracy 0.80 for five commits, then 0.90 (a protocol fix)."""
    git(tmp_path, "init", "-q")
    git(tmp_path, "config", "user.email", "t@t")
    git(tmp_path, "config", "user.name", "t")
    rng = np.random.default_rng(0)
    for i in range(10):
        level = 0.80 if i < 5 else 0.90
        for case in CASES:
            write(tmp_path / "results", make_record(case, "bce", list(level + rng.normal(0, 0.003, 5))))
        write(tmp_path / "results", make_record(CASES[0], "hinge", [0.7 + 0.001 * i] * 5))
        git(tmp_path, "add", "-A")
        git(tmp_path, "commit", "-qm", f"round {i}")
    return tmp_path


def test_the_commit_where_accuracy_stepped_is_found(repo):
    frame = history.method_history("losses", "bce", repo=repo)
    assert len(frame) == 10 and (frame["cases"] == 2).all()
    [metric_line, _] = history.steps(frame)
    assert metric_line.startswith("mean over cases: stepped at") and frame["commit"][5] in metric_line
    assert history.suite_history("losses", repo=repo)["bce"].equals(frame)


def test_no_step_in_noise_and_no_test_below_its_floor():
    rng = np.random.default_rng(3)
    rates = np.mean([history.change_point(list(rng.normal(0, 1, 10))).p < 0.05 for _ in range(200)])
    assert rates <= 0.05 + 3 * np.sqrt(0.05 * 0.95 / 200)  # exact permutation test: at most its level
    assert history.floor_p(7) > 0.05 >= history.floor_p(8)
    lines = history.steps(history._frame([("a" * 12, "2026-01-01", [make_record(CASES[0], "bce", [0.8] * 5)])] * 3))
    assert lines[0] == "mean over cases: 3 points cannot reach p < 0.05 (a change-point test needs at least 8)"
