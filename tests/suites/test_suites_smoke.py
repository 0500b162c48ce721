"""Whole suites in the smoke profile, as a user runs them (a fresh pytest process each).

The shift suite runs strict on the real data (CI has it; elsewhere the
``real_data_root`` fixture skips with the reason).
"""

from __future__ import annotations

from tests.factories import suite_records


def test_losses_suite_smoke_ensloss_offline(run_suite, tmp_path):
    out = run_suite(["suites/test_losses.py", "--method=ensloss", "-k", "not cifar"],
                    {"HARNESS_DATA": str(tmp_path / "none")})  # the CIFAR2 cases need real data
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert "8 passed" in out.stdout and "harness results" in out.stdout
    recs = suite_records(tmp_path)
    assert len(recs) == 8 and all(r["status"] == "ok" for r in recs)
    assert all(r["metrics"]["test_acc"]["mean"] > 0.75 for r in recs), [r["metrics"]["test_acc"] for r in recs]


def test_shift_suite_smoke_erm_strict_on_real_data(run_suite, tmp_path, real_data_root):
    out = run_suite(["suites/test_shift.py", "--method=erm", "--strict-data"], {"HARNESS_DATA": str(real_data_root)})
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    recs = {r["case"]: r for r in suite_records(tmp_path)}
    assert {"digits-usps", "colored", "pacs-photo", "pacs-sketch", "rsscn7-scale", "rotated-75deg",
            "pacs_frozen-sketch"} <= set(recs)
    for case, rec in recs.items():
        assert rec["status"] == "ok", case
        assert rec["model_selection"].startswith("training-domain validation"), case
        assert {"id_acc", "ood_acc", "worst_domain_acc", "oracle_ood_acc"} <= set(rec["metrics"]), case
        assert any(k.startswith("ood:") for k in rec["per_domain"]), case
    assert "worst_group_acc" in recs["colored"]["metrics"] and recs["colored"]["primary_metric"] == "worst_group_acc"
    assert set(recs["rsscn7-scale"]["per_domain"]) == {"id:scale1", "id:scale2", "ood:scale3", "ood:scale4"}
