"""Methods never see evaluation data: their hooks get a sealed view of the task, and reaching past it is one line."""

from __future__ import annotations

import pytest
import torch

from harness import Method
from harness.errors import MethodError, SealedData
from harness.running.runner import run_case
from harness.suites import losses

CPU = torch.device("cpu")


def breast_cancer():
    return next(s for s in losses.case_specs("smoke") if s.case == "breast_cancer-noise0.2")


class PeeksAtTest(Method):
    """Trains on the test split's labels through ``setup``: the attack a sealed task refuses."""

    name = "peeks-at-test"
    family, protocols = "loss", frozenset({"supervised"})

    def setup(self, task, state):
        test = task.splits["test"].indices
        state.leak = task.data.y[test]


class ReadsSizes(Method):
    name = "reads-sizes"
    family, protocols = "loss", frozenset({"supervised"})

    def setup(self, task, state):
        state.sizes = (task.num_classes, task.num_domains, task.in_chans, task.suite, task.case)


@pytest.mark.parametrize("attr", ["data", "splits", "metrics_fn", "recompute_fn", "model_factory"])
def test_every_route_to_the_data_is_sealed(attr: str):
    view = breast_cancer().build(breast_cancer()).sealed()
    with pytest.raises(SealedData, match=rf"breast_cancer-noise0.2: .*Task\.{attr} is sealed"):
        getattr(view, attr)


def test_a_method_reading_the_test_split_fails_with_one_line(tmp_path):
    with pytest.raises(MethodError) as err:
        run_case(breast_cancer(), PeeksAtTest(), [0], CPU, results_dir=tmp_path)
    assert "Task.splits is sealed" in str(err.value) and "\n" not in str(err.value)
    assert not list(tmp_path.rglob("*.json"))  # nothing written for a refused run


def test_a_method_reading_sizes_runs(tmp_path):
    result = run_case(breast_cancer(), ReadsSizes(), [0], CPU, results_dir=tmp_path)
    assert result.record["status"] == "ok"
