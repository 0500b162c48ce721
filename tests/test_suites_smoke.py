"""Whole suites in the smoke profile, as a user runs them (a fresh pytest process each).

The shift suite runs strict on the real data (CI has it; elsewhere the
``real_data_root`` fixture skips with the reason).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def run_suite(args: list[str], tmp_path: Path, env_extra: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    env = dict(os.environ, **(env_extra or {}))
    cmd = [sys.executable, "-m", "pytest", *args, f"--results-dir={tmp_path / 'results'}", "-q", "-p",
           "no:cacheprovider", "--benchmark-disable", "-rs"]
    return subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=1500)


def records(tmp_path: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted((tmp_path / "results").rglob("*.json"))]


def test_losses_suite_smoke_ensloss_offline(tmp_path):
    out = run_suite(["suites/test_losses.py", "--method=ensloss", "-k", "not cifar"], tmp_path,
                    {"HARNESS_DATA": str(tmp_path / "none")})  # the CIFAR2 cases need real data
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert "8 passed" in out.stdout and "harness results" in out.stdout
    recs = records(tmp_path)
    assert len(recs) == 8 and all(r["status"] == "ok" for r in recs)
    assert all(r["metrics"]["test_acc"]["mean"] > 0.75 for r in recs), [r["metrics"]["test_acc"] for r in recs]


def test_shift_suite_smoke_erm_strict_on_real_data(tmp_path, real_data_root):
    out = run_suite(["suites/test_shift.py", "--method=erm", "--strict-data"], tmp_path,
                    {"HARNESS_DATA": str(real_data_root)})
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    recs = {r["case"]: r for r in records(tmp_path)}
    assert {"digits-usps", "colored", "pacs-photo", "pacs-sketch", "rsscn7-scale", "rotated-75deg"} <= set(recs)
    for case, rec in recs.items():
        assert rec["status"] == "ok", case
        assert rec["model_selection"].startswith("training-domain validation"), case
        assert {"id_acc", "ood_acc", "worst_domain_acc", "oracle_ood_acc"} <= set(rec["metrics"]), case
        assert any(k.startswith("ood:") for k in rec["per_domain"]), case
    assert "worst_group_acc" in recs["colored"]["metrics"] and recs["colored"]["primary_metric"] == "worst_group_acc"
    assert set(recs["rsscn7-scale"]["per_domain"]) == {"id:scale1", "id:scale2", "ood:scale3", "ood:scale4"}
