"""Issue 29 item 3: seed-level progress from the runner (seed i/n, elapsed, ETA), quiet where nobody watches."""

from __future__ import annotations

import io

import torch

from harness.core.registry import create_method
from harness.running.runner import SeedProgress, duration, progress_printer, run_case
from harness.suites import losses


class Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_eta_is_the_mean_seed_time_times_the_seeds_left():
    p = SeedProgress("erm-cmnist", done=2, total=5, seed=2, elapsed_s=600.0)
    assert p.eta_s == 900.0 and p.line() == "erm-cmnist: seed 3/5 · 10m00s · ETA 15m00s"
    assert SeedProgress("x", 0, 3, 0, 0.2).short() == "seed 1/3 · 0s"  # no ETA before a seed is done
    assert SeedProgress("x", 3, 3, None, 4000.0).short() == "3/3 seeds · 1h06m"
    assert [duration(s) for s in (5, 65, 3725)] == ["5s", "1m05s", "1h02m"]


def test_the_printer_is_quiet_off_a_terminal_under_q_and_in_xdist_workers(monkeypatch):
    monkeypatch.delenv("PYTEST_XDIST_WORKER", raising=False)
    assert progress_printer(io.StringIO()) is None  # CI logs, a pipe, a file
    assert progress_printer(Tty(), verbosity=-1) is None  # -q
    monkeypatch.setenv("PYTEST_XDIST_WORKER", "gw0")
    assert progress_printer(Tty()) is None
    monkeypatch.delenv("PYTEST_XDIST_WORKER")
    out = Tty()
    progress_printer(out)(SeedProgress("a", 1, 2, 1, 3.0))
    assert out.getvalue() == "a: seed 2/2 · 3s · ETA 3s\n"


def test_run_case_reports_before_each_seed_and_at_the_end():
    spec = next(s for s in losses.case_specs("smoke") if s.case == "breast_cancer-noise0")
    seen: list[SeedProgress] = []
    run_case(spec, create_method("bce"), [0, 1], torch.device("cpu"), progress=seen.append)
    assert [(p.done, p.total, p.seed) for p in seen] == [(0, 2, 0), (1, 2, 1), (2, 2, None)]
    assert seen[0].label == "bce-breast_cancer-noise0" and seen[1].eta_s is not None
    assert seen[0].elapsed_s <= seen[1].elapsed_s <= seen[2].elapsed_s
