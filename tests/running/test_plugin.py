"""The pytest plugin end to end, through pytester (in-process pytest runs)."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

SUITE_FILE = '''
from harness.suites import losses as SUITE


def test_losses(harness_case, benchmark):
    harness_case.run(benchmark)
'''

METHODS_FILE = '''
from harness import Method, register_method


@register_method("plugin-nan")
class PluginNan(Method):
    """Diverges at step 2 on the label-noise case only."""
    family, protocols = "loss", frozenset({"supervised"})

    def loss(self, logits, batch, state):
        loss = super().loss(logits, batch, state)
        return loss / 0.0 * 0.0 if state.step == 2 and state.num_train > 0 and self.noisy else loss

    def setup(self, task, state):
        self.noisy = "noise0.2" in task.case


@register_method("plugin-openset")
class PluginOpenSet(Method):
    family, protocols = "osr", frozenset({"openset"})
'''


@pytest.fixture
def suite(pytester: pytest.Pytester):
    pytester.makepyfile(test_suite=SUITE_FILE, my_methods=METHODS_FILE)
    return pytester


def test_unknown_method_is_a_usage_error(suite):
    result = suite.runpytest("--method=enslos")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*unknown method 'enslos'. Did you mean 'ensloss'?*Registered methods:*"])


def test_bad_hparam_is_a_usage_error(suite):
    result = suite.runpytest("--method=focal", "--hparam", "gamma=abc")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*hparam gamma='abc' for 'focal' has the wrong type*"])


def test_suite_run_writes_records_summary_and_benchmark_json(suite, tmp_path):
    out = tmp_path / "bench.json"
    result = suite.runpytest("--method=ensloss,bce", "-k", "breast_cancer", f"--results-dir={tmp_path / 'res'}",
                             f"--benchmark-json={out}", "--hparam", "ensloss.lam=0.0")
    result.assert_outcomes(passed=4)
    result.stdout.fnmatch_lines(["*harness results*", "*losses*breast_cancer-noise0.2*ensloss*test_acc 0.*ok*"])
    records = sorted(p.name for p in (tmp_path / "res").rglob("*.json"))
    assert records == ["bce__smoke.json", "bce__smoke.json", "ensloss-h" + records[2][9:], records[3]]
    bench = json.loads(out.read_text())["benchmarks"]
    assert len(bench) == 4
    timing = {(r["method"], r["case"]): r["timing"] for r in map(json.loads, map(Path.read_text,
                                                                                 (tmp_path / "res").rglob("*.json")))}
    for b in bench:
        assert 0.5 < b["extra_info"]["test_acc"] <= 1.0 and "test_auroc" in b["extra_info"]
        # one measurement: pytest-benchmark holds the record's own timed steps, not a re-run of its own
        t = timing[b["extra_info"]["method"], b["extra_info"]["case"]]
        assert b["stats"]["rounds"] == t["steps_timed"] > 5 and b["group"] == "losses"
        assert b["stats"]["median"] == pytest.approx(t["step_time_median_s"], rel=1e-12)


def test_divergence_fails_that_case_and_others_go_on(suite, tmp_path):
    result = suite.runpytest("--method=plugin-nan", "--method-module=my_methods.py", "-k", "breast_cancer",
                             f"--results-dir={tmp_path}")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["*plugin-nan on breast_cancer-noise0.2: diverged at step 2 (seed 0, loss nan)*"])
    diverged = json.loads(next(tmp_path.rglob("*noise0.2/plugin-nan__smoke.json")).read_text())
    assert diverged["status"] == "diverged" and diverged["diverged"]["step"] == 2


def test_unsupported_protocol_is_deselected_with_a_count(suite, tmp_path):
    result = suite.runpytest("--method=plugin-openset", "--method-module=my_methods.py", "-k", "breast_cancer",
                             f"--results-dir={tmp_path}", "-rs")
    result.assert_outcomes()
    assert result.ret == pytest.ExitCode.NO_TESTS_COLLECTED
    result.stdout.fnmatch_lines(["harness: deselected 2 cases the method does not take part in "
                                 "(no 'supervised' part: losses 2)"])


def test_resume_skips_existing_cases(suite, tmp_path):
    args = ["--method=bce", "-k", "breast_cancer-noise0]", f"--results-dir={tmp_path}"]
    suite.runpytest(*args).assert_outcomes(passed=1)
    result = suite.runpytest(*args, "--resume", "-rs")
    result.assert_outcomes(skipped=1)
    result.stdout.fnmatch_lines(["*--resume:*already holds this case*"])


def test_missing_data_skips_or_fails_when_strict(pytester: pytest.Pytester, tmp_path, monkeypatch):
    pytester.makepyfile(test_shift_suite=textwrap.dedent('''
        from harness.suites import shift as SUITE

        def test_shift(harness_case, benchmark):
            harness_case.run(benchmark)
    '''))
    monkeypatch.setenv("HARNESS_DATA", str(tmp_path / "nowhere"))
    monkeypatch.delenv("CI", raising=False)
    args = ["--method=erm", "-k", "pacs-photo", f"--results-dir={tmp_path}", "-rs"]
    result = pytester.runpytest(*args)
    result.assert_outcomes(skipped=1)
    result.stdout.fnmatch_lines(["*pacs not found under*nowhere*set HARNESS_DATA*"])
    strict = pytester.runpytest(*args, "--strict-data")
    strict.assert_outcomes(failed=1)
    strict.stdout.fnmatch_lines(["*--strict-data*"])
    monkeypatch.setenv("CI", "true")  # GitHub Actions sets it: strict by default, --no-strict-data turns it off
    pytester.runpytest(*args).assert_outcomes(failed=1)
    pytester.runpytest(*args, "--no-strict-data").assert_outcomes(skipped=1)
