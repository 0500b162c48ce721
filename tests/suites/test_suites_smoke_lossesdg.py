"""Smoke runs of the losses suite's EnsLoss-regime cases and the shift suite's new cases and methods, strict on the
real data (a fresh pytest process each, as a user runs them)."""

from __future__ import annotations

from tests.factories import suite_records


def test_losses_regime_cases_smoke_strict(run_suite, tmp_path, real_data_root):
    out = run_suite(["suites/test_losses.py", "--method=ensloss,exponential", "-k", "cifar", "--strict-data"],
                    {"HARNESS_DATA": str(real_data_root)})
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert "smoke numbers check the plumbing" in out.stdout
    recs = suite_records(tmp_path)
    assert {r["case"] for r in recs} == {"cifar3v5-noise0", "cifar3v5-noise0.2"}
    for rec in recs:
        assert rec["status"] == "ok" and rec["task"]["budget"]["selection"] == "last"
        assert {"test_acc", "train_acc", "gap", "test_auroc"} <= set(rec["metrics"])
        assert rec["run"].get("method_budget") == ({"grad_clip": 10.0} if rec["method"] == "exponential" else None)


def test_shift_new_cases_and_unlabeled_methods_smoke_strict(run_suite, tmp_path, real_data_root):
    # the existing shift smoke run covers the new cases with erm; here the new methods on a 10-class case
    out = run_suite(["suites/test_shift.py", "--method=dann,pseudo-label,divdis,ensloss-mc,ensloss", "-k",
                     "rotated-75", "--strict-data"], {"HARNESS_DATA": str(real_data_root)})
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    # binary-only ensloss on the 10-class case is deselected at collection, counted in one line
    assert "deselected 1 case the method does not take part in (binary-only on multi-class: shift 1)" in out.stdout
    recs = {r["method"]: r for r in suite_records(tmp_path)}
    assert set(recs) == {"dann", "pseudo-label", "divdis", "ensloss-mc"}
    assert all(r["status"] == "ok" and r["case"] == "rotated-75deg" for r in recs.values())
    assert any("this project's extension" in n for n in recs["ensloss-mc"]["notes"])
