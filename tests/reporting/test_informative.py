"""Informativeness floors: a ranked case whose baseline sits at chance fails `leaderboard --check` unless the suite's
report declares it a reproduction, which the rankings and claims then leave out (its table stays)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from harness import cli
from harness.core.digest import REPO
from harness.records import load_evidence
from harness.reporting import informative, site
from harness.reporting.informative import Floor, constant, majority
from harness.reporting.suites import losses as losses_report
from harness.suites import get_suite, seed_count
from tests.factories import make_record, rendered, write

CASES = ("mnist3v5-noise0", "mnist3v5-noise0.2", "breast_cancer-noise0")
N = seed_count(get_suite("losses"), "standard")  # rows with another seed count are shown apart, untested


def seeds(*values: float) -> list[float]:
    return [values[i % len(values)] for i in range(N)]


def _results(root: Path, bce_on_first: list[float]) -> Path:
    results = root / "results"
    for case in CASES:
        write(results, make_record(case, "bce", bce_on_first if case == CASES[0] else seeds(0.90, 0.91, 0.92)))
        write(results, make_record(case, "hinge", seeds(0.85, 0.86, 0.87)))
    return results


@pytest.fixture
def floors(monkeypatch):
    monkeypatch.setattr(losses_report, "INFORMATIVE", (Floor("test_acc", constant(0.5), label="test accuracy"),
                                                       Floor("test_acc", constant(0.5), each_method=True)))
    monkeypatch.setattr(losses_report, "REPRODUCTIONS", {}, raising=False)


def test_a_case_at_chance_fails_the_check_until_declared_a_reproduction(tmp_path, floors, monkeypatch, capsys):
    results = _results(tmp_path, seeds(0.52, 0.50, 0.55, 0.49))  # bce at chance on the first case
    out = tmp_path / "leaderboard.md"
    site.write_markdown(results, out)
    problems = site.informative_problems(results)
    assert len(problems) == 1
    assert f"`{CASES[0]}` measures nothing: bce test accuracy 0.51" in problems[0] and "< chance 0.500" in problems[0]
    assert cli.main(["leaderboard", "--check", "--results-dir", str(results), "--output", str(out)]) == 1
    assert "measures nothing" in capsys.readouterr().err
    text = rendered(results)
    assert "| mnist3v5-noise0 " in text and "| NO " in text  # the informativeness table says so

    monkeypatch.setattr(losses_report, "REPRODUCTIONS", {CASES[0]: "a known failure, kept on purpose"})
    assert site.informative_problems(results) == []
    sec = next(s for s in site.build(results).sections if s.name == "losses")
    assert CASES[0] not in sec.agg.cases and set(sec.agg.cases) == set(CASES[1:])
    assert any("Reproductions, outside the rankings and claims" in line for line in sec.claims)
    case = next(c for c in sec.cases if c.case == CASES[0])
    assert case.main is not None and case.reproduction  # shown, not ranked
    site.write_markdown(results, out)
    assert "**Reproduction, outside the rankings and claims:** a known failure" in \
        (tmp_path / "docs" / "leaderboard" / "losses.md").read_text()
    assert cli.main(["leaderboard", "--check", "--results-dir", str(results), "--output", str(out)]) == 0


def test_each_method_floor_lists_methods_that_do_not_fit(tmp_path, floors):
    results = tmp_path / "results"
    write(results, make_record(CASES[0], "bce", seeds(0.90, 0.91, 0.92)))
    write(results, make_record(CASES[0], "hinge", seeds(0.60, 0.61, 0.62)))
    sec = next(s for s in site.build(results).sections if s.name == "losses")
    frame = site.informative_frame(sec.cases)
    assert frame.loc[0, "informative"] == "yes"
    assert frame.loc[0, "below their training-data floor"].startswith("hinge (0.6")
    assert site.informative_problems(results) == []  # a method below its fit floor is reported, not a failure


def test_chance_is_the_majority_rate_of_the_records_own_test_labels():
    path = REPO / "results" / "losses" / "breast_cancer-noise0" / "bce__smoke.json"
    if not path.is_file():
        pytest.skip(f"{path} is not committed")
    record = json.loads(path.read_text())
    record["_path"] = str(path)
    labels = np.concatenate([a["test.y"] for a in load_evidence(path, record).values()])
    expected = np.bincount(labels.astype(int)).max() / len(labels)
    assert majority("test.y")(record) == pytest.approx(expected)
    assert 0.5 < expected < 0.7  # breast cancer: 63% benign in the full table
    checks = informative.case_checks(get_suite("losses"), record["case"], [record])
    assert [c.floor.metric for c in checks] == ["test_acc", "train_acc"]
    assert checks[0].chance == pytest.approx(expected) and checks[0].ok
