"""Whether a record is current (harness/records/currency.py): which code edits stale which records, re-stamping by
behaviour (``regenerate --stale``), and currency that does not depend on the machine's cache."""

from __future__ import annotations

import json
import re
import shutil
import sys
import time
from pathlib import Path

import pytest
import torch

from harness.checks import gate, verify
from harness.core.digest import REPO, files_digest, import_closure
from harness.core.preprocess import Preprocess
from harness.core.registry import get_method_class
from harness.errors import RecordError
from harness.protocols import get_protocol
from harness.protocols import openset as openset_protocol
from harness.protocols import pretrain as pretrain_protocol
from harness.protocols import unlearn as unlearn_protocol
from harness.protocols.probe import extract
from harness.records import currency, load_evidence, load_record, provenance
from harness.records.provenance import code_versions, method_roots
from harness.running.runner import run_case
from harness.suites import losses
from harness.suites import openset as openset_suite
from harness.suites import remote_sensing as rs
from tests.factories import FakeSSLSuite, make_record, stored_encoder

CPU = torch.device("cpu")
CASE = "breast_cancer-noise0"
PROTOCOLS = ("supervised", "openset", "unlearn", "pretrain", "probe")
TRAINING = {"supervised", "openset", "unlearn", "pretrain"}  # the protocols that train with the step engine
ENGINE = Path("harness/core/engine.py")


def rel(obj) -> Path:
    """A module's, class's or function's file, relative to the repository."""
    module = sys.modules[obj if isinstance(obj, str) else getattr(obj, "__module__", obj.__name__)]
    return Path(module.__file__).resolve().relative_to(REPO)


# the code part of each store key, as the roots handed to code_digest (method classes aside)
STORE_KEYS = {
    "openset.model_key": [rel(openset_protocol), rel(openset_suite)],
    "unlearn._code_digest": [rel(unlearn_protocol)],
    "pretrain.checkpoint_key": [rel(pretrain_protocol)],
    "probe feature cache": [rel(Preprocess), rel(extract)],
}


@pytest.fixture
def copy(tmp_path: Path) -> Path:
    """The repository's harness/ and baselines/ packages, to edit."""
    for top in ("harness", "baselines"):
        shutil.copytree(REPO / top, tmp_path / top, ignore=shutil.ignore_patterns("__pycache__"))
    return tmp_path


def digest(root: Path, roots: list[Path]) -> str:
    return files_digest(import_closure([root / r for r in roots], root), root)


def covers(root: Path, roots: list[Path], target: Path) -> bool:
    return (root / target).resolve() in {p.resolve() for p in import_closure([root / r for r in roots], root)}


def edit_code(path: Path) -> None:
    path.write_text(path.read_text() + "\nCODE_EDIT = 1\n")  # a statement, not a comment: the syntax tree changes


# -- which edits stale which records -----------------------------------------------------------------------


def test_an_engine_edit_stales_exactly_the_digests_whose_closure_runs_it(copy: Path) -> None:
    parts = {f"protocol {name}": [rel(get_protocol(name).__module__)] for name in PROTOCOLS}
    parts |= {f"method {name}": [Path(p).resolve().relative_to(REPO) for p in method_roots(get_method_class(name))]
              for name in ("bce", "sam", "erm", "frozen", "simclr")}
    parts |= {f"store key {name}": roots for name, roots in STORE_KEYS.items()}
    before = {name: digest(copy, roots) for name, roots in parts.items()}
    runs_engine = {name for name, roots in parts.items() if covers(copy, roots, ENGINE)}
    edit_code(copy / ENGINE)
    changed = {name for name, roots in parts.items() if digest(copy, roots) != before[name]}
    assert changed == runs_engine  # the expectation is the closures', not a list
    assert {f"protocol {name}" for name in TRAINING} <= changed
    assert {f"store key {name}" for name in ("openset.model_key", "unlearn._code_digest",
                                             "pretrain.checkpoint_key")} <= changed
    assert "method bce" not in changed  # a loss (and Method) runs no engine code: its method digest stays
    # the probe protocol runs engine code too (feature extraction under engine.autocast, and harness.protocols'
    # package imports the kit, which imports the engine), so its records and feature cache go stale as well
    assert covers(copy, [rel(extract)], ENGINE) == ("protocol probe" in changed)


