"""Records that can be checked: consistency on load, evidence and recomputation, locks, safe results folders,
code fingerprints, reruns and regeneration."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import textwrap
import threading
import time
import zipfile
from dataclasses import replace

import numpy as np
import pytest
import torch

from harness import Method, cli, records, register_method
from harness.checks import verify
from harness.core.digest import REPO
from harness.core.registry import create_method, load_method_module
from harness.core.task import Budget
from harness.errors import HarnessError, RecordError, RecordLocked
from harness.protocols import RunContext
from harness.protocols.supervised import run_supervised, splits_from
from harness.records import currency
from harness.reporting import site
from harness.running.runner import run_case
from harness.suites import case_seeds, losses, seed_count, shift
from tests.factories import make_record, write

CPU = torch.device("cpu")


def spec_named(suite, case: str, profile: str = "smoke"):
    return next(s for s in suite.case_specs(profile) if s.case == case)


@pytest.fixture(scope="module")
def bc_run(tmp_path_factory):
    """A real two-seed smoke record of bce on breast cancer, with its evidence."""
    results = tmp_path_factory.mktemp("results")
    spec = spec_named(losses, "breast_cancer-noise0.2")
    result = run_case(spec, create_method("bce"), [0, 1], CPU, results)
    return results, result.path


# -- consistency -----------------------------------------------------------------------------------


def test_hand_edited_record_is_rejected_naming_file_and_field(tmp_path):
    path = write(tmp_path, make_record("mnist3v5-noise0", "ensloss", [0.90, 0.91, 0.92, 0.90, 0.91]))
    rec = json.loads(path.read_text())
    rec["metrics"]["test_acc"]["mean"] = 0.9999  # the edit: a better mean, per-seed cut to 2 of 5
    rec["metrics"]["test_acc"]["per_seed"] = [0.9999, 0.9999]
    path.write_text(json.dumps(rec))
    with pytest.raises(RecordError, match=r"ensloss__standard.json: inconsistent record at metrics/test_acc/per_seed: "
                                          r"2 values for 5 completed seed\(s\)"):
        records.load_record(path)
    with pytest.raises(RecordError, match="ensloss__standard.json"):
        site.build(tmp_path)  # never ranked
    rec["metrics"]["test_acc"]["per_seed"] = [0.90, 0.91, 0.92, 0.90, 0.91]  # only the mean edited
    path.write_text(json.dumps(rec))
    with pytest.raises(RecordError, match=r"metrics/test_acc/mean: 0.9999 but the per-seed values .* give 0.908"):
        records.load_record(path)


@pytest.mark.parametrize("edit, field", [
    (lambda r: r["metrics"]["test_acc"].update(std=0.5), "metrics/test_acc/std"),
    (lambda r: r["metrics"]["test_acc"].update(sem=0.5), "metrics/test_acc/sem"),
    (lambda r: r.update(seeds=[0, 0, 1]), "seeds"),
    (lambda r: r.update(higher_is_better=False), "higher_is_better"),
    (lambda r: r.update(primary_metric="nope"), "primary_metric"),
    (lambda r: r.update(status="diverged"), "diverged"),
    (lambda r: r["timing"].update(reference_time_s=0.002, normalised_step_time=9.0), "timing/normalised_step_time"),
])
def test_each_inconsistency_names_its_field(edit, field):
    rec = make_record("mnist3v5-noise0", "bce", [0.8, 0.82, 0.81])
    records.check_consistency(rec, "r.json")
    edit(rec)
    with pytest.raises(RecordError, match=f"r.json: inconsistent record at {field}:"):
        records.check_consistency(rec, "r.json")


def test_committed_records_are_consistent():
    assert all(o.ok for o in verify.check_files(REPO / "results")), "a committed record fails its checks"


# -- evidence --------------------------------------------------------------------------------------


def test_evidence_is_written_with_the_record_and_deterministic(tmp_path):
    rec = make_record("mnist3v5-noise0", "bce", [0.8, 0.82])
    arrays = records.seed_arrays({0: {"test.pred": np.array([0, 1, 1], np.int8)},
                                  1: {"test.pred": np.array([1, 1, 0], np.int8), "test.score": np.ones(3, np.float32)}})
    path = records.write_record(rec, tmp_path / "a" / "bce__standard.json", arrays)
    loaded = records.load_record(path)
    assert loaded["evidence"]["file"] == "bce__standard.npz" and loaded["evidence"]["arrays"] == 3
    evidence = records.load_evidence(path, loaded)
    assert set(evidence) == {0, 1} and evidence[1]["test.score"].dtype == np.float32
    np.testing.assert_array_equal(evidence[0]["test.pred"], [0, 1, 1])
    again = records.write_record(dict(rec), tmp_path / "b" / "bce__standard.json", arrays)
    assert records.load_record(again)["evidence"]["sha256"] == loaded["evidence"]["sha256"]
    # rewritten without evidence: the old npz goes, so the record never points at another run's arrays
    records.write_record(make_record("mnist3v5-noise0", "bce", [0.8, 0.82]), path)
    assert not path.with_suffix(".npz").exists()


def test_tampered_or_pickled_evidence_is_refused(tmp_path):
    rec = make_record("mnist3v5-noise0", "bce", [0.8, 0.82])
    path = records.write_record(rec, tmp_path / "bce__standard.json",
                                records.seed_arrays({0: {"x": np.zeros(4)}, 1: {"x": np.ones(4)}}))
    npz = path.with_suffix(".npz")
    blob = io.BytesIO()
    np.savez(blob, **{"seed0/x": np.array([{"evil": 1}], dtype=object), "seed1/x": np.ones(4)})
    npz.write_bytes(blob.getvalue())
    with pytest.raises(RecordError, match="sha256 differs"):
        records.load_evidence(path, records.load_record(path))
    with pytest.raises(RecordError, match="unreadable evidence"):
        records.load_evidence(path)  # no record: no hash to check, and still never unpickled
    with pytest.raises(RecordError, match="dtype object"):
        records.write_record(rec, path, {"seed0/x": np.array([None], dtype=object)})
    assert [o.ok for o in verify.check_files(tmp_path)] == [False]


def test_recompute_sample_draws_k_per_suite_and_profile_the_same_for_a_seed(tmp_path):
    """CI recomputes a sample drawn with its commit: the same sample on every machine for one commit, K of each suite
    and profile (all of a smaller group), and another sample for another commit."""
    paths = [tmp_path / suite / f"case{i}" / f"m__{profile}.json"
             for suite in ("losses", "shift") for profile in ("smoke", "standard") for i in range(5)]
    paths.append(tmp_path / "ssl" / "case0" / "m-h0a1b__standard.json")
    drawn = verify.recompute_sample(paths, 2, 7)
    assert drawn == verify.recompute_sample(list(reversed(paths)), 2, 7)
    groups: dict[tuple[str, str], int] = {}
    for path in drawn:
        key = (path.parent.parent.name, path.stem.rsplit("__", 1)[1])
        groups[key] = groups.get(key, 0) + 1
    assert groups == {("losses", "smoke"): 2, ("losses", "standard"): 2, ("shift", "smoke"): 2,
                      ("shift", "standard"): 2, ("ssl", "standard"): 1}
    assert any(verify.recompute_sample(paths, 2, seed) != drawn for seed in range(8))


def test_cli_validate_recompute_sample(bc_run, capsys):
    results, _ = bc_run
    assert cli.main(["validate", "--recompute", "--recompute-sample", "3", "--results-dir", str(results)]) == 0
    assert "recomputing 1 record(s), 3 per suite and profile" in capsys.readouterr().out
    assert cli.main(["validate", "--recompute-sample", "3", "--results-dir", str(results)]) == 2
    assert cli.main(["validate", "--recompute", "--recompute-sample", "0", "--results-dir", str(results)]) == 2


def test_recompute_reproduces_every_metric_and_catches_edits(bc_run, tmp_path):
    results, path = bc_run
    record = records.load_record(path)
    out = verify.recompute(path, record)
    assert out.ok and out.message == "recomputed 2 seed(s) exactly"
    assert cli.main(["validate", "--recompute", "--results-dir", str(results)]) == 0
    # flip one test prediction of seed 1: the recomputed test_acc no longer matches the record
    copy = tmp_path / path.name
    evidence = records.load_evidence(path, record)
    evidence[1]["val:test.pred"] = 1 - evidence[1]["val:test.pred"]
    evidence[1]["val:test.score"] = -evidence[1]["val:test.score"]
    records.write_record(dict(record), copy, records.seed_arrays(evidence))
    bad = verify.recompute(copy, records.load_record(copy))
    assert not bad.ok and "seed 1: test_acc recorded" in bad.message and "seed 0" not in bad.message


def test_shift_evidence_recomputes_domains_groups_and_oracle_metrics():
    spec = spec_named(shift, "colored")
    spec = replace(spec, budget=Budget(epochs=1, batch_size=64))
    task = spec.build(spec)
    result = run_supervised(task, create_method("erm"), RunContext.create(task, create_method("erm"), CPU, 0))
    assert {"val:test.pred", "oracle:test.pred", "test.y", "test.domain", "test.group"} <= set(result.arrays)
    assert result.arrays["val:test.pred"].dtype == np.int8 and result.arrays["val:test.score"].dtype == np.float32
    recomputed = task.recompute_fn(result.arrays)
    assert recomputed == result.metrics and "oracle_worst_group_acc" in recomputed
    size = sum(a.nbytes for a in result.arrays.values())
    assert size < 40_000, f"evidence of one smoke seed takes {size} bytes"
    k_class = splits_from({"val:test.pred": np.array([2, 0], np.int8), "test.y": np.array([2, 1], np.int8)})
    assert k_class["test"].correct.tolist() == [1.0, 0.0]
    with pytest.raises(HarnessError, match="keeps predicted labels only for K-class splits"):
        _ = k_class["test"].logits


# -- locks and results folders ---------------------------------------------------------------------


HOLDER = """
import sys, time
from pathlib import Path
from harness.records import record_lock
with record_lock(Path(sys.argv[1])):
    Path(sys.argv[2]).write_text("held")
    time.sleep(float(sys.argv[3]))
