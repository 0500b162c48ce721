"""Issue 25, items 1-4: each attack that passed CI, made on a real breast_cancer smoke record of bce in tmp_path
and refused with a one-line reason (harness/checks/verify.py, harness/records/manifest.py). Time checks use
synthetic timings, so these tests pass on a loaded machine."""

from __future__ import annotations

import random
import shutil
from pathlib import Path

import pytest
import test_verify
from test_verify import CPU, flip_predictions, forge_evidence, git, older_checks_pass, path_of, set_per_seed

from harness.checks import verify
from harness.records import load_evidence, load_record, seed_arrays, write_record
from harness.records.manifest import file_sha256, read_manifest, scan_results, write_manifest
from harness.reporting import site
from harness.suites import losses

steady_clock = test_verify.steady_clock  # no wall clock in checks (the honest record `made` is a conftest fixture)


@pytest.fixture
def repo(made, tmp_path) -> Path:
    """A git checkout whose results/ holds the record, verified and committed with its manifest."""
    repo = tmp_path / "repo"
    shutil.copytree(made, repo / "results")
    git(repo, "init", "-q")
    assert all(o.ok for o in verify.verify_changed(repo / "results", CPU, repo, say=quiet, update_manifest=True))
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "verified")
    return repo


def quiet(_: str) -> None:
    pass


def failures(repo: Path, **kw) -> list[str]:
    return [o.message for o in verify.verify_changed(repo / "results", CPU, repo, say=quiet, **kw) if not o.ok]


def test_a_consistently_rewritten_later_seed_is_re_executed(made, tmp_path):
    results = tmp_path / "results"
    shutil.copytree(made, results)
    path = path_of(results)
    forge_evidence(path, load_record(path), 1, flip_predictions)
    older_checks_pass(results, path)
    [outcome] = verify.verify_paths([path], results, CPU, say=quiet)
    assert not outcome.ok and "seed 1: test_acc recorded" in outcome.message and "\n" not in outcome.message


def test_seeds_re_executed_are_seed_0_and_one_drawn_from_the_operating_system():
    record = {"suite": "losses", "profile": "standard", "seeds": [0, 1, 2, 3, 4], "status": "ok"}
    drawn = {verify.reexecution_seeds(record, random.SystemRandom()) for _ in range(200)}
    assert {s[0] for s in drawn} == {0} and {s[1] for s in drawn} == {1, 2, 3, 4}  # P(a seed never drawn) ~ 1e-25


def test_records_without_recompute_fn_are_always_re_executed():
    loaded = [(Path(f"results/losses/c{i}/m__standard.json"),
               {"suite": "losses", "case": f"c{i}", "profile": "standard", "seeds": [0, 1, 2, 3, 4]})
              for i in range(20)]
    required = frozenset({loaded[7][0]})
    chosen, over = verify.select_sample(loaded, 3, 1000.0, random.Random(0), required)
    assert loaded[7] in chosen and over == []
    _, over = verify.select_sample(loaded, 0, 0.0, random.Random(0), required)
    assert any("has no recompute_fn, so it must be re-executed" in line for line in over)


def test_a_forgery_followed_by_another_commit_is_still_verified(repo):
    path = path_of(repo / "results")
    forge_evidence(path, load_record(path), 1, flip_predictions)
    git(repo, "commit", "-qam", "forgery")
    (repo / "README").write_text("innocent\n")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "second commit")
    [msg] = failures(repo)  # compared with the manifest, not with HEAD~1
    assert "seed 1: test_acc recorded" in msg


def test_a_manifest_entry_blessed_by_hand_is_verified(repo):
    path = path_of(repo / "results")
    forge_evidence(path, load_record(path), 1, flip_predictions)
    manifest = read_manifest(repo / "results")
    git(repo, "commit", "-qam", "forgery")
    for rel in manifest["files"]:
        manifest["files"][rel]["sha256"] = file_sha256(repo / "results" / rel)
    write_manifest(repo / "results", manifest)
    git(repo, "commit", "-qam", "blessed by hand")
    [msg] = failures(repo, base="HEAD~2")  # the verified commit neither holds these digests nor these bytes
    assert "seed 1: test_acc recorded" in msg


def test_a_manifest_written_for_files_the_base_already_held_re_verifies_nothing(repo, monkeypatch):
    """Bootstrapping a manifest over records committed unchanged before it blesses nothing new: nothing to verify."""
    (repo / "results" / ".verified.json").unlink()
    git(repo, "commit", "-qam", "records without a manifest")
    manifest = {"version": 1, "files": {}, "removed": {}}
    for rel in scan_results(repo / "results")[0]:
        manifest["files"][rel] = {"sha256": file_sha256(repo / "results" / rel), "verified_at": "carried"}
    write_manifest(repo / "results", manifest)
    monkeypatch.setattr(verify, "verify_record", lambda *a, **k: pytest.fail("nothing changed: nothing re-executed"))
    assert failures(repo, base="HEAD") == []
    path = path_of(repo / "results")  # the same manifest over a file edited since the base is verified
    forge_evidence(path, load_record(path), 1, flip_predictions)
    manifest["files"][path.relative_to(repo / "results").as_posix()]["sha256"] = file_sha256(path)
    write_manifest(repo / "results", manifest)
    assert verify.changed_records(repo / "results", repo, "HEAD").records == [path]


