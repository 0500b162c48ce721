"""Issue 29 item 5: a project's own CI. docs/ci-example.yml's commands, parsed from the YAML, run on a tiny
embedded case in a scratch project: the suites with the project's method (CI=true, --no-strict-data), the gate
against the project's committed records (passes unchanged, fails a degraded method) and the report."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from harness.checks.gate import case_key, compare_folders, same_case
from harness.core.digest import REPO

yaml = pytest.importorskip("yaml")

EXAMPLE = REPO / "docs" / "ci-example.yml"

MY_LOSS = '''
from harness import Method, register_method
from harness.core.functional import cross_entropy


@register_method("my-loss")
class MyLoss(Method):
    """A user's loss, kept in the user's project."""
    family, protocols = "loss", frozenset({"supervised"})

    def loss(self, logits, batch, state):
        return {body}
'''
GOOD, BROKEN = "cross_entropy(logits, batch.y)", "(logits * 0.0).sum()"  # BROKEN: no gradient, chance accuracy


def workflow() -> tuple[dict[str, str], list[dict]]:
    doc = yaml.safe_load(EXAMPLE.read_text())
    (job,) = doc["jobs"].values()
    return {k: str(v) for k, v in doc["env"].items()}, job["steps"]


def test_the_example_is_a_workflow_with_the_documented_pieces():
    env, steps = workflow()
    runs = " ".join(s.get("run", "") for s in steps)
    uses = [s.get("uses", "") for s in steps]
    assert any(u.startswith("actions/checkout") for u in uses) and any(u.startswith("actions/setup-python")
                                                                       for u in uses)
    assert "pip install" in runs and "--no-strict-data" in runs and "--profile=smoke" in runs
    assert "harness gate --new $NEW --results-dir $RECORDS" in runs and "harness report $NEW" in runs
    assert {"METHOD", "METHOD_MODULE", "SUITE", "RECORDS", "NEW"} <= set(env)


def run_steps(project: Path, steps: list[dict], env: dict[str, str], only: str | None = None) -> list:
    """The workflow's `run:` steps in ``project`` with bash (installing is this checkout's job: skipped)."""
    done = []
    for step in steps:
        command = step.get("run")
        if command is None or "pip install" in command or (only and only not in command):
            continue
        step_env = {k: v.replace("${{ runner.temp }}", str(project.parent)) for k, v in step.get("env", {}).items()}
        done.append(subprocess.run(["bash", "-e", "-c", command], cwd=project, env={**env, **step_env},
                                   capture_output=True, text=True, timeout=900))
    return done


@pytest.mark.slow
def test_the_workflow_commands_run_and_gate_a_regression(tmp_path):
    wf_env, steps = workflow()
    project = tmp_path / "project"
    project.mkdir()
    (project / ".harness").symlink_to(REPO)  # what the "Check out the harness" step puts there
    module = project / wf_env["METHOD_MODULE"]
    module.write_text(textwrap.dedent(MY_LOSS.replace("{body}", GOOD)))
    env = {**os.environ, **wf_env, "CI": "true",  # as GitHub Actions sets it
           # "Install the harness": this checkout, with the interpreter running this test as `python`
           "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep),
           "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]),
           "HARNESS_DATA": str(tmp_path / "no-data"),  # a runner without the real data
           "PYTEST_ADDOPTS": "-k breast_cancer-noise0 -p no:randomly"}  # one tiny embedded case
    # once: the project's committed records, made with the workflow's own command into $RECORDS
    (made,) = run_steps(project, steps, {**env, "NEW": wf_env["RECORDS"]}, only="pytest")
    assert made.returncode == 0, made.stdout + made.stderr
    assert list((project / wf_env["RECORDS"]).rglob("my-loss__smoke.json"))

    run, gate, report = run_steps(project, steps, env)
    assert run.returncode == 0, run.stdout + run.stderr
    assert gate.returncode == 0 and "gate: passed" in gate.stdout, gate.stdout + gate.stderr
    assert "breast_cancer-noise0 my-loss (smoke): test_acc" in gate.stdout
    assert report.returncode == 0 and (project / "out" / "harness-report" / "index.html").is_file(), report.stderr
    assert "my-loss (stale)" not in (project / "out" / "harness-report" / "report.md").read_text()

    module.write_text(textwrap.dedent(MY_LOSS.replace("{body}", BROKEN)))  # a change that breaks the method
    run, gate, _ = run_steps(project, steps, env)
    assert run.returncode == 0, run.stdout + run.stderr
    assert gate.returncode == 1 and "REGRESSION" in gate.stderr and "test_acc regressed" in gate.stderr


def _rec(case: str, acc: list[float], **task) -> dict:
    return {"suite": "imagefolder", "case": case, "method": "my-loss", "hparam_overrides": {}, "profile": "smoke",
            "fingerprint": json.dumps(task, sort_keys=True), "data_fingerprint": "d1", "task": task,
            "seeds": list(range(len(acc))), "status": "ok", "primary_metric": "test_acc", "higher_is_better": True,
            "metrics": {"test_acc": {"per_seed": acc, "mean": sum(acc) / len(acc), "higher_is_better": True}},
            "timing": {}}


def test_user_folders_pair_across_machines_by_content():
    """A user folder's case name holds a hash of its path, and its listing the files' times: on a CI runner both
    differ from the laptop's. Records pair by the name without the hash, and compare when the data is the same."""
    laptop = _rec("imagefolder-digits-1a2b3c", [0.9, 0.9], params={"path": "/home/me/d", "listing": "x", "size": 32})
    runner = _rec("imagefolder-digits-9f8e7d", [0.9, 0.9],
                  params={"path": "/home/runner/d", "listing": "y", "size": 32})
    assert case_key(laptop) == case_key(runner) and same_case(laptop, runner) is None
    assert "images differ" in same_case(laptop, {**runner, "data_fingerprint": "d2"})
    other = _rec("imagefolder-digits-9f8e7d", [0.9], params={"path": "/home/runner/d", "listing": "y", "size": 64})
    assert "case definition differs" in same_case(laptop, other)


def test_an_empty_run_does_not_pass(tmp_path):
    (tmp_path / "committed").mkdir()
    (tmp_path / "new").mkdir()
    failures = compare_folders(tmp_path / "committed", tmp_path / "new", say=lambda _: None)
    assert failures and "did the suites run" in failures[0]
