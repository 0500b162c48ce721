"""The leaderboard's statistics: Holm within a table, metric directions, zero variance, seed counts kept apart,
the suite aggregate (Friedman, Nemenyi, case bootstrap) and the figures."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import friedmanchisquare, ttest_rel
from test_records_leaderboard import make_record, metric, table, write

from harness import compare, leaderboard
from harness.metrics import case_bootstrap_ci, holm
from harness.records import paired_verdict
from harness.suites import losses

CASE = "mnist3v5-noise0.2"
BASE = [0.80, 0.81, 0.82, 0.80, 0.81]


def test_holm_hand_example():
    adjusted, rejected = holm([0.01, 0.04, 0.03])
    # sorted 0.01, 0.03, 0.04: 3 * 0.01 = 0.03; max(0.03, 2 * 0.03) = 0.06; max(0.06, 1 * 0.04) = 0.06
    np.testing.assert_allclose(adjusted, [0.03, 0.06, 0.06])
    assert rejected.tolist() == [True, False, False]


def test_table_is_holm_corrected_against_a_hand_computation(tmp_path):
    rows = {"a": [0.83, 0.83, 0.85, 0.82, 0.84], "b": [0.79, 0.80, 0.80, 0.79, 0.80],
            "c": [0.81, 0.83, 0.82, 0.81, 0.83], "d": [0.81, 0.80, 0.82, 0.81, 0.80]}
    write(tmp_path, make_record(CASE, "bce", BASE))
    for name, values in zip(("ensloss", "hinge", "focal", "exponential"), rows.values()):
        write(tmp_path, make_record(CASE, name, values))
    raw = {m: ttest_rel(v, BASE).pvalue for m, v in zip(("ensloss", "hinge", "focal", "exponential"), rows.values())}
    assert raw["focal"] < 0.05  # significant before correction
    order = sorted(raw, key=raw.get)  # ensloss, hinge, focal, exponential
    assert order == ["ensloss", "hinge", "focal", "exponential"]
    expected, running = {}, 0.0
    for i, name in enumerate(order):  # Holm by hand: running max of (m - i) * p_(i), capped at 1
        running = max(running, (4 - i) * raw[name])
        expected[name] = min(1.0, running)
    cells = table(leaderboard.build_markdown(tmp_path), f"### losses / `{CASE}`")
    got = {r[0]: dict(zip(cells[0], r)) for r in cells[1:]}
    for name, p in expected.items():
        assert got[name]["p (Holm)"] == compare.fmt_p(p)
    assert [got[m]["verdict"] for m in order] == ["better", "worse", "equal", "equal"]
    assert got["focal"]["p (Holm)"] == "0.065"


def test_zero_variance_differences_never_get_p_zero(tmp_path):
    write(tmp_path, make_record(CASE, "bce", BASE))
    write(tmp_path, make_record(CASE, "ensloss", [v + 0.01 for v in BASE]))  # constant difference
    write(tmp_path, make_record(CASE, "hinge", list(BASE)))  # identical
    rec, base = make_record(CASE, "ensloss", [v + 0.01 for v in BASE]), make_record(CASE, "bce", BASE)
    t = paired_verdict(rec, base, "test_acc")
    assert t.rule == "zero-variance" and t.p == pytest.approx(2 / 2**5) and t.verdict == "equal"
    cells = table(leaderboard.build_markdown(tmp_path), f"### losses / `{CASE}`")
    got = {r[0]: dict(zip(cells[0], r)) for r in cells[1:]}
    assert got["ensloss"]["p (perm)"] == "0.062" and got["ensloss"]["verdict"] == "equal"
    assert got["hinge"]["p (Holm)"] == "1.000" and got["hinge"]["Δ vs bce"] == "+0.0000"


def test_direction_comes_from_each_metric(tmp_path, monkeypatch):
    def lower(method: str, values: list[float]) -> dict:
        rec = make_record(CASE, method, values, primary="gap")
        rec["metrics"]["gap"] = metric(values, higher_is_better=False)
        rec["higher_is_better"] = False
        return rec

    base, better = lower("bce", [0.20, 0.21, 0.22, 0.20, 0.21]), lower("ensloss", [0.10, 0.11, 0.11, 0.10, 0.10])
    assert paired_verdict(better, base, "gap").verdict == "better"  # lower gap is better
    assert paired_verdict(better, base, "test_auroc").verdict == "worse"  # the other metric keeps its direction
    write(tmp_path, base)
    write(tmp_path, better)
    md = leaderboard.build_markdown(tmp_path)
    assert "Primary metric `gap` (lower is better)" in md
    cells = table(md, f"### losses / `{CASE}`")
    assert [r[0] for r in cells[1:]] == ["ensloss", "bce"]
    assert dict(zip(cells[0], cells[1]))["verdict"] == "better"
    # a record whose direction disagrees with the suite's declaration is not ranked
    monkeypatch.setattr(losses, "LOWER_IS_BETTER", ["gap", "test_auroc"], raising=False)
    stale = [why for _, why in leaderboard.collect(tmp_path).stale]
    assert stale == ["metric direction differs from the suite's LOWER_IS_BETTER for test_auroc"] * 2


def test_rows_with_another_seed_count_are_shown_apart(tmp_path):
    write(tmp_path, make_record(CASE, "bce", BASE))
    write(tmp_path, make_record(CASE, "ensloss", [0.83, 0.83, 0.85, 0.82, 0.84]))
    write(tmp_path, make_record(CASE, "hinge", [0.99, 0.99, 0.98]))  # 3 seeds; the suite's standard is 5
    md = leaderboard.build_markdown(tmp_path)
    main = table(md, f"### losses / `{CASE}`")
    assert [r[0] for r in main[1:]] == ["ensloss", "bce"]
    apart = table(md, "Rows with a seed count other than 5")
    assert apart[1][0] == "hinge" and dict(zip(apart[0], apart[1]))["n"] == "3 (≠ 5)"
    assert "verdict" not in apart[0]
    assert "hinge" not in md.split("across cases")[1].split("### Findings")[0]


def test_aggregate_matches_friedman_and_case_bootstrap(tmp_path):
    cases = ["mnist3v5-noise0", "mnist4v9-noise0", "mnist7v9-noise0"]
    values = {"bce": [0.90, 0.91, 0.92], "ensloss": [0.92, 0.95, 0.93], "hinge": [0.88, 0.90, 0.91]}
    rng = np.random.default_rng(0)
    per_seed = {}
    for m, means in values.items():
        for case, mean in zip(cases, means):
            seeds = list(np.round(mean + rng.normal(0, 0.005, 5), 4))
            per_seed[m, case] = seeds
            write(tmp_path, make_record(case, m, seeds))
    md = leaderboard.build_markdown(tmp_path)
    matrix = np.array([[np.mean(per_seed[m, c]) for m in values] for c in cases])
    ref = friedmanchisquare(*matrix.T)
    assert f"Friedman χ² = {ref.statistic:.2f}, df 2, p = {ref.pvalue:.3f}" in md
    agg = compare.aggregate([r for r in leaderboard.collect(tmp_path).current], "bce")
    diffs = [np.subtract(per_seed["ensloss", c], per_seed["bce", c]) for c in cases]
    lo, hi = case_bootstrap_ci(diffs, confidence=1 - 0.05 / 2)
    assert agg.summary("ensloss").ci == (lo, hi) and agg.confidence == 0.975
    assert f"ensloss: better than bce over 3 cases (mean Δ {np.mean([d.mean() for d in diffs]):+.4f}" in md
    assert f"[{lo:+.4f}, {hi:+.4f}], Bonferroni over 2 methods" in md
    ranks = dict(zip(agg.methods, agg.friedman.mean_ranks))
    assert ranks == {"bce": 2.0, "ensloss": 1.0, "hinge": 3.0}


def test_aggregate_keeps_the_larger_complete_block():
    cases = ["breast_cancer-noise0", "mnist3v5-noise0", "mnist4v9-noise0", "mnist7v9-noise0"]
    seeds = [0.9, 0.91, 0.92, 0.9, 0.9]
    recs = [make_record(c, m, seeds) for c in cases for m in ("bce", "hinge")]
    recs += [make_record(cases[0], "focal", seeds)]
    agg = compare.aggregate(recs, "bce")  # 2 methods x 4 cases beats 3 methods x 1 case
    assert agg.methods == ["bce", "hinge"] and agg.excluded == {"focal": "run on 1 of 4 cases"}
    recs += [make_record(c, "focal", seeds) for c in cases[1:3]]
    agg = compare.aggregate(recs, "bce")  # 3 methods x 3 cases beats 2 methods x 4 cases
    assert agg.methods == ["bce", "focal", "hinge"] and agg.cases_left_out == ["mnist7v9-noise0"]


def test_pareto_and_suite_figures_are_drawn_linked_and_checked(tmp_path, monkeypatch):
    results, figures, out = tmp_path / "results", tmp_path / "docs" / "figures", tmp_path / "leaderboard.md"
    for case in ("mnist3v5-noise0", "mnist4v9-noise0"):
        write(results, make_record(case, "bce", BASE))
        write(results, make_record(case, "hinge", [0.83, 0.83, 0.85, 0.82, 0.84]))
    seen = []

    def suite_figures(records, out_dir):
        seen.append(len(records))
        path = out_dir / "extra.png"
        path.write_bytes(b"\x89PNG fake")
        return [("Suite figure", path)]

    monkeypatch.setattr(losses, "figures", suite_figures, raising=False)
    leaderboard.write(results, out, figures)
    text = out.read_text()
    pareto = figures / "losses" / "standard" / "pareto-step-time.png"
    assert pareto.read_bytes()[:4] == b"\x89PNG" and seen == [4]
    assert "[Pareto: primary metric against step time](docs/figures/losses/standard/pareto-step-time.png)" in text
    assert "[Suite figure](docs/figures/losses/standard/extra.png)" in text
    assert leaderboard.check(results, out, figures)
    stamp = pareto.stat().st_mtime_ns
    assert leaderboard.problems(results, out, figures) == [] and pareto.stat().st_mtime_ns == stamp  # not redrawn
    (figures / "losses" / "standard" / "extra.png").unlink()
    assert leaderboard.problems(results, out, figures) == ["figure docs/figures/losses/standard/extra.png is missing"]
