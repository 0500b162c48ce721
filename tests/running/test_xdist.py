"""pytest-xdist: per-worker devices and threads, dataset groups, and a summary built from every worker's records."""

from __future__ import annotations

import re
import types
from pathlib import Path

import pytest
import torch

import harness
from harness.plugin import data_group
from harness.running import config as hconfig
from harness.running.config import thread_share, worker_device, worker_slot
from harness.suites import losses

SUITE_FILE = '''
import types

from harness.suites import losses


def case_specs(profile):
    return [s for s in losses.case_specs(profile) if s.case.startswith("breast_cancer")]


SUITE = types.SimpleNamespace(NAME="losses", case_specs=case_specs, data_group=lambda spec: spec.case)


def test_losses(harness_case, benchmark):
    harness_case.run(benchmark)
'''


def test_worker_slot_comes_from_xdist_variables(monkeypatch):
    monkeypatch.delenv("PYTEST_XDIST_WORKER", raising=False)
    assert worker_slot() is None
    monkeypatch.setenv("PYTEST_XDIST_WORKER", "gw3")
    monkeypatch.setenv("PYTEST_XDIST_WORKER_COUNT", "4")
    assert worker_slot() == (3, 4)


def test_each_worker_gets_a_gpu_round_robin_and_explicit_devices_stay(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert [worker_device("auto", (i, 4)) for i in range(4)] == ["cuda:0", "cuda:1", "cuda:0", "cuda:1"]
    assert worker_device("cuda", (1, 4)) == "cuda:1"
    assert worker_device("cuda:0", (1, 4)) == "cuda:0" and worker_device("cpu", (1, 4)) == "cpu"
    assert worker_device("auto", None) == "auto"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert worker_device("auto", (1, 4)) == "auto"


def test_cpu_workers_share_the_threads_evenly(monkeypatch):
    assert [thread_share(8, (i, 3)) for i in range(3)] == [2, 2, 2]
    assert thread_share(1, (0, 2)) == 1 and thread_share(6, None) == 6
    before = torch.get_num_threads()
    monkeypatch.setattr(hconfig, "_START_THREADS", 4)
    try:
        hconfig.claim_worker_resources(torch.device("cpu"), (1, 2))
        assert torch.get_num_threads() == 2
        hconfig.claim_worker_resources(torch.device("cpu"), (1, 2))  # idempotent
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


def test_cases_of_one_dataset_share_a_group():
    groups = {s.case: data_group(losses, s) for s in losses.case_specs("smoke")}
    assert groups["mnist3v5-noise0"] == groups["mnist7v9-noise0.2"] == "data-mnist5k"
    assert groups["breast_cancer-noise0"] == "data-breast_cancer"
    custom = types.SimpleNamespace(data_group=lambda spec: spec.case[:5])
    assert data_group(custom, losses.case_specs("smoke")[0]) == "data-mnist"


def test_two_workers_keep_groups_together_and_the_summary_covers_both(pytester: pytest.Pytester, tmp_path,
                                                                      monkeypatch):
    pytester.makepyfile(test_suite=SUITE_FILE)
    monkeypatch.setenv("OMP_NUM_THREADS", "2")  # two workers: one thread each
    monkeypatch.setenv("PYTHONPATH", str(Path(harness.__file__).resolve().parents[1]))  # this checkout's harness
    res = tmp_path / "res"
    result = pytester.runpytest_subprocess("-n", "2", "-v", "--method=erm,bce", f"--results-dir={res}")
    result.assert_outcomes(passed=4)
    out = result.stdout.str()
    workers: dict[str, set[str]] = {}  # group (the case, in this suite) -> workers that ran it
    for gw, case, group in re.findall(r"\[(gw\d)\] .*PASSED .*-(breast_cancer-noise[\d.]+)@data-([\w.-]+)\]", out):
        assert group == case  # the suite's data_group, carried in the id (pytest-xdist#1386)
        workers.setdefault(case, set()).add(gw)
    assert set(workers) == {"breast_cancer-noise0", "breast_cancer-noise0.2"}, out
    assert all(len(w) == 1 for w in workers.values()), out  # a group never splits over workers
    summary = out[out.index("harness results"):]
    for case in ("breast_cancer-noise0 ", "breast_cancer-noise0.2"):
        for method in ("erm", "bce"):
            assert re.search(rf"losses +{case} *{method} +test_acc 0\.\d+ +1 +[\d.]+ ms +ok", summary), summary
    assert "pytest-benchmark turns itself off under xdist" in summary
    from harness.records import iter_records

    records = [r for _, r in iter_records(res)]
    assert len(records) == 4
    assert all(", 1 threads)" in r["environment"]["device"] for r in records)  # half of OMP_NUM_THREADS=2
