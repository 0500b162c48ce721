"""Issue 29 item 4: a record remembers the --method-module file its method came from, and `report` loads it."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap

import pytest
import torch

from harness.core.digest import REPO
from harness.core.registry import create_method, load_method_module
from harness.records import iter_records
from harness.records.currency import load_recorded_methods, recorded_modules
from harness.running.runner import run_case
from harness.suites import losses

SOURCE = '''
from harness import Method, register_method
from harness.core.functional import cross_entropy


@register_method("origin-user-loss")
class OriginUserLoss(Method):
    family, protocols = "loss", frozenset({"supervised"})

    def loss(self, logits, batch, state):
        return cross_entropy(logits, batch.y)
'''


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    """A real smoke record of a --method-module method (breast cancer, one seed)."""
    root = tmp_path_factory.mktemp("origin")
    source = root / "mine" / "origin_user_loss.py"
    source.parent.mkdir()
    source.write_text(textwrap.dedent(SOURCE))
    load_method_module(source)
    spec = next(s for s in losses.case_specs("smoke") if s.case == "breast_cancer-noise0")
    results = root / "results"
    run_case(spec, create_method("origin-user-loss"), [0], torch.device("cpu"), results)
    return source, results


def test_the_record_names_the_module(made):
    source, results = made
    ((_, record),) = iter_records(results)
    assert record["run"]["method_module"] == str(source.resolve())
    assert not list(results.rglob("*.lock"))  # no lock file left beside the record (item 4)


def test_a_builtin_method_names_no_module(tmp_path):
    spec = next(s for s in losses.case_specs("smoke") if s.case == "breast_cancer-noise0")
    rec = run_case(spec, create_method("bce"), [0], torch.device("cpu")).record
    assert "method_module" not in rec["run"]


def _report(results, *extra):
    done = subprocess.run([sys.executable, "-m", "harness", "report", str(results), *extra], cwd=REPO,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    return done


@pytest.mark.slow
def test_report_loads_the_recorded_module_in_a_fresh_process(made):
    """Minutes-old records of a --method-module method are current in `report` without passing the module."""
    source, results = made
    done = _report(results)
    assert "origin-user-loss (stale)" not in done.stdout and "| origin-user-loss" in done.stdout
    assert f"loaded origin-user-loss from {source.resolve()}" in done.stderr
    off = _report(results, "--no-recorded-modules")
    assert "origin-user-loss (stale)" in off.stdout and "not registered here" in off.stdout


def test_recorded_modules_skip_registered_methods(made):
    source, results = made
    records = [r for _, r in iter_records(results)]
    assert recorded_modules(records) == {}  # registered in this process already: nothing to load
    unknown = [{**r, "method": "not-loaded-here"} for r in records]
    assert recorded_modules(unknown) == {str(source.resolve()): ["not-loaded-here"]}


def test_a_module_inside_the_results_folder_or_gone_is_not_loaded(tmp_path, made):
    """Records never bring code: a file inside the folder being read is not loaded; a missing one is named."""
    source, results = made
    copy = tmp_path / "results"
    shutil.copytree(results, copy)
    ((path, record),) = iter_records(copy)
    inside = copy / "evil_user_loss.py"
    inside.write_text(textwrap.dedent(SOURCE).replace("origin-user-loss", "evil-user-loss"))
    for module in (inside, tmp_path / "gone.py"):
        record = {**record, "method": "evil-user-loss", "run": {**record["run"], "method_module": str(module)}}
        path.write_text(json.dumps(record))
        said: list[str] = []
        assert load_recorded_methods(copy, say=said.append) == []
        assert ("inside the results folder" if module == inside else "which is not here") in said[0]
