"""DomainBed-style sweeps: seeded draws, resumable runs, three selection rules that never read test data."""

from __future__ import annotations

import json
import math
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

from harness.cli import main
from harness.core.registry import create_method, get_method_class, method_entries
from harness.core.search import BUDGET_SPACES, Choice, LogUniform, Uniform, draw
from harness.errors import UsageError
from harness.reporting import sweeps as report
from harness.running import sweep
from harness.running.tuning import variant
from harness.suites import shift


@pytest.fixture(scope="module")
def tiny_spec():
    """RotatedMNIST on MNIST-5k (embedded, offline): 3 training domains (0/15/30 deg), 40 images each, 1 epoch."""
    spec = next(s for s in shift.case_specs("smoke") if s.case == "rotated-75deg")
    return variant(spec, {"test": ["45deg", "60deg", "75deg"], "cap": 40, "epochs": 1, "batch_size": 32})


@pytest.fixture(scope="module")
def swept(tiny_spec, tmp_path_factory):
    """One finished sweep: coral, 2 draws x 1 trial, with leave-one-domain-out folds (2 x (1 + 3) runs)."""
    root = tmp_path_factory.mktemp("sweeps")
    done = sweep.sweep(tiny_spec, "coral", draws=2, trials=1, loo=True, root=root)
    return root, done


def test_draws_are_a_function_of_method_case_and_index(tiny_spec):
    cls = get_method_class("irm")
    d0 = sweep.draw_setting(cls, tiny_spec, "small", 0)
    assert d0 == (cls.hparams, {"batch_size": tiny_spec.budget.batch_size, "lr": tiny_spec.budget.lr})
    d1, d1_again, d2 = (sweep.draw_setting(cls, tiny_spec, "small", j) for j in (1, 1, 2))
    assert d1 == d1_again and d1 != d2 and d1 != d0
    other_case = replace(tiny_spec, case="rotated-0deg")
    assert sweep.draw_setting(cls, other_case, "small", 1) != d1
    hp, budget = d1
    assert 1e-1 <= hp["lam"] <= 1e5 and 2e-4 <= hp["anneal_frac"] <= 1.0 and hp["reset_optimizer"] is True
    assert 10**-4.5 <= budget["lr"] <= 10**-2.5 and isinstance(budget["batch_size"], int)
    # each hparam has its own stream: widening the space leaves the other values as they were
    space = {"a": LogUniform(1e-3, 1.0), "b": Uniform(0.0, 1.0)}
    assert draw(space, "s", "c", "m", 3)["a"] == draw({**space, "z": Choice((1, 2))}, "s", "c", "m", 3)["a"]


def test_every_search_space_names_the_methods_own_hparams_and_draws_valid_values(tiny_spec):
    searched = [e.name for e in method_entries()
                if e.family == "dg" and getattr(get_method_class(e.name), "search_space", None)]
    assert {"irm", "vrex", "coral", "groupdro", "mixup", "fishr", "eqrm"} <= set(searched)
    for name in searched:
        cls = get_method_class(name)
        for kind in BUDGET_SPACES:
            for j in range(1, 4):
                hp, _ = sweep.draw_setting(cls, tiny_spec, kind, j)
                create_method(name, hp)  # a drawn value the method refuses would be an HparamError here


def test_leave_one_domain_out_is_refused_where_its_folds_could_not_run_the_method(tiny_spec, tmp_path):
    two = variant(tiny_spec, {"test": ["30deg", "45deg", "60deg", "75deg"]})  # training domains 0 and 15 deg
    with pytest.raises(UsageError, match="needs 2 training domains"):
        sweep.plan(two, "coral", 1, 1, loo=True, root=tmp_path)
    assert len(sweep.plan(two, "erm", 1, 1, loo=True, root=tmp_path)) == 3  # the main run and one per fold


