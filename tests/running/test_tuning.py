"""Settings are chosen on tuning seeds by a selection metric, never on reported data; records cite the choice."""

from __future__ import annotations

import pytest
import torch

from harness.core.registry import create_method
from harness.errors import UsageError
from harness.running.runner import run_case
from harness.running.tuning import tune, variant
from harness.suites import losses, shift
from harness.suites.seeds import TUNING_SEED_START, read_tuning

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


def test_pretrained_pacs_standard_settings_are_the_tuned_ones():
    cases = [s for s in shift.case_specs("standard") if s.case.startswith("pacs_pretrained-")]
    assert len(cases) == 4
    for spec in cases:
        tuned = read_tuning("shift", spec.case, "standard")
        assert tuned is not None, f"docs/tuning/shift__{spec.case}__standard.json is missing"
        assert tuned["metric"] == "val_acc" and min(tuned["seeds"]) >= TUNING_SEED_START
        for key, value in tuned["chosen"].items():
            assert getattr(spec.budget, key, spec.params.get(key)) == value, (spec.case, key)
