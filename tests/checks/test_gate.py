"""The CI regression gate: what a change affects, the base ref, and failing on a degraded method."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import torch

from baselines.losses.bce import BCE
from harness.checks import gate
from harness.core.digest import REPO
from harness.core.registry import create_method
from harness.records import load_record
from harness.running.runner import run_case
from harness.suites import losses

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def committed(tmp_path_factory):
    """A committed-style smoke record of bce (2 seeds) and the gate's index of it."""
    results = tmp_path_factory.mktemp("results")
    spec = next(s for s in losses.case_specs("smoke") if s.case == "breast_cancer-noise0")
    run_case(spec, create_method("bce"), [0, 1], CPU, results)
    return results, gate.smoke_records(results)


@pytest.fixture
def steady(monkeypatch) -> None:
    """The re-run keeps the committed record's timings: these tests judge metrics, and no wall clock may decide
    them (they must pass with both cores busy)."""
    rerun = gate.verify.rerun
    monkeypatch.setattr(gate.verify, "rerun", lambda record, device, *a, **k: {
        **rerun(record, device, *a, **k), "timing": record["timing"]})


def test_unchanged_method_passes_exactly(committed, steady):
    _, index = committed
    [(_, old)] = index["losses", "bce"]
    assert gate.check_target(gate.Target("losses", "bce", "test"), index["losses", "bce"], CPU,
                             say=lambda s: None) == []
    assert old["metrics"]["test_acc"]["mean"] > 0.9


def test_gate_fails_on_a_deliberately_degraded_method(committed, steady, monkeypatch):
    _, index = committed
    [(_, old)] = index["losses", "bce"]

    def inverted(self, logits, batch, state):  # learns the opposite labels: accuracy collapses
        return torch.nn.functional.binary_cross_entropy_with_logits(logits, 1.0 - batch.y.to(logits.dtype))

    monkeypatch.setattr(BCE, "loss", inverted)
    [failure] = gate.check_target(gate.Target("losses", "bce", "test"), index["losses", "bce"], CPU,
                                  say=lambda s: None)
    assert failure.startswith("losses/breast_cancer-noise0 bce: test_acc regressed: new 0.")
    assert f"vs committed {old['metrics']['test_acc']['mean']:.4f}" in failure
    assert "over 2 seed(s), two-sided paired test p = 0.500; tolerance 0.0500, higher is better" in failure


def test_gate_fails_on_a_slower_method(committed, monkeypatch):
    """Steps ten times as long: the re-run's timings are scaled, not slept, so no wall clock decides the test (it
    must pass with both cores busy)."""
    _, index = committed
    rerun = gate.verify.rerun

    def ten_times_slower(record, device, *args, **kwargs):
        new = rerun(record, device, *args, **kwargs)
        timing = {**new["timing"], **{k: record["timing"][k] * 10
                                      for k in ("step_time_median_s", "normalised_step_time")}}
        return {**new, "timing": timing}

    monkeypatch.setattr(gate.verify, "rerun", ten_times_slower)
    [failure] = gate.check_target(gate.Target("losses", "bce", "test"), index["losses", "bce"], CPU,
                                  say=lambda s: None)
    assert "bce: step time regressed: machine-normalised new" in failure
    assert "both above the tolerance 2.00" in failure


def test_compare_messages_and_directions():
    old = load_like("test_acc", [0.90, 0.92], up=True)
    assert gate.compare(old, load_like("test_acc", [0.88, 0.90], up=True)) == []  # within 0.05
    [msg] = gate.compare(old, load_like("test_acc", [0.80, 0.82], up=True))
    assert "test_acc regressed: new 0.8100 vs committed 0.9100 (seed-paired Δ -0.1000" in msg
    noisy = load_like("test_acc", [0.90, 0.92], up=True)
    noisy["timing"] = {"normalised_step_time": 4.0, "step_time_median_s": 0.0011}  # only the reference moved
    assert gate.compare(old, noisy) == []
    slower = load_like("test_acc", [0.90, 0.92], up=True)
    slower["timing"] = {"normalised_step_time": 3.0, "step_time_median_s": 0.0031}
    [msg] = gate.compare(old, slower)
    assert "ratio 3.00), raw 3.100 ms vs 1.000 ms (ratio 3.10)" in msg
    low = load_like("fpr95", [0.30, 0.32], up=False)
    assert gate.compare(low, load_like("fpr95", [0.10, 0.12], up=False)) == []  # lower is better: an improvement
    assert gate.compare(low, load_like("fpr95", [0.40, 0.42], up=False))


def load_like(metric: str, values: list[float], up: bool) -> dict:
    mean = sum(values) / len(values)
    return {"suite": "s", "case": "c", "method": "m", "status": "ok", "seeds": list(range(len(values))),
            "primary_metric": metric, "higher_is_better": up,
            "metrics": {metric: {"per_seed": values, "mean": mean, "higher_is_better": up}},
            "timing": {"normalised_step_time": 1.0, "step_time_median_s": 0.001}}


def test_targets_follow_the_code_fingerprint():
    index = {("losses", "bce"): [], ("losses", "focal"): [], ("shift", "erm"): [], ("shift", "sam"): []}
    t = gate.targets
    assert t(["README.md", "harness/data/real.py"], index) == []
    assert t(["baselines/losses/focal.py"], index) == [gate.Target("losses", "focal", "baselines/losses/focal.py "
                                                                   "changed")]
    assert [(x.suite, x.method) for x in t(["harness/protocols/kit.py"], index)] == [("losses", "bce"),
                                                                                     ("shift", "erm")]
    assert [(x.suite, x.method) for x in t(["harness/suites/shift.py"], index)] == [("shift", "erm")]
    assert [(x.suite, x.method) for x in t(["harness/suites/shift.py"], index, all_methods=True)] == \
        [("shift", "erm"), ("shift", "sam")]
    assert [(x.suite, x.method) for x in t(["harness/core/method.py"], index)] == [("losses", "bce"), ("shift", "erm")]
    # causirl-coral and causirl-mmd import coral.py: an edit there runs them too (none has committed records here)
    assert [(x.suite, x.method) for x in t(["baselines/dg/coral.py"], index)] == \
        [("", "causirl-coral"), ("", "causirl-mmd"), ("", "coral")]


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True, text=True).stdout.strip()


