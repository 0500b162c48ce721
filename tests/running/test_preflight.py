"""Issue 29 item 2: nothing that could be refused before training fails after it (when the record is written)."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from harness.core.method import Method
from harness.errors import HparamError, UsageError
from harness.records import unrecordable
from harness.running.config import make_config
from harness.running.runner import run_case
from harness.suites import losses

METHOD_FILE = '''
from harness import Method, register_method


@register_method("loose-hparams")
class Loose(Method):
    family, protocols = "loss", frozenset({"supervised"})
    hparams = dict(extra=None, table={"a": 1.0}, epsilon=1e-8)
'''


@pytest.fixture(scope="module")
def loose(tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("mod") / "loose.py"
    path.write_text(METHOD_FILE)
    return str(path)


@pytest.mark.parametrize("value", ["1e999", "-1e999", "[1.0, 1e999]"])
def test_an_infinite_hparam_is_refused_at_parse_time(loose, value):
    with pytest.raises(HparamError, match="not (a )?finite"):
        make_config("loose-hparams", hparams=[f"epsilon={value}" if "[" not in value else f"extra={value}"],
                    method_modules=[loose])


@pytest.mark.parametrize("item, why", [
    ("extra=1e999", "not finite"),                 # a None default takes any literal: inf is caught all the same
    ("extra={1, 2}", "JSON can store"),             # a set
    ("extra=1j", "JSON can store"),                 # a complex number
    ("table={'a': 1e999}", "not finite"),          # inside a dict
    ("extra={(1, 2): 3}", "JSON can store"),        # a key JSON cannot hold
])
def test_any_value_the_record_cannot_hold_is_refused_at_parse_time(loose, item, why):
    with pytest.raises(HparamError, match=why):
        make_config("loose-hparams", hparams=[item], method_modules=[loose])


def test_finite_values_pass(loose):
    cfg = make_config("loose-hparams", hparams=["epsilon=1e-6", "table={'a': 2.0, 'b': [1, 2]}"],
                      method_modules=[loose])
    assert cfg.overrides["loose-hparams"]["table"] == {"a": 2.0, "b": [1, 2]}


def test_unrecordable_says_why():
    assert unrecordable({"a": [1, "x", None, True]}) is None
    assert "not finite" in unrecordable(float("nan"))
    assert "JSON can store" in unrecordable(object())


def test_run_case_refuses_before_building_the_task(tmp_path):
    """A Python caller that skips the parser: the runner refuses before the task is built (no data, no training)."""
    built = []
    spec = next(s for s in losses.case_specs("smoke") if s.case == "breast_cancer-noise0")

    def build(s):
        built.append(s)
        raise AssertionError("the task was built")

    spec = dataclasses.replace(spec, build=build)

    class Bad(Method):
        name, family, protocols = "bad-default", "loss", frozenset({"supervised"})
        hparams = dict(scale=float("inf"))  # a default the method ships: no parser saw it

    method = Bad()
    with pytest.raises(HparamError, match="refused before training"):
        run_case(spec, method, [0], torch.device("cpu"), tmp_path / "results")

    class Nameless(Method):
        family, protocols = "loss", frozenset({"supervised"})

    with pytest.raises(UsageError, match="register it"):
        run_case(spec, Nameless(), [0], torch.device("cpu"), tmp_path / "results")
    assert not built and not list((tmp_path / "results").rglob("*.json"))
