"""CPU numerics are pinned on import of harness (harness/cpu_numerics.py), stated in each record, and verify
compares bits only between records made under the same numerics."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch

from harness.checks import verify
from harness.core.environment import cpu_numerics
from harness.cpu_numerics import PINS
from harness.records import currency

PROBE = ("import json, harness, torch; torch.ones(2).sum(); "
         "from harness.core.environment import cpu_numerics; print(json.dumps(cpu_numerics()))")


def numerics_in_child(**env: str) -> dict:
    clean = {k: v for k, v in os.environ.items() if k not in PINS}
    out = subprocess.run([sys.executable, "-c", PROBE], env={**clean, **env}, capture_output=True, text=True,
                         check=True)
    return json.loads(out.stdout)


def test_importing_harness_pins_the_numerics_before_torch_runs_an_operation() -> None:
    if "avx2" not in open("/proc/cpuinfo").read():
        pytest.skip("this CPU has no AVX2: the pin cannot take effect")
    assert numerics_in_child() == {"capability": "AVX2", **PINS}


def test_a_numerics_variable_already_set_wins() -> None:
    got = numerics_in_child(ATEN_CPU_CAPABILITY="default")
    assert got["capability"] == "DEFAULT" and got["ATEN_CPU_CAPABILITY"] == "default"
    assert got["MKL_CBWR"] == PINS["MKL_CBWR"]


def test_records_of_other_numerics_are_not_compared_bit_for_bit(made) -> None:
    path = next(made.rglob("*.json"))
    record = json.loads(path.read_text())
    assert record["environment"]["cpu_numerics"] == cpu_numerics()
    assert verify.other_numerics(record) is None
    unpinned = {**record, "environment": {**record["environment"], "cpu_numerics": None}}
    why = verify.other_numerics(unpinned)
    assert why.startswith("made under CPU numerics not pinned") and "bits compare only under the same" in why
    assert verify.restamp_refusal(unpinned, True, torch.device("cpu")) == why  # re-run, not re-stamped
    assert verify.reexecute(unpinned, torch.device("cpu")).problems == [why]
    assert currency.judge(record).current and not currency.judge(unpinned).current
    assert currency.judge(unpinned).reason.startswith("made under CPU numerics other than the pinned ones")
    assert any("not the pinned ones" in p for p in verify.audit(path, unpinned, made))  # refused in a change
