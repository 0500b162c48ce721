"""Records (schema, atomic writes) and the leaderboard built from fixture records."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from harness import leaderboard, records
from harness.errors import RecordError
from harness.suites import losses

REPO = Path(__file__).resolve().parent.parent


def make_record(case: str, method: str, per_seed: list[float], profile: str = "standard", **extra) -> dict:
    spec = next(s for s in losses.case_specs(profile) if s.case == case)
    mean = sum(per_seed) / len(per_seed)
    std = (sum((v - mean) ** 2 for v in per_seed) / (len(per_seed) - 1)) ** 0.5 if len(per_seed) > 1 else None
    rec = {
        "schema_version": 1, "suite": "losses", "case": case, "method": method, "family": "loss",
        "profile": profile, "status": "ok", "diverged": None, "seeds": list(range(len(per_seed))),
        "primary_metric": "test_acc", "higher_is_better": True,
        "metrics": {"test_acc": {"per_seed": per_seed, "mean": mean, "std": std, "sem": None},
                    "test_auroc": {"per_seed": per_seed, "mean": mean, "std": std}},
        "timing": {"step_time_median_s": 0.002, "step_time_iqr_s": 0.0001, "samples_per_s": 1000.0,
                   "peak_memory_bytes": 1, "memory_kind": "process_peak_rss"},
        "hparams": {}, "hparam_overrides": {}, "fingerprint": spec.fingerprint, "model_selection": "val",
        "environment": {"device": "cpu (test)", "torch": "x", "harness_version": "0", "git_commit": None,
                        "date": "2026-01-01T00:00:00+00:00"},
    }
    rec.update(extra)
    return rec


def write(results: Path, rec: dict) -> Path:
    return records.write_record(rec, records.record_path(results, rec["suite"], rec["case"], rec["method"],
                                                         rec["profile"], rec.get("hparam_overrides")))


def test_roundtrip_and_layout(tmp_path):
    rec = make_record("mnist3v5-noise0", "bce", [0.9, 0.91, 0.92])
    path = write(tmp_path, rec)
    assert path == tmp_path / "losses" / "mnist3v5-noise0" / "bce__standard.json"
    assert records.load_record(path) == rec


def test_hparam_overrides_get_their_own_file(tmp_path):
    a = records.record_path(tmp_path, "losses", "c", "focal", "smoke", {})
    b = records.record_path(tmp_path, "losses", "c", "focal", "smoke", {"gamma": 1.0})
    c = records.record_path(tmp_path, "losses", "c", "focal", "smoke", {"gamma": 3.0})
    assert len({a, b, c}) == 3 and a.name == "focal__smoke.json"


def test_schema_errors_name_file_and_field(tmp_path):
    rec = make_record("mnist3v5-noise0", "bce", [0.9, 0.91])
    del rec["fingerprint"]
    with pytest.raises(RecordError, match="fingerprint"):
        records.validate(rec, "x.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(RecordError, match="bad.json: not valid JSON"):
        records.load_record(bad)
    rec = make_record("mnist3v5-noise0", "bce", [0.9, 0.91])
    rec["metrics"]["test_acc"]["mean"] = "high"
    bad.write_text(json.dumps(rec))
    with pytest.raises(RecordError, match=r"bad.json: invalid record at metrics/test_acc/mean"):
        records.load_record(bad)


def test_nan_is_refused_not_written(tmp_path):
    rec = make_record("mnist3v5-noise0", "bce", [0.9, 0.91])
    rec["timing"]["samples_per_s"] = float("nan")
    with pytest.raises(ValueError):
        write(tmp_path, rec)
    assert not list(tmp_path.rglob("*.json")) and not list(tmp_path.rglob("*.tmp"))


def test_interrupted_write_keeps_old_record_and_leaves_no_temp(tmp_path, monkeypatch):
    old = make_record("mnist3v5-noise0", "bce", [0.9, 0.91])
    path = write(tmp_path, old)

    def interrupted(src, dst):
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "replace", interrupted)
    with pytest.raises(KeyboardInterrupt):
        write(tmp_path, make_record("mnist3v5-noise0", "bce", [0.5, 0.5]))
    assert records.load_record(path) == old
    assert [p.name for p in path.parent.iterdir()] == [path.name]


def test_leaderboard_from_fixture_records(tmp_path):
    case = "mnist3v5-noise0.2"
    write(tmp_path, make_record(case, "bce", [0.80, 0.81, 0.82]))
    write(tmp_path, make_record(case, "ensloss", [0.85, 0.87, 0.86]))
    write(tmp_path, make_record(case, "hinge", [0.70, 0.72, 0.71]))
    write(tmp_path, make_record(case, "focal", [0.81, 0.80, 0.83]))
    write(tmp_path, make_record(case, "exponential", [0.90, 0.91, 0.92], profile="smoke"))  # not ranked
    stale = make_record(case, "ldr-kl", [0.99, 0.99, 0.99])
    stale["fingerprint"] = "0" * 32
    write(tmp_path, stale)
    md = leaderboard.build_markdown(tmp_path)
    assert md.startswith(leaderboard.HEADER)
    assert "## losses (standard profile)" in md
    section = md.split(f"### losses / `{case}`")[1].split("###")[0]
    rows = [line for line in section.splitlines() if line.startswith("| ") and "---" not in line][1:]
    assert [r.split("|")[1].strip() for r in rows] == ["ensloss", "focal", "bce", "hinge"]  # by test_acc
    assert "0.8600 ± 0.0100" in rows[0] and "better (Δ +0.0500" in rows[0]
    assert "worse" in rows[3] and "equal" in rows[1] and "—" in rows[2]
    assert "ensloss vs bce on test_acc, paired one-sided t-test per case: better in 1, equal in 0, worse in 0" in md
    assert "exponential" not in "\n".join(rows)
    assert "Stale records" in md and "ldr-kl__standard.json`: fingerprint differs" in md


def test_check_detects_stale_file(tmp_path):
    write(tmp_path, make_record("mnist3v5-noise0", "bce", [0.8, 0.82, 0.81]))
    out = tmp_path / "leaderboard.md"
    leaderboard.write(tmp_path, out)
    assert leaderboard.check(tmp_path, out)
    write(tmp_path, make_record("mnist3v5-noise0", "ensloss", [0.8, 0.82, 0.81]))
    assert not leaderboard.check(tmp_path, out)


def test_committed_leaderboard_is_current_and_records_valid():
    """CI's regression gate: every committed record validates and leaderboard.md is regenerated from them."""
    assert leaderboard.check(REPO / "results", REPO / "leaderboard.md"), \
        "leaderboard.md is stale: run `python -m harness leaderboard`"
