"""Records (schema, atomic writes) and the leaderboard built from fixture records."""

from __future__ import annotations

import json
import os

import pytest

from harness import records
from harness.core.digest import REPO
from harness.errors import RecordError
from harness.reporting import leaderboard, site
from harness.suites import case_specs, get_suite, remote_sensing
from tests.factories import make_record, rendered, table, write


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
    write(tmp_path, make_record(case, "bce", [0.80, 0.81, 0.82, 0.80, 0.81]))
    write(tmp_path, make_record(case, "ensloss", [0.85, 0.87, 0.86, 0.85, 0.86]))
    write(tmp_path, make_record(case, "hinge", [0.70, 0.72, 0.71, 0.70, 0.71]))
    write(tmp_path, make_record(case, "focal", [0.81, 0.80, 0.83, 0.80, 0.82]))
    write(tmp_path, make_record(case, "exponential", [0.90, 0.91, 0.92], profile="smoke"))  # not ranked
    stale = make_record(case, "ldr-kl", [0.99, 0.99, 0.99, 0.99, 0.99])
    stale["fingerprint"] = "0" * 32
    write(tmp_path, stale)
    md = rendered(tmp_path)
    assert md.startswith(leaderboard.HEADER)
    assert "## losses (standard profile)" in md and "Holm's step-down correction over the comparisons" in md
    rows = table(md, f"### losses / `{case}`")
    head, rows = rows[0], {r[0]: dict(zip(rows[0], r)) for r in rows[1:]}
    assert list(rows) == ["ensloss", "focal", "bce", "hinge"]  # by test_acc
    assert head[:2] == ["method", "test_acc"] and "p (Holm)" in head and "p" in head
    assert rows["ensloss"]["test_acc"] == "0.8580 ± 0.0084" and rows["ensloss"]["Δ vs bce"] == "+0.0500"
    assert rows["ensloss"]["verdict"] == "descriptive: 5 seeds cannot reach the level" == rows["hinge"]["verdict"]
    assert rows["ensloss"]["Δ interval"].startswith("range [")  # descriptive: the spread over seeds, not a test
    assert rows["bce"]["verdict"] == "baseline"
    assert rows["ensloss"]["p"] == "0.062"  # 2/2^5: the smallest exact p at 5 seeds
    assert "cannot reject at 5 seeds in 1" not in md  # no finding that is true by construction
    assert "exponential" not in "\n".join(rows)
    assert "Stale records" in md and "ldr-kl__standard.json`: task fingerprint differs" in md
    n_cases = len(case_specs(get_suite("losses"), "standard"))
    assert f"Coverage: 4 record(s), 4 method(s), 1 case(s) of the {n_cases} the suite declares at `standard`" in md
    assert "no records for `mnist3v5-noise0`" in md  # a partial run says which cases it left out


@pytest.mark.parametrize("store_holds_encoder", [False, True])
def test_coverage_counts_stored_model_cases_apart_so_it_reads_the_same_on_every_machine(
        monkeypatch, tmp_path, store_holds_encoder):
    """Remote sensing declares an SSL-encoder probe only where the SSL store holds that encoder (here, not in CI):
    the coverage line counts those cases apart, so the committed leaderboard reads the same on both machines."""
    monkeypatch.setenv("HARNESS_CACHE", str(tmp_path))  # an empty store
    if store_holds_encoder:
        held = remote_sensing.SSLEncoder("simclr-eurosat-standard-seed0", {"method": "simclr"}, 3, {}, None)
        monkeypatch.setattr(remote_sensing, "ssl_encoders", lambda profile=None: [held])
    suite = get_suite("remote_sensing")
    specs = case_specs(suite, "standard")
    assert any("ssl" in s.params for s in specs) == store_holds_encoder
    builtin = [s.case for s in specs if "ssl" not in s.params]
    recs = [{"case": builtin[0], "method": "frozen", "task": {"params": {}}},
            {"case": "probe-eurosat-ssl-simclr-eurosat-standard-seed0", "method": "frozen",
             "task": {"params": {"ssl": {"method": "simclr"}}}}]
    assert leaderboard.coverage_line(suite, "standard", recs) == (
        f"Coverage: 2 record(s), 1 method(s), 1 case(s) of the {len(builtin)} the suite declares at `standard`, and "
        "1 case(s) on stored models (declared where this machine's store holds them, so counted apart); no records "
        "for " + ", ".join(f"`{c}`" for c in builtin[1:]) + ".")


def test_check_detects_stale_file(tmp_path):
    results = tmp_path / "results"
    write(results, make_record("mnist3v5-noise0", "bce", [0.8, 0.82, 0.81, 0.8, 0.8]))
    out = tmp_path / "leaderboard.md"
    site.write_markdown(results, out)
    assert site.check_markdown(results, out)
    write(results, make_record("mnist3v5-noise0", "ensloss", [0.8, 0.82, 0.81, 0.8, 0.8]))
    assert not site.check_markdown(results, out)


def test_committed_leaderboard_is_current_and_records_valid():
    """CI's regression gate: every committed record validates and leaderboard.md is regenerated from them."""
    assert site.check_markdown(REPO / "results", REPO / "leaderboard.md"), \
        "leaderboard.md is stale: run `python -m harness leaderboard`"