def test_base_ref_in_a_clean_clone(tmp_path):
    assert gate.resolve_base("auto", tmp_path) is None  # not a git checkout: nothing to do
    git(tmp_path, "init", "-q")
    git(tmp_path, "config", "user.email", "t@t")
    git(tmp_path, "config", "user.name", "t")
    (tmp_path / "a.txt").write_text("1")
    git(tmp_path, "add", ".")
    git(tmp_path, "commit", "-qm", "one")
    assert gate.resolve_base("auto", tmp_path) is None  # a single commit
    messages: list[str] = []
    assert gate.run_gate("auto", tmp_path, CPU, repo=tmp_path, say=messages.append) == []
    assert "nothing to do" in messages[0]
    first = git(tmp_path, "rev-parse", "HEAD")
    (tmp_path / "baselines").mkdir()
    (tmp_path / "baselines" / "x.py").write_text("")
    git(tmp_path, "add", ".")
    git(tmp_path, "commit", "-qm", "two")
    assert gate.resolve_base("auto", tmp_path) == first  # HEAD~1
    (tmp_path / "b.txt").write_text("new")  # untracked files count as changed
    assert gate.changed_files(first, tmp_path) == ["b.txt", "baselines/x.py"]
    git(tmp_path, "update-ref", "refs/remotes/origin/main", first)
    assert gate.resolve_base("auto", tmp_path) == first  # merge-base with origin/main
    second = git(tmp_path, "rev-parse", "HEAD")
    git(tmp_path, "update-ref", "refs/remotes/origin/main", second)
    assert gate.resolve_base("auto", tmp_path) == first  # a clone of main: its last commit, not an empty diff
    with pytest.raises(Exception, match="not a commit"):
        gate.resolve_base("no-such-ref", tmp_path)


def test_committed_smoke_records_cover_each_suite_baseline():
    index = gate.smoke_records(REPO / "results")
    for suite in ("losses", "shift"):
        baseline = {"losses": "bce", "shift": "erm"}[suite]
        assert (suite, baseline) in index, f"no committed smoke record of {baseline} on {suite} for the gate"
        assert all(len(rec["seeds"]) >= 2 and load_record(p) for p, rec in index[suite, baseline])


# -- across cases ---------------------------------------------------------------------------------


def nine_cases(shift_by: list[float]) -> list[tuple[dict, dict]]:
    """Synthetic (committed, re-run) bce pairs on 9 cases, the re-run moved by ``shift_by[c]`` on both seeds."""
    pairs = []
    for c, delta in enumerate(shift_by):
        old = load_like("test_acc", [0.80 + 0.01 * c, 0.81 + 0.01 * c], up=True)
        old["case"], old["method"] = f"case{c}", "bce"
        new = load_like("test_acc", [v + delta for v in old["metrics"]["test_acc"]["per_seed"]], up=True)
        pairs.append((old, new))
    return pairs


WORSE = [-0.004, -0.03, -0.012, -0.007, -0.02, -0.004, -0.025, -0.009, -0.015]  # 0.4 to 3 points, every case


def test_slightly_worse_on_every_case_fails_across_cases_not_per_case():
    pairs = nine_cases(WORSE)
    assert all(gate.compare(old, new) == [] for old, new in pairs)  # each case alone is within the 0.05 tolerance
    failure = gate.aggregate("losses bce", pairs, say=lambda s: None)
    assert failure is not None and failure.startswith("losses bce: primary metric across 9 case(s) together: ")
    assert "(9 of 9 worse), one-sided sign-flip test over cases p = 0.0020 < 0.05" in failure  # 1/512


def test_across_cases_passes_identical_mixed_and_tiny_changes():
    quiet = lambda s: None  # noqa: E731
    assert gate.aggregate("x", nine_cases([0.0] * 9), say=quiet) is None  # same machine: exact reproduction
    mixed = [-0.01, 0.012, -0.004, 0.006, 0.0, -0.02, 0.015, 0.003, -0.002]  # noise without a direction
    assert gate.aggregate("x", nine_cases(mixed), say=quiet) is None
    assert gate.aggregate("x", nine_cases([-0.0005] * 9), say=quiet) is None  # below the 0.002 minimum effect
    lower = [(load_like("fpr95", [0.3, 0.31], up=False), load_like("fpr95", [0.3 + 0.01, 0.31 + 0.01], up=False))
             for _ in range(9)]
    assert gate.aggregate("x", lower, say=quiet) is not None  # lower is better: +0.01 everywhere is worse
    messages: list[str] = []
    assert gate.aggregate("x", nine_cases(WORSE)[:3], say=messages.append) is None
    assert "smallest possible p is 0.125: per-case tolerance only" in messages[0]


def test_check_target_runs_the_across_cases_test(monkeypatch):
    pairs = nine_cases(WORSE)
    reruns = {old["case"]: new for old, new in pairs}
    monkeypatch.setattr("harness.checks.verify.rerun", lambda old, device: reruns[old["case"]])
    failures = gate.check_target(gate.Target("losses", "bce", "test"), [(Path("x"), old) for old, _ in pairs], CPU,
                                 say=lambda s: None)
    assert len(failures) == 1 and "losses bce: primary metric across 9 case(s) together" in failures[0]
