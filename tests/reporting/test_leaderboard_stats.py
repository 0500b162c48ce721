"""The leaderboard's statistics: Holm within a table, metric directions, zero variance, seed counts kept apart,
the suite aggregate (Friedman, Nemenyi, the two kinds of claim of harness.reporting.claims) and the figures."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from scipy.stats import friedmanchisquare

from harness.metrics.stats import holm
from harness.records import currency, paired_verdict
from harness.reporting import claims, compare, site
from harness.reporting.suites import losses as losses_report
from harness.reporting.suites import reference_methods
from harness.suites import losses
from tests.factories import make_record, metric, rendered, table, write

CASE = "mnist3v5-noise0.2"
BASE = [0.80, 0.81, 0.82, 0.80, 0.81]


def test_holm_hand_example():
    adjusted, rejected = holm([0.01, 0.04, 0.03])
    # sorted 0.01, 0.03, 0.04: 3 * 0.01 = 0.03; max(0.03, 2 * 0.03) = 0.06; max(0.06, 1 * 0.04) = 0.06
    np.testing.assert_allclose(adjusted, [0.03, 0.06, 0.06])
    assert rejected.tolist() == [True, False, False]


def _sign_flip_by_hand(d) -> float:
    """Two-sided exact sign-flip p of the mean, by enumerating every sign pattern."""
    d = np.asarray(d, dtype=float)
    obs = abs(d.mean())
    null = [abs(np.mean(d * s)) for s in itertools.product((1, -1), repeat=len(d))]
    return float(np.mean([x >= obs - 1e-12 for x in null]))


def test_table_is_sign_flip_holm_against_a_hand_computation(tmp_path):
    rows = {"ensloss": [0.83, 0.83, 0.85, 0.82, 0.84], "hinge": [0.79, 0.80, 0.80, 0.79, 0.80],
            "focal": [0.81, 0.83, 0.82, 0.81, 0.83], "exponential": [0.81, 0.80, 0.82, 0.81, 0.80]}
    write(tmp_path, make_record(CASE, "bce", BASE))
    for name, values in rows.items():
        write(tmp_path, make_record(CASE, name, values))
    raw = {m: _sign_flip_by_hand(np.subtract(v, BASE)) for m, v in rows.items()}
    order = sorted(raw, key=raw.get)
    expected, running = {}, 0.0
    for i, name in enumerate(order):  # Holm by hand: running max of (m - i) * p_(i), capped at 1
        running = max(running, (4 - i) * raw[name])
        expected[name] = min(1.0, running)
    cells = table(rendered(tmp_path), f"### losses / `{CASE}`")
    got = {r[0]: dict(zip(cells[0], r)) for r in cells[1:]}
    for name in rows:
        assert got[name]["p"] == compare.fmt_p(raw[name]) and got[name]["p (Holm)"] == compare.fmt_p(expected[name])
    assert raw["ensloss"] == pytest.approx(2 / 2**5)  # every difference positive: the smallest p at 5 seeds
    # 5 seeds cannot reach 0.05 whatever the data: the verdict says so instead of "equal"
    assert {got[m]["verdict"] for m in rows} == {"descriptive: 5 seeds cannot reach the level"}
    assert "does not hold" not in rendered(tmp_path)


def test_per_case_rule_rejects_with_enough_seeds():
    base = make_record(CASE, "bce", [0.80 + 0.001 * i for i in range(8)])
    better = make_record(CASE, "ensloss", [0.83 + 0.001 * i + 0.002 * (i % 2) for i in range(8)])
    same = make_record(CASE, "hinge", [0.80 + 0.001 * i + (0.01 if i % 2 else -0.01) for i in range(8)])
    rows = {r.record["method"]: r for r in compare.table_rows([base, better, same], base, "test_acc")}
    assert rows["ensloss"].test.p == pytest.approx(2 / 2**8)
    assert rows["ensloss"].p_holm == pytest.approx(2 * 2 / 2**8) and rows["ensloss"].test.verdict == "better"
    assert rows["ensloss"].verdict == "better (p at its floor 2/2^8 for 8 seeds)"
    lo, hi = rows["ensloss"].test.ci
    assert 0 < lo < hi  # the inverted test's interval excludes 0 as the verdict does
    assert rows["hinge"].verdict == "not established" and rows["bce"].test is None


def test_zero_variance_differences_never_get_p_zero(tmp_path):
    write(tmp_path, make_record(CASE, "bce", BASE))
    write(tmp_path, make_record(CASE, "ensloss", [v + 0.01 for v in BASE]))  # constant difference
    write(tmp_path, make_record(CASE, "hinge", list(BASE)))  # identical
    cells = table(rendered(tmp_path), f"### losses / `{CASE}`")
    got = {r[0]: dict(zip(cells[0], r)) for r in cells[1:]}
    assert got["ensloss"]["p"] == "0.062" and got["ensloss"]["verdict"] == "descriptive: 5 seeds cannot reach the level"
    assert got["hinge"]["p"] == "1.000" and got["hinge"]["Δ vs bce"] == "+0.0000"


def test_direction_comes_from_each_metric(tmp_path, monkeypatch):
    def lower(method: str, values: list[float]) -> dict:
        rec = make_record(CASE, method, values, primary="gap")
        rec["metrics"]["gap"] = metric(values, higher_is_better=False)
        rec["higher_is_better"] = False
        return rec

    base, better = lower("bce", [0.20, 0.21, 0.22, 0.20, 0.21]), lower("ensloss", [0.10, 0.11, 0.11, 0.10, 0.10])
    assert paired_verdict(better, base, "gap").verdict == "better"  # lower gap is better
    assert paired_verdict(better, base, "test_auroc").verdict == "worse"  # the other metric keeps its direction
    assert compare.oriented_diffs(better, base, "gap") == pytest.approx([0.1, 0.1, 0.11, 0.1, 0.11])
    write(tmp_path, base)
    write(tmp_path, better)
    md = rendered(tmp_path)
    assert "Primary metric `gap` (lower is better)" in md
    cells = table(md, f"### losses / `{CASE}`")
    assert [r[0] for r in cells[1:]] == ["ensloss", "bce"]
    assert dict(zip(cells[0], cells[1]))["Δ vs bce"] == "-0.1040"
    # a record whose direction disagrees with the suite's declaration is not ranked
    monkeypatch.setattr(losses, "LOWER_IS_BETTER", ["gap", "test_auroc"], raising=False)
    stale = [why for _, why in currency.collect(tmp_path).stale]
    assert stale == ["metric direction differs from the suite's LOWER_IS_BETTER for test_auroc"] * 2


def test_reference_rows_get_no_verdict_and_no_rank(tmp_path, monkeypatch):
    monkeypatch.setattr(losses_report, "REFERENCE_METHODS", {"hinge": "the oracle"}, raising=False)
    for case in ("mnist3v5-noise0", "mnist4v9-noise0"):
        write(tmp_path, make_record(case, "bce", BASE))
        write(tmp_path, make_record(case, "hinge", [0.99] * 5))
        write(tmp_path, make_record(case, "ensloss", [0.83, 0.83, 0.85, 0.82, 0.84]))
    md = rendered(tmp_path)
    cells = table(md, "### losses / `mnist3v5-noise0`")
    got = {r[0]: dict(zip(cells[0], r)) for r in cells[1:]}
    assert got["hinge"]["verdict"] == "reference: the oracle" and got["hinge"]["p (Holm)"] == ""
    agg = compare.aggregate(currency.collect(tmp_path).current, "bce", refs=reference_methods(losses))
    assert "hinge" not in agg.methods and agg.summary("hinge").on is None and agg.n_compared == 1
    assert "hinge vs bce: mean Δ" not in md


def test_rows_with_another_seed_count_are_shown_apart(tmp_path):
    write(tmp_path, make_record(CASE, "bce", BASE))
    write(tmp_path, make_record(CASE, "ensloss", [0.83, 0.83, 0.85, 0.82, 0.84]))
    write(tmp_path, make_record(CASE, "hinge", [0.99, 0.99, 0.98]))  # 3 seeds; the suite's standard is 5
    md = rendered(tmp_path)
    main = table(md, f"### losses / `{CASE}`")
    assert [r[0] for r in main[1:]] == ["ensloss", "bce"]
    apart = table(md, "Rows with a seed count other than 5")
    assert apart[1][0] == "hinge" and dict(zip(apart[0], apart[1]))["n"] == "3 (≠ 5)"
    assert "verdict" not in apart[0]
    assert "hinge" not in md.split("### losses (standard): across cases")[1].split("\n### ")[0]


def test_aggregate_has_both_kinds_of_claim_from_claims(tmp_path):
    cases = ["mnist3v5-noise0", "mnist4v9-noise0", "mnist7v9-noise0"]
    values = {"bce": [0.90, 0.91, 0.92], "ensloss": [0.92, 0.95, 0.93], "hinge": [0.88, 0.90, 0.91]}
    rng = np.random.default_rng(0)
    per_seed = {}
    for m, means in values.items():
        for case, mean in zip(cases, means):
            seeds = list(np.round(mean + rng.normal(0, 0.005, 5), 4))
            per_seed[m, case] = seeds
            write(tmp_path, make_record(case, m, seeds))
    md = rendered(tmp_path)
    matrix = np.array([[np.mean(per_seed[m, c]) for m in values] for c in cases])
    ref = friedmanchisquare(*matrix.T)
    assert f"Friedman χ² = {ref.statistic:.2f}, df 2, p = {ref.pvalue:.3f}" in md
    agg = compare.aggregate([r for r in currency.collect(tmp_path).current], "bce")
    diffs = {m: [np.subtract(per_seed[m, c], per_seed["bce", c]) for c in cases] for m in ("ensloss", "hinge")}
    on = claims.holm_family({m: claims.on_these_cases(d) for m, d in diffs.items()}, "on")
    across = claims.holm_family({m: claims.across_cases([x.mean() for x in d]) for m, d in diffs.items()}, "across")
    s = agg.summary("ensloss")
    assert s.on == on["ensloss"] and s.across == across["ensloss"]
    assert s.on.n == 15 and s.on.verdict == "better" and s.on.ci[0] > 0  # every pair favours ensloss
    # 3 cases: the across-cases test's smallest p (0.25) cannot reach Holm's 0.05 / 2
    assert s.across.verdict == f"too few cases to claim (needs ≥ {claims.cases_needed(2)})" == \
        "too few cases to claim (needs ≥ 7)"
    assert "On these cases (stratified sign-flip over case×seed pairs, Holm over 2 methods): better" in md
    assert "Across cases (exact sign-flip on case means, Holm over 2 methods): too few cases to claim (needs ≥ 7)" in md
    assert "Bonferroni" not in md and "case-bootstrap" not in md
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

    monkeypatch.setattr(losses_report, "figures", suite_figures, raising=False)
    site.write_markdown(results, out, figures)
    text = out.read_text()
    pareto = figures / "losses" / "standard" / "pareto-step-time.png"
    assert pareto.read_bytes()[:4] == b"\x89PNG" and seen == [4]
    assert "[Pareto: primary metric against step time](docs/figures/losses/standard/pareto-step-time.png)" in text
    assert "[Suite figure](docs/figures/losses/standard/extra.png)" in text
    assert site.check_markdown(results, out, figures)
    stamp = pareto.stat().st_mtime_ns
    assert site.markdown_problems(results, out, figures) == [] and pareto.stat().st_mtime_ns == stamp  # not redrawn
    (figures / "losses" / "standard" / "extra.png").unlink()
    assert site.markdown_problems(results, out, figures) == ["figure docs/figures/losses/standard/extra.png is missing"]