def test_a_sweep_stores_each_run_and_resumes_without_rerunning(swept, tiny_spec):
    root, done = swept
    assert done["runs"] == 8 and done["ran"] == 8 and done["failed"] == 0
    files = sorted(done["folder"].glob("d*_t*.json"))
    assert len(files) == 8 and all(json.loads(f.read_text())["status"] == "ok" for f in files)
    assert (done["folder"] / "space.json").is_file()
    stamps = {f.name: f.stat().st_mtime_ns for f in files}
    again = sweep.sweep(tiny_spec, "coral", draws=2, trials=1, loo=True, root=root)
    assert again["ran"] == 0 and {f.name: f.stat().st_mtime_ns for f in files} == stamps
    # an interrupted run leaves at most a temp file or a torn file: neither counts as done; only it runs again
    victim = done["folder"] / "d001_t0_loo-15deg.json"
    victim.write_text(victim.read_text()[:40])
    (done["folder"] / ".d001_t0.json.abc.tmp").write_text("{")
    third = sweep.sweep(tiny_spec, "coral", draws=2, trials=1, loo=True, root=root)
    assert third["ran"] == 1 and json.loads(victim.read_text())["status"] == "ok"
    assert all(f.stat().st_mtime_ns == stamps[f.name] for f in files if f != victim)


def test_selection_scores_come_from_validation_splits_and_the_fold_domain(swept):
    root, done = swept
    main = json.loads((done["folder"] / "d000_t0.json").read_text())
    assert main["selection"]["val"] == pytest.approx(main["metrics"]["val_acc"])
    assert main["test"] == {"val": main["metrics"]["ood_acc"], "oracle": main["metrics"]["oracle_ood_acc"]}
    fold = json.loads((done["folder"] / "d000_t0_loo-15deg.json").read_text())
    assert fold["identity"]["fold"] == "15deg" and fold["fold_acc"] == pytest.approx(fold["per_domain"]["ood:15deg"])
    assert "id:15deg" not in fold["per_domain"]  # the fold domain was not trained on


def test_the_report_has_a_table_per_rule(swept):
    root, _ = swept
    text, path = report.write_report(root / "shift" / "smoke")
    assert path.read_text() == text
    for title in report.RULES.values():
        assert f"Model selection: {title}" in text
    chosen = report.selections(report.load_runs(root / "shift" / "smoke"))
    assert set(chosen["rule"]) == {"val", "loo", "oracle"} and set(chosen["draws_scored"]) == {2}


def _runs(test_val: list[float]) -> pd.DataFrame:
    """Synthetic runs of one (case, method): 3 draws x 2 trials and 2 folds per trial."""
    rows = []
    for d in range(3):
        for t in range(2):
            base = {"case": "c", "method": "m", "draw": d, "trial": t, "status": "ok", "primary_metric": "ood_acc",
                    "hparams": {"h": d}, "budget": {}}
            rows.append({**base, "fold": None, "sel_val": [0.5, 0.7, 0.6][d], "sel_oracle": [0.9, 0.1, 0.2][d],
                         "fold_acc": math.nan, "test_val": test_val[d] + 0.01 * t, "test_oracle": test_val[d]})
            for f in ("a", "b"):
                rows.append({**base, "fold": f, "sel_val": 0.0, "sel_oracle": 0.0, "fold_acc": [0.2, 0.3, 0.8][d],
                             "test_val": 1.0, "test_oracle": 1.0})
    return pd.DataFrame(rows, columns=report.COLUMNS)


def test_no_rule_reads_test_metrics_to_choose():
    expected = {"val": 1, "oracle": 0, "loo": 2}
    for test_val in ([0.1, 0.2, 0.3], [0.9, 0.0, 0.0], [0.0, 0.0, 0.9], list(np.random.default_rng(0).random(3))):
        runs = _runs(test_val)
        for rule, want in expected.items():
            got = report.select(runs, rule)
            assert got["draw"] == want, (rule, test_val)
            assert got["mean"] == pytest.approx(test_val[want] + (0.005 if rule != "oracle" else 0.0))
            assert got["n"] == 2
    # a draw with a missing trial or fold takes no part
    runs = _runs([0.1, 0.2, 0.3])
    runs = runs[~((runs["draw"] == 2) & (runs["fold"] == "b") & (runs["trial"] == 1))]
    assert report.select(runs, "loo")["draw"] == 1
    assert report.select(runs[runs["fold"].isna()], "loo") is None


def test_the_cli_prints_the_tables_of_finished_sweeps(swept, capsys):
    root, _ = swept
    assert main(["sweep", "--report", "--root", str(root)]) == 0
    out = capsys.readouterr().out
    assert out.count("## Model selection:") == 3 and "coral" in out and str(root / "shift" / "smoke") in out
    assert main(["sweep", "--root", str(root)]) == 2  # without --report it needs --case and --method