"""


def test_second_writer_of_the_same_record_fails_clearly_and_nothing_is_lost(tmp_path):
    spec = spec_named(losses, "breast_cancer-noise0")
    path = records.record_path(tmp_path, spec.suite, spec.case, "bce", spec.profile)
    ready = tmp_path / "ready"
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(path), str(ready), "30"], cwd=REPO)
    try:
        for _ in range(600):
            if ready.exists():
                break
            time.sleep(0.05)
        built = []
        probe = replace(spec, build=lambda s: built.append(s) or spec.build(s))
        with pytest.raises(RecordLocked, match=r"bce__smoke.json: another run is writing this record right now"):
            run_case(probe, create_method("bce"), [0], CPU, tmp_path)
        assert not built, "the second writer trained before finding the lock"
    finally:
        holder.kill()
        holder.wait()
    first = run_case(spec, create_method("bce"), [0], CPU, tmp_path)  # the lock dies with its holder
    assert records.load_record(first.path) == first.record
    assert not list(tmp_path.rglob("*.lock"))  # and a finished run leaves no lock file behind


@register_method("test-held-bce")
class HeldBCE(Method):
    """BCE that pauses in setup until told to go on, so two runs of one record overlap for sure."""

    family, protocols = "loss", frozenset({"supervised"})
    started, finish = threading.Event(), threading.Event()

    def setup(self, task, state):
        type(self).started.set()
        assert type(self).finish.wait(60)


def test_two_concurrent_writers_one_fails_at_once_the_other_writes(tmp_path):
    spec = spec_named(losses, "breast_cancer-noise0")
    first: list = []
    writer = threading.Thread(target=lambda: first.append(run_case(spec, create_method("test-held-bce"), [0, 1],
                                                                    CPU, tmp_path)))
    writer.start()
    try:
        assert HeldBCE.started.wait(60)
        built: list = []
        second = replace(spec, build=lambda s: built.append(s) or spec.build(s))
        with pytest.raises(RecordLocked, match="test-held-bce__smoke.json: another run is writing this record"):
            run_case(second, create_method("test-held-bce"), [0, 1], CPU, tmp_path)
        assert not built  # failed at once: its task was never even built, let alone trained
    finally:
        HeldBCE.finish.set()
        writer.join()
    [path] = tmp_path.rglob("*.json")
    assert records.load_record(path) == first[0].record and first[0].record["seeds"] == [0, 1]


def test_results_dir_that_cannot_be_written_fails_before_training(tmp_path, monkeypatch):
    spec = spec_named(losses, "breast_cancer-noise0")
    built = []
    probe = replace(spec, build=lambda s: built.append(s) or spec.build(s))
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    with pytest.raises(RecordError, match=r"results folder .*a-file/results is not writable \(Not a directory\); "
                                          r"pass --results-dir=PATH"):
        run_case(probe, create_method("bce"), [0], CPU, blocker / "results")

    def denied(*args, **kwargs):  # a read-only folder (chmod cannot show it when the tests run as root)
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(records.tempfile, "mkstemp", denied)
    with pytest.raises(RecordError, match=r"results folder .*ro is not writable \(Permission denied\)"):
        run_case(probe, create_method("bce"), [0], CPU, tmp_path / "ro")
    assert not built


def test_plugin_checks_results_dir_before_collection_and_defaults_to_out(pytester: pytest.Pytester, tmp_path):
    pytester.makepyfile(test_suite="from harness.suites import losses as SUITE\n\n\n"
                                   "def test_losses(harness_case):\n    harness_case.run()\n")
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    result = pytester.runpytest("--method=bce", f"--results-dir={blocker / 'results'}")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*results folder*a-file/results is not writable*"])
    result = pytester.runpytest("--method=bce", "-k", "breast_cancer-noise0.2")
    result.assert_outcomes(passed=1)
    assert [p.relative_to(pytester.path).as_posix() for p in pytester.path.rglob("*.json")] == \
        ["out/results/losses/breast_cancer-noise0.2/bce__smoke.json"]


def test_suite_seed_counts():
    assert seed_count(losses, "standard") == 5 and seed_count(shift, "standard") == 3
    assert seed_count(shift, "smoke") == 1


# -- code fingerprints, reruns, regeneration ----------------------------------------------------------


def test_editing_a_method_file_makes_its_records_stale(tmp_path):
    source = tmp_path / "fp_method.py"
    source.write_text(textwrap.dedent('''
        from harness import Method, register_method


        @register_method("fp-method")
        class FpMethod(Method):
            family, protocols = "loss", frozenset({"supervised"})

            def loss(self, logits, batch, state):
                return super().loss(logits, batch, state)
    '''))
    load_method_module(source)
    results = tmp_path / "results"
    write(results, make_record("mnist3v5-noise0", "fp-method", [0.8, 0.82, 0.81, 0.8, 0.8]))
    assert currency.collect(results).stale == []
    source.write_text(source.read_text() + "# a comment: the syntax tree, and so the fingerprint, is the same\n")
    assert currency.collect(results).stale == []
    source.write_text(source.read_text() + "LATER_EDIT = 1\n")
    [(path, why)] = currency.collect(results).stale
    assert path.name == "fp-method__standard.json" and why == "made by other code (method changed)"
    out = tmp_path / "leaderboard.md"
    site.write_markdown(results, out)
    assert "fp-method__standard.json`: made by other code (method changed)" in out.read_text()


def test_leaderboard_check_lists_stale_records(tmp_path, capsys):
    results = tmp_path / "results"
    rec = make_record("mnist3v5-noise0", "bce", [0.8, 0.82, 0.81, 0.8, 0.8])
    rec["code"] = dict(rec["code"], protocol="0" * 16)
    write(results, rec)
    out = tmp_path / "leaderboard.md"
    site.write_markdown(results, out)
    assert cli.main(["leaderboard", "--check", "--results-dir", str(results), "--output", str(out)]) == 0
    err = capsys.readouterr().err
    assert "bce__standard.json: made by other code (protocol changed)" in err and "regenerate --stale" in err


def test_rerun_agrees_exactly_on_the_same_machine(bc_run):
    results, path = bc_run
    [outcome] = verify.rerun_sample(results, 1, CPU, say=lambda s: None)
    assert outcome.ok and outcome.message == "identical per-seed values (same machine)"


def test_agreement_rules():
    old = make_record("mnist3v5-noise0", "bce", [0.80, 0.82, 0.81])
    same = json.loads(json.dumps(old))
    assert verify.agreement(old, same) == (True, "identical per-seed values (same machine)")
    same["metrics"]["test_acc"]["per_seed"][1] = 0.8201
    ok, msg = verify.agreement(old, same)
    assert not ok and "test_acc seed 1: 0.82 vs 0.8201" in msg
    other = make_record("mnist3v5-noise0", "bce", [0.81, 0.83, 0.80])
    other["environment"]["device"] = "NVIDIA H100"
    assert verify.agreement(old, other)[0]  # other machine: means within max(0.02, 3 combined sem)
    timed = make_record("mnist3v5-noise0", "bce", [0.80, 0.82, 0.81])
    timed["metrics"]["RTE"] = {"mean": 0.5, "std": 0.0, "sem": 0.0, "per_seed": [0.5, 0.5, 0.5]}
    retimed = json.loads(json.dumps(timed))
    retimed["metrics"]["RTE"]["per_seed"] = [0.6, 0.5, 0.5]
    assert verify.agreement(timed, retimed)[0]  # a wall-clock ratio is measured, never compared bit for bit
    far = make_record("mnist3v5-noise0", "bce", [0.70, 0.71, 0.70])
    far["environment"]["device"] = "NVIDIA H100"
    ok, msg = verify.agreement(old, far)
    assert not ok and "test_acc: mean 0.8100 vs 0.7033" in msg


def test_regenerate_reruns_stale_records_in_place(tmp_path):
    spec = spec_named(losses, "breast_cancer-noise0")
    first = run_case(spec, create_method("bce"), [3, 4], CPU, tmp_path)
    rec = json.loads(first.path.read_text())
    rec["code"]["suite"] = "0" * 16
    first.path.write_text(json.dumps(rec))
    [(path, why)] = currency.collect(tmp_path).stale
    assert why == "made by other code (suite changed)"
    assert [o.message for o in verify.regenerate(tmp_path, CPU, dry_run=True, say=lambda s: None)] == \
        [f"stale: {why}"]
    [done] = verify.regenerate(tmp_path, CPU, say=lambda s: None)
    assert done.ok and currency.collect(tmp_path).stale == []
    new = records.load_record(path)
    assert new["seeds"] == [3, 4] and new["metrics"] == first.record["metrics"]  # deterministic on one machine
    assert cli.main(["regenerate", "--results-dir", str(tmp_path)]) == 2  # --stale is required


def test_evidence_zip_members_are_plain_npy(bc_run):
    _, path = bc_run
    with zipfile.ZipFile(path.with_suffix(".npz")) as zf:
        names = zf.namelist()
    assert names and all(n.startswith("seed") and n.endswith(".npy") for n in names)


def test_regenerate_missing_plans_every_declared_case_without_a_record(tmp_path):
    smoke = make_record("breast_cancer-noise0", "bce", [0.9, 0.91], profile="smoke")
    hinge = make_record("breast_cancer-noise0", "hinge", [0.9, 0.91], profile="smoke")
    have = make_record("mnist3v5-noise0", "bce", [0.8, 0.81, 0.82, 0.8, 0.81], timing={
        **smoke["timing"], "wall_time_s": 50.0})
    declared = [s.case for s in losses.case_specs("standard")]
    runs = verify.missing_runs([smoke, hinge, have], ["losses"], ["standard"], None)
    pairs = {(spec.case, method) for spec, method, _ in runs}
    assert pairs == {(c, m) for c in declared for m in ("bce", "hinge")} - {("mnist3v5-noise0", "bce")}
    seconds = {(spec.case, method): s for spec, method, s in runs}
    n = len(case_seeds(spec_named(losses, "mnist3v5-noise0", "standard")))
    assert seconds[("mnist3v5-noise0", "hinge")] == pytest.approx(n * 10.0 + verify.PER_RECORD_OVERHEAD_S)
    for rec in (smoke, hinge, have):
        write(tmp_path, rec)
    out = verify.regenerate(tmp_path, CPU, profiles=["standard"], dry_run=True, missing=True, say=lambda s: None)
    assert sum(o.message.startswith("missing:") for o in out) == len(pairs)
    assert cli.main(["regenerate", "--missing", "--results-dir", str(tmp_path)]) == 2  # --stale goes with it


def test_regenerate_missing_leaves_out_a_method_with_no_part_in_the_cases_protocol():
    """Remote sensing mixes probe and supervised cases: erm (supervised) is not planned on a probe case, nor frozen
    (a probe) on a supervised one; both would only skip, yet be planned at the case's full time."""
    erm = make_record("eurosat", "erm", [0.5, 0.5], profile="smoke", suite="remote_sensing")
    frozen = make_record("probe-eurosat-random", "frozen", [0.5, 0.5], profile="smoke", suite="remote_sensing")
    runs = verify.missing_runs([erm, frozen], ["remote_sensing"], ["standard"], None)
    pairs = {(spec.protocol, method) for spec, method, _ in runs}
    assert pairs == {("supervised", "erm"), ("probe", "frozen")}
