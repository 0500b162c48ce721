"""Reports stand apart from what is measured: rewording a finding, a figure title or a claims message stales no
record and recomputes no cache entry.

A record's ``code`` digests and every store key (the protocols' ``code_digest`` of their own module closure) are
digests of import closures (:mod:`harness.core.digest`) of suite modules, protocol modules and method files. These
tests compute those digests on a copy of the repository, edit report text there, and compare.
"""

from __future__ import annotations

import shutil
import types
from pathlib import Path

import pytest

from harness.core.digest import REPO, files_digest, import_closure, imported_files
from harness.reporting.suites import description, findings, suite_report
from harness.suites import all_suites

MEASURED = {  # folder -> which of its files a record or a store key is made of
    "harness/suites": "*.py",
    "harness/protocols": "*.py",
    "baselines": "**/*.py",
}
REPORT_ATTRIBUTES = ("DESCRIPTION", "LEADERBOARD_COLUMNS", "REFERENCE_METHODS", "findings", "figures")


def measured_files(root: Path) -> list[Path]:
    """Every suite module, protocol module and method file under ``root`` (packages' ``__init__`` left out: a
    closure takes them in where they run)."""
    return sorted(p for folder, pattern in MEASURED.items() for p in (root / folder).glob(pattern)
                  if p.name != "__init__.py" and "__pycache__" not in p.parts)


def closure_digests(root: Path) -> dict[str, str]:
    """The code digest of each measured file's import closure, by path relative to ``root``."""
    return {p.relative_to(root).as_posix(): files_digest(import_closure([p], root=root), root=root)
            for p in measured_files(root)}


def reword(path: Path, old: str, new: str) -> None:
    text = path.read_text(encoding="utf-8")
    assert old in text, f"{path}: {old!r} not found (the report text moved: update this test)"
    path.write_text(text.replace(old, new), encoding="utf-8")


@pytest.fixture
def repo_copy(tmp_path: Path) -> Path:
    for package in ("harness", "baselines"):
        shutil.copytree(REPO / package, tmp_path / package, ignore=shutil.ignore_patterns("__pycache__"))
    return tmp_path


def test_rewording_reports_changes_no_code_digest(repo_copy: Path) -> None:
    before = closure_digests(repo_copy)
    assert {"harness/suites/losses.py", "harness/protocols/openset.py", "harness/protocols/unlearn.py"} <= set(before)
    assert any(k.startswith("baselines/") for k in before)
    reports = repo_copy / "harness" / "reporting"
    reword(reports / "suites" / "losses.py", "Quick cases (MNIST-5k pairs, breast cancer; early stopping, not the "
           "EnsLoss regime)", "Quick cases, reworded")  # a finding
    reword(reports / "suites" / "unlearning.py", "average gap to retrain against RTE", "gap against RTE, retitled")
    reword(reports / "suites" / "shift.py", "WILDS-like shifts", "Distribution shifts")  # a description
    reword(reports / "claims.py", 'f"too few cases to claim (needs ≥ {needed})"',
           'f"not enough cases for a claim (needs ≥ {needed})"')
    assert closure_digests(repo_copy) == before

    # the check can fail: an edit to how a suite builds its cases changes that suite's digest
    reword(repo_copy / "harness" / "suites" / "losses.py", "NOISE = (0.0, 0.2)", "NOISE = (0.0, 0.3)")
    after = closure_digests(repo_copy)
    assert after["harness/suites/losses.py"] != before["harness/suites/losses.py"]
    assert after["harness/protocols/unlearn.py"] == before["harness/protocols/unlearn.py"]


def test_no_report_is_in_any_measured_closure() -> None:
    reporting = REPO / "harness" / "reporting"
    closure = import_closure(measured_files(REPO))
    assert [p.relative_to(REPO).as_posix() for p in closure if p.is_relative_to(reporting)] == []


def test_suite_modules_import_no_reports_or_records() -> None:
    banned = (REPO / "harness" / "reporting", REPO / "harness" / "records")
    direct = {p.name: [f.relative_to(REPO).as_posix() for f in imported_files(p) if f.is_relative_to(banned[0])
                       or f.is_relative_to(banned[1])] for p in (REPO / "harness" / "suites").glob("*.py")}
    assert {name: files for name, files in direct.items() if files} == {}


def test_every_built_in_suite_has_its_report_and_defines_none_itself() -> None:
    for suite in all_suites():
        report = suite_report(suite)
        assert report.__name__ == f"harness.reporting.suites.{suite.__name__.rpartition('.')[2]}"
        assert description(suite) == report.DESCRIPTION and description(suite.NAME) == report.DESCRIPTION
        assert [a for a in REPORT_ATTRIBUTES if hasattr(suite, a)] == [], suite.NAME


def test_a_third_party_suite_keeps_its_report_on_its_module() -> None:
    suite = types.ModuleType("thirdparty_suite")
    suite.DESCRIPTION = "a third-party suite"
    suite.findings = lambda records: [f"{len(records)} record(s)"]
    assert suite_report(suite) is suite
    assert description(suite) == "a third-party suite" and findings(suite, [{}]) == ["1 record(s)"]
