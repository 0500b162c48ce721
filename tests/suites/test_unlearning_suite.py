"""The unlearning suite in the smoke profile, as CI runs it: one method over every case, strict on the real data."""

from __future__ import annotations

import math

from tests.factories import suite_records


def test_unlearning_suite_smoke_strict_on_real_data(run_suite, tmp_path, real_data_root):
    out = run_suite(["suites/test_unlearning.py", "--method=salun", "--strict-data"],
                    {"HARNESS_DATA": str(real_data_root), "HARNESS_CACHE": str(tmp_path / "cache")}, timeout=900)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    recs = {r["case"]: r for r in suite_records(tmp_path)}
    assert set(recs) == {"mnist5k-random10", "mnist5k-class3", "mnist5k-cluster", "cifar10-random10",
                         "cifar10-class1", "cifar10-cluster", "pacs-subpop-sketch-dog"}
    for case, rec in recs.items():
        assert rec["status"] == "ok" and rec["primary_metric"] == "gap", case
        assert {"UA", "RA", "TA", "MIA", "RTE", "gap", "cka_original", "cka_retrain", "knn_forget"} <= set(
            rec["metrics"]), case
        assert {f"MIA_{a}{t}" for a in ("correctness", "entropy", "m_entropy", "prob") for t in ("", "_sd")} <= set(
            rec["metrics"]), case
        assert all(math.isfinite(rec["metrics"][k]["mean"]) for k in ("UA", "RA", "TA", "MIA", "RTE", "gap")), case
        assert {"klom_forget", "klom_retain", "klom_val"} == set(rec["case_metrics"]), case
        assert rec["run"]["n_oracles"] == [2] and rec["task_info"]["unlearning"]["n_oracles"] == 2, case
    assert recs["pacs-subpop-sketch-dog"]["task_info"]["pretrained"]["arch"] == "efficientnet_lite0"