def test_a_helper_imported_inside_a_function_is_in_the_methods_digest(copy: Path) -> None:
    (copy / "baselines/losses/scaled_helper.py").write_text("def scale(x):\n    return 2 * x\n")
    (copy / "baselines/losses/scaled.py").write_text(
        "from harness.core.method import Method\n\n\n"
        "class Scaled(Method):\n"
        "    def loss(self, logits, batch, state):\n"
        "        from baselines.losses.scaled_helper import scale\n\n"
        "        return scale(super().loss(logits, batch, state))\n")
    scaled = [Path("baselines/losses/scaled.py"), Path("harness/core/method.py")]
    other = [Path("baselines/losses/bce.py"), Path("harness/core/method.py")]
    before = digest(copy, scaled), digest(copy, other)
    (copy / "baselines/losses/scaled_helper.py").write_text("def scale(x):\n    return 3 * x\n")
    assert digest(copy, scaled) != before[0] and digest(copy, other) == before[1]


# -- re-stamping by behaviour ------------------------------------------------------------------------------


@pytest.fixture
def moved(made: Path, tmp_path: Path) -> tuple[Path, Path, dict]:
    """A copy of the smoke record whose code digests are another checkout's (a pure module move): stale."""
    results = tmp_path / "results"
    shutil.copytree(made, results)
    [path] = sorted(results.rglob("*.json"))
    original = load_record(path)
    path.write_text(json.dumps({**original, "code": {part: "0" * 16 for part in original["code"]}}))
    return results, path, original


@pytest.fixture
def runs(monkeypatch) -> list[list[int]]:
    """The seed lists verify runs cases with."""
    seen: list[list[int]] = []

    def spy(spec, method, seeds, *args, **kwargs):
        seen.append(list(seeds))
        return run_case(spec, method, seeds, *args, **kwargs)

    monkeypatch.setattr(verify, "run_case", spy)
    return seen


def test_a_record_stale_by_code_alone_is_restamped_when_seed_0_reproduces(moved, runs) -> None:
    results, path, original = moved
    [(_, why)] = currency.collect(results).stale
    assert why == "made by other code (method, protocol, suite changed)"
    said: list[str] = []
    t0 = time.perf_counter()
    [outcome] = verify.regenerate(results, CPU, say=said.append)
    seconds = time.perf_counter() - t0
    assert outcome.ok and outcome.message == "restamped (seed 0 re-executed: metrics bit-identical)"
    assert runs == [[0]]  # seed 1 was never executed
    record = load_record(path)
    spec = next(s for s in losses.case_specs("smoke") if s.case == CASE)
    now = code_versions(get_method_class("bce"), spec)
    stamp = record["restamp"]
    assert record["code"] == now and stamp["code"] == now and stamp["seed"] == 0
    assert stamp["previous_code"] == {part: "0" * 16 for part in now} and stamp["commit"] and stamp["date"]
    assert record["metrics"] == original["metrics"] and record["evidence"] == original["evidence"]
    assert load_evidence(path, record).keys() == {0, 1}  # the npz is the recorded one (sha256 checked)
    assert currency.collect(results).stale == [] and currency.judge(record).current
    plan, line = said  # the plan first, then one line per job with where the whole run stands (elapsed: any)
    assert plan.startswith("plan (") and "losses" in plan
    assert re.match(rf"\[1/1 · [\dhms]+ · ETA 0s\] restamped {re.escape(str(path))} .* s\)$", line), line
    print(f"\nre-stamp of the 2-seed smoke record: {seconds:.2f} s ({line})")


