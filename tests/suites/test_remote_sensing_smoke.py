"""The remote-sensing suite in the smoke profile as a user runs it (a fresh pytest process), strict on the
shared data: ``frozen`` runs the probe cases, ``erm`` the supervised ones, and each skips the other's cases."""

from __future__ import annotations

from tests.factories import suite_records


def test_remote_sensing_suite_smoke_strict_on_real_data(run_suite, tmp_path, real_data_root):
    out = run_suite(["suites/test_remote_sensing.py", "--method=frozen,erm", "--strict-data"],
                    {"HARNESS_DATA": str(real_data_root), "HARNESS_CACHE": str(tmp_path / "cache")}, timeout=900)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert "9 passed, 9 deselected" in out.stdout, out.stdout[-2000:]  # mismatches
    recs = {(r["case"], r["method"]): r for r in suite_records(tmp_path)}
    probe = {c for c, m in recs if m == "frozen"}
    assert probe == {f"probe-{d}-{e}" for d in ("eurosat", "rsscn7", "SYNTHETIC-ms") for e in ("random", "lite0")}
    assert {c for c, m in recs if m == "erm"} == {"rsscn7-scale", "eurosat", "SYNTHETIC-ms-haze"}
    for (case, method), rec in recs.items():
        assert rec["status"] == "ok", case
        if method == "frozen":
            grid = rec["task_info"]["grid"]
            assert len(grid) >= 8 and {g.split("/")[1] for g in grid} == {"divide", "dataset", "imagenet", "minmax"}
            assert all(f"{p}@{g}" in rec["metrics"] for p in ("knn5", "knn20", "linear") for g in grid), case
            assert {"fewshot_lr@1", "fewshot_nb@1", "swing:linear"} <= set(rec["metrics"]), case
            assert rec["task_info"]["synthetic"] == ("SYNTHETIC" in case), case
    assert recs[("probe-eurosat-lite0", "frozen")]["task_info"]["encoder"]["sha256"]
    assert recs[("probe-SYNTHETIC-ms-lite0", "frozen")]["task_info"]["encoder"]["in_chans"] == 13
    assert set(recs[("rsscn7-scale", "erm")]["per_domain"]) == {"id:scale1", "id:scale2", "ood:scale3", "ood:scale4"}
    assert "test_acc" in recs[("eurosat", "erm")]["metrics"]
