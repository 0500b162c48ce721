"""pytest conventions of the suite plugin, through pytester: deselection, --lf, markers, node ids, options,
-p no:benchmark, progress and the compact summary. Every run uses breast_cancer smoke cases (seconds) or
collection only."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from harness import plugin
from harness.core.digest import REPO
from harness.suites import case_specs, get_suite

LOSSES = '''
from harness.suites import losses as SUITE

NUM_CLASSES = 2


def test_losses(harness_case):
    harness_case.run()
'''

SHIFT = '''
from harness.suites import shift as SUITE

CLASSES = {"colored_digits": 2, "pacs": 7}


def NUM_CLASSES(spec):
    return CLASSES.get(spec.params.get("dataset"))


def test_shift(harness_case):
    harness_case.run()
'''

METHODS = '''
from harness import Method, register_method


@register_method("conv-nan")
class ConvNan(Method):
    """Diverges at step 2 on the label-noise case only: one case fails, the other passes."""
    family, protocols = "loss", frozenset({"supervised"})

    def loss(self, logits, batch, state):
        loss = super().loss(logits, batch, state)
        return loss / 0.0 * 0.0 if state.step == 2 and self.noisy else loss

    def setup(self, task, state):
        self.noisy = "noise0.2" in task.case
'''

BC = "breast_cancer"


@pytest.fixture
def losses(pytester: pytest.Pytester, tmp_path):
    pytester.makepyfile(test_suite=LOSSES, conv_methods=METHODS)
    return pytester


def _ids(result, outcome: str) -> list[str]:
    """Node ids the short summary (-rA) lists with ``outcome``, as a user would copy them from the output."""
    return [m.group(1) for m in re.finditer(rf"^{outcome} (\S+)", result.stdout.str(), re.M)]


def test_mismatches_are_deselected_without_loading_and_real_skips_keep_reasons(pytester, tmp_path, monkeypatch):
    pytester.makepyfile(test_shift_suite=SHIFT)
    monkeypatch.setenv("HARNESS_DATA", str(tmp_path / "nowhere"))  # loading PACS would fail: a skip, not this count
    monkeypatch.delenv("CI", raising=False)
    result = pytester.runpytest("--method=ensloss,erm", "-k", "pacs-photo", f"--results-dir={tmp_path}")
    result.assert_outcomes(skipped=1)  # erm on PACS: the data is missing, a real skip
    result.stdout.fnmatch_lines([
        "harness: deselected 1 case the method does not take part in (binary-only on multi-class: shift 1)",
        "skipped test_shift_suite.py::test_shift[[]erm-pacs-photo[]]: pacs not found under*nowhere*",
    ])
    assert "ensloss-pacs-photo" not in result.stdout.str()


def test_last_failed_reruns_the_failing_case_alone_without_method(losses, tmp_path):
    args = ["--method-module=conv_methods.py", f"--results-dir={tmp_path}", "-p", "no:benchmark"]
    first = losses.runpytest("--method=conv-nan", "-k", BC, *args)
    first.assert_outcomes(passed=1, failed=1)
    again = losses.runpytest("--lf", *args, "-rA")  # the method comes from the last-failed node id
    again.assert_outcomes(failed=1)
    assert _ids(again, "FAILED") == ["test_suite.py::test_losses[conv-nan-breast_cancer-noise0.2]"]
    again.stdout.fnmatch_lines(["*run-last-failure: rerun previous 1 failure*"])


def test_node_ids_from_the_output_rerun_without_method(losses, tmp_path):
    args = ["--method-module=conv_methods.py", f"--results-dir={tmp_path}", "-p", "no:benchmark"]
    first = losses.runpytest("--method=conv-nan,bce", "-k", "breast_cancer-noise0.2", *args, "-rA")
    first.assert_outcomes(passed=1, failed=1)
    (failed,), (passed,) = _ids(first, "FAILED"), _ids(first, "PASSED")
    assert passed == "test_suite.py::test_losses[bce-breast_cancer-noise0.2]"
    losses.runpytest(failed, *args).assert_outcomes(failed=1)
    losses.runpytest(passed, *args).assert_outcomes(passed=1)
    both = losses.runpytest(failed, passed, *args)  # two methods named by two ids
    both.assert_outcomes(passed=1, failed=1)


def test_longest_method_name_wins_in_a_node_id():
    ids = ["suites/test_shift.py::test_shift[erm-strong-pacs-photo]", "suites/x.py::test_x[erm-colored@data-c]",
           "suites/test_losses.py::test_losses[nomethod-case]", "suites/test_losses.py"]
    assert plugin.methods_from_node_ids(ids) == "erm-strong,erm"


def test_suite_and_realdata_markers_select_cases_under_strict_markers(losses):
    specs = case_specs(get_suite("losses"), "smoke")
    real = [s.case for s in specs if plugin.reads_harness_data(s)]
    assert real and all(s.startswith("cifar") for s in real)  # MNIST-5k and breast cancer are embedded
    base = ["--method=bce", "--collect-only", "-q", "--strict-markers"]
    got = losses.runpytest(*base, "-m", "realdata")
    got.stdout.fnmatch_lines([f"*{len(real)}/{len(specs)} tests collected*"])
    assert sorted(re.findall(r"\[bce-(.+)\]", got.stdout.str())) == sorted(real)
    losses.runpytest(*base, "-m", "losses and not realdata").stdout.fnmatch_lines(
        [f"*{len(specs) - len(real)}/{len(specs)} tests collected*"])
    assert losses.runpytest(*base, "-m", "shift").ret == pytest.ExitCode.NO_TESTS_COLLECTED


def test_repeated_hparam_key_is_a_usage_error(losses):
    result = losses.runpytest("--method=ensloss", "--hparam", "lam=0.1", "--hparam", "lam=0.3")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--hparam lam is given twice ('lam=0.1' and 'lam=0.3')*"])
    # a method-qualified key is a different key: it wins for that method
    ok = losses.runpytest("--method=ensloss", "--hparam", "lam=0.1", "--hparam", "ensloss.lam=0.3",
                          "--collect-only", "-q")
    assert ok.ret == pytest.ExitCode.OK


def test_suites_run_without_pytest_benchmark(losses, tmp_path):
    result = losses.runpytest("--method=bce", "-k", "breast_cancer-noise0]", f"--results-dir={tmp_path}",
                              "-p", "no:benchmark")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["*losses*breast_cancer-noise0 *bce*test_acc 0.*ms*ok*"])


def test_compact_summary_hides_the_benchmark_table_unless_asked(losses, tmp_path):
    args = ["--method=bce,ensloss", "-k", BC, f"--results-dir={tmp_path}"]
    result = losses.runpytest(*args)
    result.assert_outcomes(passed=4)
    out = result.stdout.str()
    assert "Name (time in" not in out and "pytest-benchmark's table (the same timed steps) is hidden" in out
    assert out.count("harness results") == 1
    shown = losses.runpytest(*args, "--benchmark-columns=median,rounds", f"--results-dir={tmp_path / 'b'}")
    shown.assert_outcomes(passed=4)
    assert shown.stdout.str().count("Name (time in") == 1  # one group (the suite), four rows


def test_progress_bar_counts_steps_and_stays_quiet_under_q(losses, tmp_path, monkeypatch):
    monkeypatch.setattr(plugin._TerminalFile, "isatty", lambda self: True)  # pytester's stdout is no terminal
    monkeypatch.setattr(plugin, "PROGRESS_INTERVAL_S", 0.0)  # every step redraws: the count is seen in the output
    args = ["--method=bce", "-k", "breast_cancer-noise0]", "-p", "no:benchmark", "--color=yes"]
    shown = losses.runpytest(*args, f"--results-dir={tmp_path / 'a'}")
    shown.assert_outcomes(passed=1)
    steps = re.findall(r"bce-breast_cancer-noise0:\d+%\|[^|]*\|(\d+)/\d+\[", shown.stdout.str().replace(" ", ""))
    record = json.loads(next((tmp_path / "a").rglob("bce__smoke.json")).read_text())
    assert steps and int(steps[-1]) >= record["timing"]["steps_timed"] > 0  # the timed steps and the warm-up
    assert "seed 1/1" in shown.stdout.str() and "epoch 1" in shown.stdout.str()
    quiet = losses.runpytest(*args, "-q", f"--results-dir={tmp_path / 'b'}")
    quiet.assert_outcomes(passed=1)
    assert "step/s" not in quiet.stdout.str() and "bce-breast_cancer-noise0:" not in quiet.stdout.str()


def test_progress_names_the_seed_epoch_and_eta_on_a_terminal(losses, tmp_path, monkeypatch):
    """Issue 29 item 3: on a terminal each case shows its seed (i/n), epoch, elapsed time and ETA; a terminal
    without ANSI codes gets a line per seed; a non-terminal (CI logs) and -q get none."""
    monkeypatch.setattr(plugin._TerminalFile, "isatty", lambda self: True)
    monkeypatch.setattr(plugin, "PROGRESS_INTERVAL_S", 0.0)
    args = ["--method=bce", "-k", "breast_cancer-noise0]", "-p", "no:benchmark", "--seeds=2"]
    shown = losses.runpytest(*args, "--color=yes", f"--results-dir={tmp_path / 'a'}")
    shown.assert_outcomes(passed=1)
    out = shown.stdout.str()
    assert "seed 1/2" in out and re.search(r"seed 2/2 · \d+s · ETA \d+s", out) and "epoch " in out
    plain = losses.runpytest(*args, "--color=no", f"--results-dir={tmp_path / 'b'}")  # a terminal without markup
    plain.assert_outcomes(passed=1)
    assert re.search(r"bce-breast_cancer-noise0: seed 2/2 · \d+s · ETA \d+s", plain.stdout.str())
    assert "2/2 seeds" in plain.stdout.str()
    monkeypatch.setattr(plugin._TerminalFile, "isatty", lambda self: False)  # CI logs, a pipe, a file
    piped = losses.runpytest(*args, "--color=yes", f"--results-dir={tmp_path / 'c'}")
    piped.assert_outcomes(passed=1)
    assert "seed 1/2" not in piped.stdout.str() and "step/s" not in piped.stdout.str()


def test_a_run_ends_with_the_next_command(losses, tmp_path):
    result = losses.runpytest("--method=bce", "-k", "breast_cancer-noise0]", "-p", "no:benchmark",
                              f"--results-dir={tmp_path / 'mine'}")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines([f"next: python -m harness report {tmp_path / 'mine'} (the tables*"
                                 f"--html {tmp_path / 'report'} (a static site)"])


def test_declared_class_counts_match_the_built_tasks():
    """The suite files' NUM_CLASSES decide deselection: check them on the cases that build from embedded data."""
    import importlib.util

    suites = REPO / "suites"
    checked = 0
    for name, fname in (("losses", "test_losses.py"), ("shift", "test_shift.py")):
        loc = importlib.util.spec_from_file_location(f"_conv_{name}", suites / fname)
        module = importlib.util.module_from_spec(loc)
        loc.loader.exec_module(module)
        for spec in case_specs(get_suite(name), "smoke"):
            if plugin.reads_harness_data(spec) or spec.params.get("dataset") not in ("breast_cancer", "colored_digits"):
                continue
            declared = plugin.case_classes(module, spec)
            assert declared == spec.build(spec).num_classes, spec.case
            checked += 1
    assert checked >= 3


