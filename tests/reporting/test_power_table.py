"""`python -m harness power`: per-case spread of seed-paired differences and the seeds the suite needs."""

from __future__ import annotations

import numpy as np
import pytest

from harness import cli
from harness.metrics.power import seeds_for_power
from harness.reporting.power import power_table
from tests.factories import make_record, write

CASES = ("mnist3v5-noise0", "mnist3v5-noise0.2", "breast_cancer-noise0")
BCE = [0.80, 0.81, 0.82, 0.80, 0.81]
HINGE_DIFFS = {CASES[0]: [0.01, 0.03, -0.01, 0.02, 0.0], CASES[1]: [0.0, 0.0, 0.02, 0.01, 0.01],
               CASES[2]: [0.05, -0.05, 0.0, 0.02, -0.02]}


def test_power_table_reads_the_paired_spread_and_sizes_the_seeds(tmp_path, capsys):
    results = tmp_path / "results"
    records = []
    for case in CASES:
        records.append(make_record(case, "bce", BCE))
        records.append(make_record(case, "hinge", [b + d for b, d in zip(BCE, HINGE_DIFFS[case])]))
    for rec in records:
        write(results, rec)
    frame, summary = power_table("losses", "standard", records)
    expected = {c: float(np.std(d, ddof=1)) for c, d in HINGE_DIFFS.items()}
    assert dict(zip(frame["case"], frame["median sd"])) == pytest.approx(expected)
    assert summary["methods (k)"] == 1 and summary["level (alpha/k)"] == pytest.approx(0.05)
    assert summary["seeds for 0.01 (median sd)"] == seeds_for_power(
        np.array([expected[c] for c in sorted(expected)]), 0.01, 0.05)
    assert cli.main(["power", "--suite", "losses", "--results-dir", str(results)]) == 0
    assert "seeds for 0.01 (median sd)" in capsys.readouterr().out