@pytest.fixture
def seed_0_moves(monkeypatch) -> list[list[int]]:
    """The seed lists verify runs; in a re-execution (no results folder) one metric of seed 0 moves by 1e-9."""
    seen: list[list[int]] = []

    def perturbed(spec, method, seeds, *args, **kwargs):
        seen.append(list(seeds))
        result = run_case(spec, method, seeds, *args, **kwargs)
        if seeds == [0] and args[1] is None:
            result.record["metrics"]["test_acc"]["per_seed"][0] += 1e-9
        return result

    monkeypatch.setattr(verify, "run_case", perturbed)
    return seen


def test_a_record_whose_seed_0_differs_is_rerun_whole(moved, seed_0_moves) -> None:
    results, path, original = moved
    said: list[str] = []
    t0 = time.perf_counter()
    seeds_told: list[str] = []
    [outcome] = verify.regenerate(results, CPU, say=said.append, progress=lambda p: seeds_told.append(p.short()))
    seconds = time.perf_counter() - t0
    assert outcome.ok and outcome.message == "regenerated (ok)"
    assert seed_0_moves == [[0], [0, 1]]  # seed 0 alone, then every seed
    assert [line.split(" · ")[0] for line in seeds_told] == ["seed 1/2", "seed 2/2", "2/2 seeds"]  # the re-run's
    record = load_record(path)
    assert "restamp" not in record and currency.judge(record).current
    assert record["metrics"]["test_acc"] == original["metrics"]["test_acc"]  # the full re-run is deterministic
    assert "seed 0 re-executed differently: seed 0: test_acc recorded" in said[1]
    print(f"\nseed 0 re-executed, then every seed re-run: {seconds:.2f} s ({said[1]})")


def test_a_record_another_worker_brought_up_to_date_is_not_run_again(moved, runs, monkeypatch) -> None:
    results, path, original = moved
    refusal = verify.restamp_refusal

    def another_worker_finishes(record, *args):  # while this run plans, a second worker rewrites the record
        path.write_text(json.dumps(original))
        return refusal(record, *args)

    monkeypatch.setattr(verify, "restamp_refusal", another_worker_finishes)
    [outcome] = verify.regenerate(results, CPU, say=lambda _: None)
    assert outcome.ok and outcome.message == "current already (another run regenerated it)"
    assert runs == [] and load_record(path) == original  # nothing executed, nothing rewritten


def test_restamp_only_leaves_a_record_whose_seed_0_differs_stale(moved, seed_0_moves) -> None:
    results, path, _ = moved
    before = path.read_bytes()
    [outcome] = verify.regenerate(results, CPU, say=lambda _: None, restamp_only=True)
    assert outcome.ok and outcome.message.startswith("left stale (seed 0 re-executed differently")
    assert seed_0_moves == [[0]] and path.read_bytes() == before  # seed 0 alone, and the record untouched
    assert not currency.judge(load_record(path)).current


def test_a_record_whose_case_definition_changed_is_rerun_without_trying_seed_0(moved, runs) -> None:
    results, path, original = moved
    record = json.loads(path.read_text())
    record["fingerprint"] = "f" * 16
    path.write_text(json.dumps(record))
    t0 = time.perf_counter()
    [outcome] = verify.regenerate(results, CPU, say=lambda s: None)
    seconds = time.perf_counter() - t0
    assert outcome.ok and runs == [[0, 1]]
    assert load_record(path)["fingerprint"] == original["fingerprint"]
    print(f"\nfull re-run of the 2-seed smoke record: {seconds:.2f} s")


def test_a_restamp_whose_code_changes_again_is_stale_and_inconsistent_if_edited(moved, runs) -> None:
    results, path, _ = moved
    verify.regenerate(results, CPU, say=lambda s: None)
    record = load_record(path)
    path.write_text(json.dumps({**record, "code": dict(record["code"], suite="1" * 16)}))
    with pytest.raises(RecordError, match="restamp/code"):
        load_record(path)  # a re-stamp vouches for the digests it wrote, not for others


# -- currency independent of the machine's cache -----------------------------------------------------------