def test_missing_data_skip_reason_is_in_the_summary(pytester, tmp_path, monkeypatch):
    pytester.makepyfile(test_shift_suite=textwrap.dedent(SHIFT))
    monkeypatch.setenv("HARNESS_DATA", str(tmp_path / "nowhere"))
    monkeypatch.delenv("CI", raising=False)
    result = pytester.runpytest("--method=erm", "-k", "pacs-sketch and not pretrained", f"--results-dir={tmp_path}")
    result.assert_outcomes(skipped=1)
    result.stdout.fnmatch_lines(["*harness results*", "skipped *erm-pacs-sketch*: pacs not found under*"])


@pytest.mark.slow
@pytest.mark.skipif(not hasattr(os, "openpty"), reason="needs a pseudo-terminal (POSIX)")
def test_progress_bar_shows_on_a_real_terminal(tmp_path):
    """A fresh pytest on a pseudo-terminal: the bar is drawn past pytest's capture, then the cursor goes back."""
    repo = REPO
    master, slave = os.openpty()
    cmd = [sys.executable, "-m", "pytest", "suites/test_losses.py", "--method=bce", "-k", "breast_cancer-noise0]",
           f"--results-dir={tmp_path}", "-p", "no:cacheprovider", "-p", "no:benchmark"]
    proc = subprocess.Popen(cmd, cwd=repo, stdin=slave, stdout=slave, stderr=slave, env=dict(os.environ, TERM="xterm"))
    os.close(slave)
    chunks = []
    while True:
        try:
            data = os.read(master, 65536)
        except OSError:  # EIO: the child closed the terminal
            break
        if not data:
            break
        chunks.append(data)
    os.close(master)
    assert proc.wait(timeout=600) == 0
    out = b"".join(chunks).decode(errors="replace")
    assert "bce-breast_cancer-noise0: 0step" in out and "\x1b[1A" in out and "1 passed" in out


