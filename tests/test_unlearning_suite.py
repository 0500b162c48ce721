"""The unlearning suite in the smoke profile, as CI runs it: one method over every case, strict on the real data."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def test_unlearning_suite_smoke_strict_on_real_data(tmp_path, real_data_root):
    env = dict(os.environ, HARNESS_DATA=str(real_data_root), HARNESS_CACHE=str(tmp_path / "cache"))
    cmd = [sys.executable, "-m", "pytest", "suites/test_unlearning.py", "--method=salun", "--strict-data",
           f"--results-dir={tmp_path / 'results'}", "-q", "-p", "no:cacheprovider", "--benchmark-disable", "-rs"]
    out = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    recs = {r["case"]: r for r in (json.loads(p.read_text()) for p in (tmp_path / "results").rglob("*.json"))}
    assert set(recs) == {"mnist5k-random10", "mnist5k-class3", "cifar10-random10", "cifar10-class1",
                         "pacs-subpop-sketch-dog"}
    for case, rec in recs.items():
        assert rec["status"] == "ok" and rec["primary_metric"] == "gap", case
        assert {"UA", "RA", "TA", "MIA", "RTE", "gap", "cka_original", "cka_retrain", "knn_forget"} <= set(
            rec["metrics"]), case
        assert all(math.isfinite(rec["metrics"][k]["mean"]) for k in ("UA", "RA", "TA", "MIA", "RTE", "gap")), case
        assert {"klom_forget", "klom_retain", "klom_val"} == set(rec["case_metrics"]), case
        assert rec["run"]["n_oracles"] == [2] and rec["task_info"]["unlearning"]["n_oracles"] == 2, case
    assert recs["pacs-subpop-sketch-dog"]["task_info"]["pretrained"]["arch"] == "efficientnet_lite0"
