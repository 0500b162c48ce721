"""The SSL suite's report of the online-kNN curves (``run.online_knn``): seed means, findings and the figure, from
records alone."""

from __future__ import annotations

import pytest

from harness.reporting.suites import ssl as report


def record(method: str, case: str, curves: list[list[list[float]]], overrides: dict | None = None) -> dict:
    return {"suite": "ssl", "status": "ok", "method": method, "case": case, "hparam_overrides": overrides or {},
            "seeds": list(range(len(curves))), "metrics": {}, "run": {"online_knn": curves}}


RECORDS = [
    record("simclr", "mnist5k", [[[0.0, 0.3], [0.5, 0.4], [1.0, 0.5]], [[0.0, 0.5], [0.5, 0.4], [1.0, 0.7]]]),
    record("byol", "mnist5k", [[[0.0, 0.3], [0.5, 0.3], [1.0, 0.2]]]),
    record("random-init", "mnist5k", [[[0.0, 0.3]], [[0.0, 0.5]]]),
    record("simclr", "eurosat", [[[0.0, 0.2], [1.0, 0.25]]], {"temperature": 0.1}),
    {**record("dino", "eurosat", []), "run": {}},  # a record without a curve (made before the online kNN)
]


def test_online_curves_are_seed_means_with_their_standard_error():
    curves = report.online_curves(RECORDS)
    assert sorted(curves) == ["eurosat", "mnist5k"]
    simclr = curves["mnist5k"]["simclr"]
    assert [p[0] for p in simclr] == [0.0, 0.5, 1.0]
    assert [p[1] for p in simclr] == pytest.approx([0.4, 0.4, 0.6])
    assert simclr[0][2] == pytest.approx(0.1)  # sample std 0.1414 / sqrt(2)
    assert simclr[1][2] == 0.0 and simclr[0][3] == 2
    assert curves["mnist5k"]["byol"][0][2] is None  # one seed: no error
    assert list(curves["eurosat"]) == ["simclr[temperature=0.1]"]


def test_online_knn_findings_order_methods_by_their_change():
    (line,) = report.online_knn_findings([r for r in RECORDS if r["case"] == "mnist5k"])
    assert line.index("simclr") < line.index("byol") and "random-init" not in line
    assert "simclr +0.200" in line and "byol -0.100 (from 0.300)" in line  # their initial encoders differ


def test_online_knn_figure_is_drawn(tmp_path):
    ((title, path),) = report.figures(RECORDS, tmp_path)
    assert "online kNN" in title and path.is_file() and path.stat().st_size > 0
    assert report.figures([RECORDS[-1]], tmp_path / "none") == []  # no curve, no figure