def test_deselection_count_and_skip_reasons_reach_the_xdist_controller(pytester, tmp_path, monkeypatch):
    pytester.makepyfile(test_shift_suite=SHIFT)
    monkeypatch.setenv("HARNESS_DATA", str(tmp_path / "nowhere"))
    monkeypatch.delenv("CI", raising=False)
    monkeypatch.setenv("PYTHONPATH", str(Path(plugin.__file__).resolve().parents[1]))  # this checkout's harness
    result = pytester.runpytest_subprocess("-n", "2", "--method=ensloss,erm", "-k", "pacs-photo or pacs-cartoon",
                                           f"--results-dir={tmp_path}", "-p", "no:cacheprovider")
    result.assert_outcomes(skipped=2)
    result.stdout.fnmatch_lines([
        "harness: deselected 2 cases the method does not take part in (binary-only on multi-class: shift 2)",
        "skipped test_shift_suite.py::test_shift[[]erm-pacs-*@data-pacs[]]: pacs not found under*",
    ])
    # an id copied from the xdist output (with its group tag) re-runs without -n and without --method
    tagged = re.search(r"skipped (test_shift_suite.py::test_shift\[erm-pacs-photo@data-pacs\])", result.stdout.str())
    again = pytester.runpytest(tagged.group(1), f"--results-dir={tmp_path}", "-rs")
    again.assert_outcomes(skipped=1)