def test_an_ssl_encoder_probe_case_does_not_depend_on_the_weights_bytes_or_the_cache(tmp_path, monkeypatch) -> None:
    weights = tmp_path / "0123456789abcdef01234567.safetensors"
    entry = stored_encoder(weights, "simclr/eurosat/smoke/seed0", dataset="eurosat")
    monkeypatch.setitem(sys.modules, "harness.suites.ssl", FakeSSLSuite([entry]))
    case = "probe-eurosat-ssl-simclr-eurosat-smoke-seed0"
    spec = next(s for s in rs.case_specs("smoke") if s.case == case)
    assert spec.params["ssl"] == entry.identity
    stored_encoder(weights, "simclr/eurosat/smoke/seed0", dataset="eurosat")  # trained elsewhere: other bytes
    assert next(s for s in rs.case_specs("smoke") if s.case == case).fingerprint == spec.fingerprint
    # the record is judged from itself, whatever the cache holds: the encoder cached, another one, or none
    record = {"suite": "remote_sensing", "profile": "smoke", "case": case, "task": spec.describe()}
    assert currency.spec_for(record).fingerprint == spec.fingerprint
    other = stored_encoder(tmp_path / "other.safetensors", "byol/eurosat/smoke/seed0", dataset="eurosat")
    monkeypatch.setitem(sys.modules, "harness.suites.ssl", FakeSSLSuite([other]))
    assert currency.spec_for(record).fingerprint == spec.fingerprint
    monkeypatch.setitem(sys.modules, "harness.suites.ssl", None)
    assert currency.spec_for(record).fingerprint == spec.fingerprint
    gone = {**record, "task": {"params": {**spec.params, "ssl": {**entry.identity, "seed": 1}}}}
    assert currency.spec_for(gone).fingerprint != spec.fingerprint  # another encoder: another case


def test_an_ssl_encoder_probe_record_runs_the_ssl_code_and_no_other_probe_does(tmp_path, monkeypatch) -> None:
    entry = stored_encoder(tmp_path / "w.safetensors", "simclr/eurosat/smoke/seed0", dataset="eurosat")
    with monkeypatch.context() as patched:
        patched.setitem(sys.modules, "harness.suites.ssl", FakeSSLSuite([entry]))
        specs = {s.case: s for s in rs.case_specs("smoke")}
    ssl_probe = {p.relative_to(REPO).as_posix() for p in provenance.suite_files(
        specs["probe-eurosat-ssl-simclr-eurosat-smoke-seed0"])}
    builtin = {p.relative_to(REPO).as_posix() for p in provenance.suite_files(specs["probe-eurosat-lite0"])}
    ssl_code = {"baselines/ssl/simclr.py", "harness/protocols/pretrain.py", "harness/suites/ssl.py"}
    assert ssl_code <= ssl_probe  # an edit there stales the probes of SSL encoders (a pure move re-stamps them)
    assert not ssl_code & builtin  # and no other remote-sensing record
    byol = stored_encoder(tmp_path / "b.safetensors", "byol/eurosat/smoke/seed0", dataset="eurosat")
    with monkeypatch.context() as patched:
        patched.setitem(sys.modules, "harness.suites.ssl", FakeSSLSuite([entry, byol]))
        both = [s for s in rs.case_specs("smoke") if s.case.startswith("probe-eurosat-ssl-")]
    judge, frozen = currency.Judge(), get_method_class("frozen")
    digests = {s.case: judge.code_now(frozen, s)["suite"] for s in both}  # one Judge, memoised per encoder's code
    assert digests == {s.case: code_versions(frozen, s)["suite"] for s in both} and len(set(digests.values())) == 2


def test_the_gate_compares_no_committed_record_of_another_case_definition(monkeypatch) -> None:
    old = {**make_record("mnist3v5-noise0", "bce", [0.8, 0.81], profile="smoke"), "fingerprint": "f" * 16}
    monkeypatch.setattr(verify, "rerun", lambda *a: pytest.fail("a record of another case definition was re-run"))
    said: list[str] = []
    assert gate.check_target(gate.Target("losses", "bce", "test"), [(Path("x"), old)], CPU, say=said.append) == []
    assert said[0].startswith("  not compared mnist3v5-noise0: the committed smoke record is stale (task fingerprint")
