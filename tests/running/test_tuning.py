"""Settings are chosen on tuning seeds by a selection metric, never on reported data; records cite the choice."""

from __future__ import annotations

import pytest
import torch

from harness.core.registry import create_method
from harness.errors import UsageError
from harness.running.runner import run_case
from harness.running.tuning import tune, variant
from harness.suites import losses
from harness.suites.seeds import TUNING_SEED_START

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def bc_spec():
    return next(s for s in losses.case_specs("smoke") if s.case == "breast_cancer-noise0")


def test_variant_sets_budget_fields_and_case_params_and_names_a_wrong_key(bc_spec):
    v = variant(bc_spec, {"lr": 0.123})
    assert v.budget.lr == 0.123 and v.params == bc_spec.params and v.fingerprint != bc_spec.fingerprint
    with pytest.raises(UsageError, match="neither a budget field nor a parameter"):
        variant(bc_spec, {"nope": 1})


def test_tune_picks_the_best_selection_metric_on_tuning_seeds_only(bc_spec):
    with pytest.raises(UsageError, match="can be reported"):
        tune(bc_spec, create_method("bce"), {"lr": [1e-3]}, "val_acc", [0], CPU)
    result = tune(bc_spec, create_method("bce"), {"lr": [1e-9, 1e-2]}, "val_acc", [TUNING_SEED_START], CPU)
    means = [r["mean"] for r in result["rows"]]
    assert result["chosen"] == result["rows"][int(max(range(2), key=lambda i: (means[i], -i)))]["setting"]
    assert means[1] > means[0]  # a learning rate of 1e-9 learns nothing in a smoke budget
    assert result["seeds"] == [TUNING_SEED_START] and result["metric"] == "val_acc"


def test_records_never_report_a_tuning_seed(bc_spec, tmp_path):
    with pytest.raises(UsageError, match="tuning seeds"):
        run_case(bc_spec, create_method("bce"), [TUNING_SEED_START], CPU, results_dir=tmp_path)

