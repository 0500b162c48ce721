"""``python -m harness launch``: job planning, requeue with resume, and one task through submitit's local executor."""

from __future__ import annotations

from dataclasses import replace

import pytest
import submitit

from harness import Method, register_method
from harness.cli import build_parser
from harness.core.speed import SpeedOptions
from harness.errors import UsageError
from harness.records import load_record
from harness.running.launch import CaseJob, JobRunner, collect, executor_for, parse_slurm_extra, plan_jobs, run_job
from harness.suites import case_specs, get_suite


@register_method("test-launch-openset")
class OpenSetOnly(Method):
    family, protocols = "osr", frozenset({"openset"})


def test_plan_has_one_task_per_case_and_method_and_says_what_it_left_out(tmp_path):
    jobs, left_out = plan_jobs(["losses"], "erm,focal,test-launch-openset", seeds=2, results_dir=str(tmp_path),
                               cases=["breast_cancer-*"], hparams=["focal.gamma=1"],
                               speed=SpeedOptions(precision="bf16"))
    assert [(j.case, j.method) for j in jobs] == [("breast_cancer-noise0", "erm"), ("breast_cancer-noise0", "focal"),
                                                 ("breast_cancer-noise0.2", "erm"), ("breast_cancer-noise0.2", "focal")]
    assert all(j.seeds == (0, 1) and j.speed.precision == "bf16" and not j.resume for j in jobs)
    assert [j.overrides for j in jobs[:2]] == [(), (("gamma", 1.0),)]  # typed once, before submission
    assert len(left_out) == 2 and all("test-launch-openset: skipped" in line for line in left_out)
    with pytest.raises(UsageError, match="no cases matched"):
        plan_jobs(["losses"], "erm", cases=["nothing-like-this"])
    with pytest.raises(UsageError, match="unknown method"):
        plan_jobs(["losses"], "ermm")


def test_requeued_task_comes_back_with_resume():
    job = CaseJob("losses", "breast_cancer-noise0", "erm", "smoke", (0,), "results")
    again = JobRunner().checkpoint(job)
    assert isinstance(again, submitit.helpers.DelayedSubmission)
    assert again.args == (replace(job, resume=True),) and isinstance(again.function, JobRunner)


def test_bad_executor_and_slurm_args_are_clear_errors(tmp_path):
    with pytest.raises(UsageError, match="--executor 'pbs'"):
        executor_for("pbs", tmp_path, 0, 1, 5)
    with pytest.raises(UsageError, match="expected KEY=VALUE"):
        parse_slurm_extra(["account"])
    assert parse_slurm_extra(["account=ml", "constraint=a100|h100"]) == {"account": "ml", "constraint": "a100|h100"}
    args = build_parser().parse_args(["launch", "--suite", "shift", "--seeds", "3", "--compile"])
    assert (args.executor, args.compile, args.precision, args.gpus) == ("slurm", "inductor", "fp32", None)


def test_local_executor_runs_a_task_and_resume_keeps_its_record(tmp_path, monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    results = tmp_path / "results"
    jobs, _ = plan_jobs(["losses"], "erm", results_dir=str(results), cases=["breast_cancer-noise0"])
    executor = executor_for("local", tmp_path / "logs", gpus=0, cpus=1, timeout_min=5)
    done, notes = collect(executor.map_array(JobRunner(), jobs))
    assert notes == [] and len(done) == 1
    record = load_record(done[0].path)
    assert done[0].path.parent.parent.parent == results and record["status"] == "ok" and record["seeds"] == [0]
    # a requeued task finds the record and keeps it; planning with --resume submits nothing
    assert run_job(replace(jobs[0], resume=True))["status"] == "resumed"
    again, left_out = plan_jobs(["losses"], "erm", results_dir=str(results), cases=["breast_cancer-noise0"],
                                resume=True)
    assert again == [] and "is done" in left_out[0]


def test_launch_and_pytest_run_the_same_seeds():
    """One seed policy (harness.suites.case_seeds): launch plans the seeds the pytest plugin runs."""
    from harness.suites import case_seeds

    for profile, expected in (("smoke", 1), ("standard", 5)):  # losses asks for 5 standard seeds, the default is 3
        jobs, _ = plan_jobs(["losses"], "bce", profile=profile, cases=["breast_cancer-noise0"])
        assert [list(j.seeds) for j in jobs] == [list(range(expected))]
        spec = next(s for s in case_specs(get_suite("losses"), profile) if s.case == "breast_cancer-noise0")
        assert case_seeds(spec) == list(range(expected))
    jobs, _ = plan_jobs(["losses"], "bce", seeds=2, cases=["breast_cancer-noise0"])
    assert [list(j.seeds) for j in jobs] == [[0, 1]]