def test_deleting_a_record_needs_a_stated_reason(repo):
    path = path_of(repo / "results")
    path.unlink()
    path.with_suffix(".npz").unlink()
    [msg] = failures(repo)
    assert "deleted without a stated reason" in msg
    assert failures(repo, update_manifest=True, reason="case retired") == []
    assert read_manifest(repo / "results")["removed"][path.relative_to(repo / "results").as_posix()]["reason"] \
        == "case retired"
    assert failures(repo) == []


def test_symlinks_and_paths_outside_results_are_refused(repo, tmp_path):
    path = path_of(repo / "results")
    elsewhere = tmp_path / "elsewhere.json"
    shutil.move(path, elsewhere)
    path.symlink_to(elsewhere)
    msgs = failures(repo)
    assert any("a symlink under results/" in m for m in msgs)
    [outcome] = verify.verify_paths([elsewhere], repo / "results", CPU, say=quiet)
    assert not outcome.ok and "outside" in outcome.message


def test_the_budget_comes_from_the_case_not_the_record(made):
    record = load_record(path_of(made))
    claimed = {**record, "timing": {**record["timing"], "wall_time_s": 1e6}}
    assert verify.estimated_seconds(claimed) == verify.estimated_seconds(record)


def test_seeds_beyond_the_suite_count_are_refused(made, tmp_path):
    results = tmp_path / "results"
    shutil.copytree(made, results)
    path = path_of(results)
    record = load_record(path)
    evidence = load_evidence(path, record)
    record["seeds"] = [0, 1, 2]
    for name, m in record["metrics"].items():
        set_per_seed(record, name, [*m["per_seed"], m["per_seed"][1]])
    for d in (record.get("per_domain") or {}).values():
        d.update(per_seed=[*d["per_seed"], d["per_seed"][1]])
    evidence[2] = evidence[1]
    write_record(record, path, seed_arrays(evidence))
    problems = verify.audit(path, load_record(path), results)
    assert "seeds [0, 1, 2]: the smoke profile of losses runs seeds 0..1" in problems


def test_profiles_the_suite_does_not_declare_are_refused(made, monkeypatch):
    monkeypatch.setattr(losses, "SEEDS", {"smoke": 1, "standard": 5})
    record = {**load_record(path_of(made)), "profile": "full"}
    problems = verify.audit(path_of(made), record, made)
    assert "profile 'full': suite losses declares ('smoke', 'standard')" in problems


def test_summary_means_use_only_rows_with_the_suite_seed_count(made, monkeypatch):
    monkeypatch.setattr(losses, "SEEDS", {**losses.SEEDS, "smoke": 2})  # the honest record's 2 seeds are standard
    honest = load_record(path_of(made))
    padded = {**honest, "method": "focal", "seeds": list(range(10)),
              "metrics": {k: {**m, "mean": 1.0} for k, m in honest["metrics"].items()}}
    view = site.section_view(losses, "smoke", [honest, padded])
    assert set(view.summary["method"]) == {"bce"}  # focal's 10 seeds are shown apart, not averaged


def test_both_times_divided_by_100_fail_on_the_re_measured_reference():
    recorded = {"reference_time_s": 0.004 / 100, "normalised_step_time": 0.5}
    [msg] = verify.timing_problems(recorded, {"reference_time_s": 0.004, "normalised_step_time": 0.5})
    assert "reference time recorded" in msg and "ratio 100.00" in msg


def test_a_step_time_divided_by_3_fails():
    [msg] = verify.timing_problems({"reference_time_s": 0.004, "normalised_step_time": 0.5 / 3},
                                   {"reference_time_s": 0.004, "normalised_step_time": 0.5})
    assert "machine-normalised step time" in msg and "ratio 3.00" in msg


def test_re_measured_times_reach_the_manifest(repo):
    entry = read_manifest(repo / "results")["files"][path_of(repo / "results").relative_to(repo / "results")
                                                     .as_posix()]
    assert {"step_time_median_s", "reference_time_s", "normalised_step_time"} <= set(entry["remeasured"])


def test_a_record_with_both_times_divided_by_100_is_refused(made, tmp_path):
    results = tmp_path / "results"
    shutil.copytree(made, results)
    path = path_of(results)
    test_verify.forge_timing(path, 100, "step_time_median_s", "reference_time_s")
    [outcome] = verify.verify_paths([path], results, CPU, say=quiet)
    assert not outcome.ok and "reference time recorded" in outcome.message


def test_the_first_manifest_starts_from_the_records_the_base_commit_held(repo, monkeypatch):
    """A base commit without a manifest (before manifests existed): its records are the last landed state; only what
    differs from it is verified, and a record it held that is gone needs a reason."""
    (repo / "results" / ".verified.json").unlink()
    git(repo, "commit", "-qam", "the landed state, before manifests")
    monkeypatch.setattr(verify, "verify_record", lambda *a, **k: pytest.fail("nothing changed: nothing re-executed"))
    assert failures(repo, base="HEAD") == []
    path = path_of(repo / "results")
    forge_evidence(path, load_record(path), 1, flip_predictions)
    assert verify.changed_records(repo / "results", repo, "HEAD").records == [path]
    git(repo, "checkout", "-q", "--", ".")
    path.unlink()
    assert [m for m in failures(repo, base="HEAD") if "deleted without a stated reason" in m]


def test_deleting_the_manifest_is_refused(repo):
    (repo / "results" / ".verified.json").unlink()
    assert any("deleted, but" in m for m in failures(repo, base="HEAD"))
