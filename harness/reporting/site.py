"""Readable reports from run records: the Markdown leaderboard (a summary plus one page per suite), a static
HTML site, and ``python -m harness report`` for a user's own results folder.

Every table comes from :mod:`harness.reporting.leaderboard`'s table builders (``case_frame``, ``aggregate_table``,
``coverage_line``) and :mod:`harness.reporting.compare`'s aggregate; this module only arranges and renders them.
What it adds is the summary ranking per suite and profile (:func:`summary_frame`): methods ordered by mean
rank over cases (the Friedman set of :func:`harness.reporting.compare.aggregate`), then by their mean primary metric,
with the mean over cases of each case's seed mean **± its standard error from seed variation**: per-case
sem over seeds (std / sqrt(n), ddof=1) combined as sqrt(sum sem_c^2) / n_cases. Case-to-case spread is
not in that interval (the across-cases claim treats cases as the unit).

``python -m harness leaderboard`` (:func:`write_markdown`) writes ``leaderboard.md``, the suite pages, and
``docs/findings.md`` (each suite's claims and its report's ``findings(records)``, :mod:`harness.reporting.suites`)
and the block between ``<!-- findings:start -->`` and ``<!-- findings:end -->`` in ``README.md`` beside the
leaderboard; ``--check`` (:func:`markdown_problems`) compares them too, so no result claim in them can drift from
the records. It compares the Markdown only (PNG bytes vary with matplotlib versions): it draws the figures into a
temporary folder to learn their names and checks that the committed PNG files exist.

Cases with a single row each (remote sensing's probe cases: one frozen-encoder row per case) are shown as
one table, a row per case, instead of one table per case; suites where several methods share cases also get
a case x method overview of the primary metric.

The HTML site is static and self-contained: inline CSS, a few lines of inline JavaScript that sort a table
when a header is clicked, and the figures copied under ``figures/``. It works offline from ``file://``.
"""

from __future__ import annotations

import html
import math
import os
import re
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
from tabulate import tabulate

from harness.core.digest import REPO
from harness.errors import UsageError
from harness.records import currency, higher_is_better, load_record, record_path
from harness.records.manifest import file_sha256, read_manifest
from harness.reporting import informative
from harness.reporting import leaderboard as lb
from harness.reporting.aggregates import robust_table
from harness.reporting.compare import Aggregate, aggregate
from harness.reporting.figures import mean_over_cases
from harness.reporting.history import history_figure, suite_history
from harness.reporting.informative import Check
from harness.reporting.suites import (
    data_tables,
    description,
    findings,
    reference_methods,
    reproductions,
    summary_split,
)
from harness.suites import case_specs, get_suite, is_suite, seed_count, suite_names
from harness.suites.seeds import COMMITTED_SMOKE_SEEDS

PAGES_DIR = Path("docs") / "leaderboard"  # per-suite Markdown pages, beside leaderboard.md
DEFAULT_FIGURES = Path("docs") / "figures"  # figures beside leaderboard.md
FINDINGS = Path("docs") / "findings.md"  # every suite's claims and findings, generated (beside leaderboard.md)
README_START, README_END = "<!-- findings:start -->", "<!-- findings:end -->"  # generated block in README.md
ROBUST_TITLE = ("Robust aggregates over the same cases (rliable's definitions, `harness/reporting/aggregates.py`; "
                "descriptive, the claims above are the tests): IQM and mean of all case × seed scores and the "
                "probability that a seed of the method beats a seed of the baseline, averaged over cases, each with "
                "a 95% stratified-bootstrap interval")
INFORMATIVE_NOTE = ("A case ranks methods only when its baseline clears chance by the suite's margin, fixed before "
                    "any record was read (:mod:`harness.reporting.informative`); chance is the majority-class rate "
                    "of the case's own test labels (0.5 for AUROC). The last column lists methods whose held-out "
                    "accuracy on their own training distribution sits below the same floor.")
MAX_SUMMARY_FIGURES = 4  # figure links per suite in the summary; the suite page lists them all


@dataclass
class CaseView:
    case: str
    primary: str
    higher: bool
    selection: str
    main: pd.DataFrame | None  # rows with the case's seed count, tested against the baseline
    apart: pd.DataFrame | None  # other seed counts: shown, not tested
    n_seeds: int
    stale: list[str] = field(default_factory=list)  # labels of stale rows (report only)
    reproduction: str = ""  # why the case is a reproduction outside the rankings ("" when it ranks)
    checks: list[Check] = field(default_factory=list)  # its informativeness floors (:mod:`.informative`)


@dataclass
class SectionView:
    """One suite at one profile: everything both renderers show."""

    suite: object
    profile: str
    records: list[dict]
    agg: Aggregate
    summary: pd.DataFrame
    coverage: str
    intro: str
    cases: list[CaseView]
    aggregate: pd.DataFrame | None
    robust: pd.DataFrame | None  # IQM, mean and P(improvement) with stratified-bootstrap intervals (descriptive)
    claims: list[str]
    notes: list[str]
    figures: list[tuple[str, Path]] = field(default_factory=list)  # (title, drawn file)
    tables: list[tuple] = field(default_factory=list)  # the suite's data_tables: (title, frame[, note])

    @property
    def name(self) -> str:
        return self.suite.NAME


@dataclass
class Report:
    sections: list[SectionView]
    stale: list[tuple[Path, str]]  # every stale record, shown or not
    stale_included: bool  # True for `harness report`: stale records are in the tables, flagged
    skipped: list[tuple[Path, str]] = field(default_factory=list)  # records no table can show (unknown suite)


# ---------------------------------------------------------------------------------------------- the tables


def _pm(mean: float | None, err: float | None) -> str:
    if mean is None:
        return "n/a"
    return f"{mean:.4f} ± {err:.4f}" if err is not None else f"{mean:.4f}"


def _label(rec: dict) -> str:
    return rec["method"] + (f" {rec['hparam_overrides']}" if rec["hparam_overrides"] else "")


def summary_frame(suite, profile: str, records: list[dict], agg: Aggregate, declared: list[str]) -> pd.DataFrame:
    """Methods of one suite and profile, best first: mean rank, mean ± sem of the primary metric over cases
    (one column per primary metric when cases differ), cases covered, seeds, the aggregate's verdict."""
    groups: dict[str, list[dict]] = {}
    split: set[str] = set()  # rows of one part of a method's cases (remote sensing: an encoder), descriptive
    for rec in records:
        label, part = _label(rec), summary_split(suite, rec)
        if part:
            label = f"{label} [{part}]"
            split.add(label)
        groups.setdefault(label, []).append(rec)
    metrics = sorted({r["primary_metric"] for r in records},
                     key=lambda m: (-sum(r["primary_metric"] == m for r in records), m))
    direction = {m: higher_is_better(next(r for r in records if r["primary_metric"] == m), m) for m in metrics}
    n_declared = len(declared) or len({r["case"] for r in records})
    rows = []
    for label, recs in groups.items():
        default = not recs[0]["hparam_overrides"] and label not in split
        s = agg.summary(label) if default else None
        row: dict = {"method": label}
        row["mean rank"] = f"{s.mean_rank:.2f}" if s is not None and s.mean_rank is not None else "—"
        key = None
        for m in metrics:
            mean, sem = mean_over_cases([r for r in recs if r["primary_metric"] == m], m)
            n = sum(r["primary_metric"] == m and r["status"] == "ok" for r in recs)
            head = f"{m} ({'↑' if direction[m] else '↓'}), mean ± sem"
            row[head] = "" if mean is None else _pm(mean, sem) + (f" ({n} cases)" if len(metrics) > 1 else "")
            if key is None and mean is not None:
                key = mean if direction[m] else -mean
        ok = [r for r in recs if r["status"] == "ok"]
        row["cases"] = f"{len({r['case'] for r in ok})} / {n_declared}"
        seeds = sorted({len(r["seeds"]) for r in recs})
        row["seeds"] = str(seeds[0]) if len(seeds) == 1 else f"{seeds[0]}–{seeds[-1]}"
        row[f"vs {suite.BASELINE}: on these cases"] = "" if s is None else s.role or (s.on.verdict if s.on else "")
        row[f"vs {suite.BASELINE}: across cases"] = "" if s is None or s.across is None else s.across.verdict
        diverged = len(recs) - len(ok)
        row["diverged"] = str(diverged) if diverged else ""
        stale = sum("_stale" in r for r in recs)
        row["stale records"] = f"{stale} of {len(recs)}" if stale else ""
        rank = s.mean_rank if s is not None and s.mean_rank is not None else math.inf
        row["_key"] = (rank, -(key if key is not None else -math.inf), label)
        rows.append(row)
    rows.sort(key=lambda r: r.pop("_key"))
    frame = pd.DataFrame(rows)
    frame.insert(0, "#", [str(i + 1) for i in range(len(frame))])
    return frame.loc[:, (frame != "").any(axis=0)]


def pivot_frame(records: list[dict]) -> pd.DataFrame:
    """Primary metric (mean ± std over seeds) by case (rows) and method (columns)."""
    rows: dict[str, dict[str, str]] = {}
    for rec in sorted(records, key=lambda r: (r["case"], _label(r))):
        m = rec["metrics"].get(rec["primary_metric"], {})
        value = lb._fmt(m.get("mean"), m.get("std")) if rec["status"] == "ok" else "diverged"
        arrow = "↑" if higher_is_better(rec, rec["primary_metric"]) else "↓"
        rows.setdefault(rec["case"], {"case": rec["case"], "metric": f"{rec['primary_metric']} ({arrow})"})
        rows[rec["case"]][_label(rec)] = value
    return pd.DataFrame(list(rows.values())).fillna("")


def _declared(suite, profile: str) -> list[str]:
    if getattr(suite, "DATASET_OPTION", False):
        return []
    try:
        return [s.case for s in case_specs(suite, profile)]
    except Exception:  # a suite whose case list needs data this machine lacks still gets its report
        return []


def _flag_stale(frame: pd.DataFrame, recs: list[dict]) -> pd.DataFrame:
    """Mark the rows of stale records (``harness report`` only) in the method column: "name (stale)"."""
    stale = {_label(r) for r in recs if "_stale" in r}
    if stale:
        frame = frame.assign(method=[f"{m} (stale)" if m in stale else m for m in frame["method"]])
    return frame


def tested_seeds(suite, profile: str, case: str | None = None) -> int:
    """The seed count a table tests: the suite's, and for smoke the committed smoke records' (the gate pairs them)."""
    n = seed_count(suite, profile, case)
    return max(n, COMMITTED_SMOKE_SEEDS) if profile == "smoke" else n


def section_view(suite, profile: str, recs: list[dict]) -> SectionView:
    """The tables of one suite and profile, split by seed count as the leaderboard splits them."""
    n_std = tested_seeds(suite, profile)
    n_case = {c: tested_seeds(suite, profile, c) for c in {r["case"] for r in recs}}
    main = [r for r in recs if len(r["seeds"]) == n_case[r["case"]]]
    apart = [r for r in recs if len(r["seeds"]) != n_case[r["case"]]]
    repro = reproductions(suite)
    ranked = [r for r in main if r["case"] not in repro]  # a reproduction's table is shown; it ranks nothing
    agg = aggregate(ranked, suite.BASELINE, refs=reference_methods(suite))
    intro = (f"{description(suite)}. Standard seed count: {n_std}"
             + (" (more where a case asks for it)" if any(n != n_std for n in n_case.values()) else "")
             + f"; baseline: `{suite.BASELINE}`.")
    cases = []
    for case in sorted(n_case):
        rows = [r for r in main if r["case"] == case]
        others = [r for r in apart if r["case"] == case]
        first = (rows or others)[0]
        cases.append(CaseView(
            case, first["primary_metric"], higher_is_better(first, first["primary_metric"]),
            "; ".join(sorted({r["model_selection"] for r in rows + others})),
            _flag_stale(lb.case_frame(rows, suite), rows) if rows else None,
            _flag_stale(lb.case_frame(others, suite, n_case[case], tested=False), others) if others else None,
            n_case[case], [_label(r) for r in rows + others if "_stale" in r], repro.get(case, ""),
            informative.case_checks(suite, case, rows)))
    # only rows with the suite's seed count enter the summary's means and ranks (as the aggregate's tests)
    declared = [c for c in _declared(suite, profile) if c not in repro]
    return SectionView(suite, profile, recs, agg, summary_frame(suite, profile, ranked, agg, declared),
                       lb.coverage_line(suite, profile, recs), intro, cases,
                       lb.aggregate_table(agg) if agg.summaries else None, robust_table(main, agg),
                       lb.claim_lines(agg) + _repro_lines(repro, n_case), findings(suite, main),
                       tables=data_tables(suite, recs))


def _repro_lines(repro: dict[str, str], present: dict[str, int]) -> list[str]:
    shown = {case: why for case, why in repro.items() if case in present}
    if not shown:
        return []
    return ["Reproductions, outside the rankings and claims: "
            + "; ".join(f"`{case}` ({why})" for case, why in sorted(shown.items())) + "."]


def informative_frame(cases: list[CaseView]) -> pd.DataFrame | None:
    """Per case: does the baseline clear each floor, and which methods do not fit their training data."""
    rows = []
    for c in cases:
        base = [k for k in c.checks if not k.floor.each_method]
        fits = [k for k in c.checks if k.floor.each_method]
        if not c.checks:
            continue
        rows.append({
            "case": c.case,
            "baseline": "; ".join(k.describe() for k in base),
            "informative": "reproduction" if c.reproduction else "yes" if all(k.ok for k in base) else "NO",
            "below their training-data floor": ", ".join(f"{k.method} ({k.value:.3f} < {k.needed:.3f})"
                                                         for k in fits if not k.ok) or "none",
        })
    return pd.DataFrame(rows) if rows else None


def merged_single_rows(cases: list[CaseView]) -> tuple[list[tuple[list[str], bool, pd.DataFrame]], list[CaseView]]:
    """Cases whose table has a single row joined into one table per column set, a row per case; returns those
    tables as (cases, tested, frame), tested False for rows with another seed count, and the cases left to
    show one by one."""
    groups: dict[tuple, list[CaseView]] = {}
    rest = []
    for c in cases:
        frames = [f for f in (c.main, c.apart) if f is not None]
        if len(frames) == 1 and len(frames[0]) == 1 and not c.reproduction:
            groups.setdefault((c.primary, c.main is not None, tuple(frames[0].columns)), []).append(c)
        else:
            rest.append(c)
    tables = []
    for (_, tested, _), group in groups.items():
        if len(group) < 2:
            rest.extend(group)
            continue
        frame = pd.concat([(c.main if tested else c.apart).assign(case=c.case) for c in group], ignore_index=True)
        frame = frame[["case"] + [col for col in frame.columns if col != "case"]]
        tables.append(([c.case for c in group], tested, frame.loc[:, (frame != "").any(axis=0)]))
    rest.sort(key=lambda c: c.case)
    return tables, rest


def _merged_title(sec: SectionView, cases: list[str], tested: bool) -> str:
    c = next(c for c in sec.cases if c.case == cases[0])
    return (f"{len(cases)} cases with one row each (primary metric `{c.primary}`, "
            f"{'higher' if c.higher else 'lower'} is better"
            + ("" if tested else f"; seed count other than {c.n_seeds}: not tested") + ")")


# -------------------------------------------------------------------------------------------- collecting


def mark_remeasured(results_dir: Path, recs: list[dict]) -> None:
    """Attach (in memory, ``_remeasured``) the step time ``verify`` re-measured for a record, when the manifest holds
    one for the record's current bytes: the tables show it beside the recorded time."""
    files = read_manifest(results_dir)["files"]
    for rec in recs:
        path = record_path(results_dir, rec["suite"], rec["case"], rec["method"], rec["profile"],
                           rec.get("hparam_overrides"))
        entry = files.get(path.relative_to(results_dir).as_posix(), {})
        if "remeasured" in entry and path.is_file() and entry.get("sha256") == file_sha256(path):
            rec["_remeasured"] = dict(entry["remeasured"], commit=entry.get("verified_at"))


def build(results_dir: Path, profiles: tuple[str, ...] | None = lb.RANKED_PROFILES,
          include_stale: bool = False) -> Report:
    """The sections for ``results_dir``: current records only (the leaderboard) or, with ``include_stale``,
    every record whose suite is known (the report on a user's own runs; stale ones are listed with why).
    ``profiles=None`` takes every profile present (smoke too)."""
    results_dir = Path(results_dir)
    if not results_dir.is_dir():
        raise UsageError(f"results folder {results_dir} does not exist")
    collected = currency.collect(results_dir)
    recs = list(collected.current)
    mark_remeasured(results_dir, recs)
    for rec in recs:  # in memory only: where a report hook finds the record's evidence
        rec["_path"] = str(record_path(results_dir, rec["suite"], rec["case"], rec["method"], rec["profile"],
                                       rec.get("hparam_overrides")))
    skipped = []
    if include_stale:
        for path, why in collected.stale:
            rec = load_record(path)
            if is_suite(rec["suite"]):
                rec["_stale"] = why  # in memory only: the tables flag it
                rec["_path"] = str(path)
                recs.append(rec)
            else:
                skipped.append((path, why))
    sections = []
    for name in suite_names():
        suite = get_suite(name)
        order = ("full", "standard", "smoke")
        present = sorted({r["profile"] for r in recs if r["suite"] == name},
                         key=lambda p: (order.index(p) if p in order else len(order), p))
        for profile in present if profiles is None else [p for p in profiles if p in present]:
            mine = [r for r in recs if r["suite"] == name and r["profile"] == profile]
            sections.append(section_view(suite, profile, mine))
    return Report(sections, collected.stale, include_stale, skipped)


def draw_figures(report: Report, folder: Path) -> None:
    """Draw every section's figures under ``folder/<suite>/<profile>/`` (the leaderboard's figure code)."""
    for sec in report.sections:
        main = [r for r in sec.records if len(r["seeds"]) == tested_seeds(sec.suite, sec.profile, r["case"])]
        drawn = lb.draw_section_figures(sec.suite, sec.profile, main, sec.agg, Path(folder), ".")
        sec.figures = [(title, Path(folder) / href) for title, href in drawn]


# ----------------------------------------------------------------------------------------------- Markdown


def md_text(text: object) -> str:
    """Text from a record made inert in Markdown: one line, no HTML, no table-cell break, no link."""
    line = " ".join(str(text).splitlines())
    return (line.replace("\\", "\\\\").replace("|", "\\|").replace("<", "&lt;").replace(">", "&gt;")
            .replace("](", "]\\("))


def md_code(text: object) -> str:
    """Text from a record as a Markdown code span that no backtick inside it can close early."""
    line = " ".join(str(text).splitlines())
    return f"`` {line} ``" if "`" in line else f"`{line}`"


def _md_table(frame: pd.DataFrame) -> str:
    safe = frame.rename(columns=md_text).map(md_text)
    return tabulate(safe, headers="keys", tablefmt="github", showindex=False, disable_numparse=True)


def _rel(path: Path, start: Path) -> str:
    return Path(os.path.relpath(Path(path).resolve(), Path(start).resolve())).as_posix()


def _anchor(sec: SectionView) -> str:
    return f"{sec.name}-{sec.profile}"


def _stale_md(report: Report, results_dir: Path) -> list[str]:
    if not report.stale:
        return []
    head = ("## Stale records (included above, flagged here)" if report.stale_included
            else "## Stale records (not ranked)")
    out = ["", head, ""]
    if report.stale_included:
        out += ["These records were made by other code than the code here now (or by a method this harness has not "
                "loaded, e.g. from `--method-module`: its code version cannot be checked without importing it). "
                "They are in the tables above; rerun them to compare like with like.", ""]
    else:
        out += ["Regenerate them with `python -m harness regenerate --stale` (see CONTRIBUTING.md).", ""]
    out += [f"- {md_code(Path(p).relative_to(results_dir).as_posix())}: {md_text(why)}" for p, why in report.stale]
    if report.skipped:
        out += ["", "Not shown (no table can place them): "
                + "; ".join(f"{md_code(Path(p).relative_to(results_dir).as_posix())} ({md_text(why)})"
                            for p, why in report.skipped)]
    return out


def summary_markdown(report: Report, results_dir: Path, page_href: dict[str, str] | None,
                     figure_base: Path | None, title: str = "Leaderboard", stale: bool = True) -> str:
    """The summary: per suite and profile, the ranking table, the coverage and the aggregate's claims, linking
    to the suite's page (``page_href``: suite -> link) and to at most a few figures (relative to ``figure_base``)."""
    parts = [lb.HEADER, "", f"# {title}", "",
             "Rows come from run records whose task fingerprint and code versions (method, protocol and suite source) "
             "match the current code. Per-case values are mean ± std (sample std, ddof=1) over seeds; the summary's "
             "mean ± sem is the mean over cases of each case's seed mean, with its standard error from seed "
             "variation (per-case sem combined as sqrt(Σ sem²) / cases; case-to-case spread is not in it). Methods "
             "are ordered by mean rank over cases (1 = best; only methods run on every compared case get one), then "
             "by the mean primary metric. `standard` budgets are short CPU budgets: absolute accuracies sit far "
             "below published numbers, and rankings may change at `full`.",
             "", lb.RULE]
    if report.stale_included and report.stale:
        parts += ["", f"**{len(report.stale)} stale record(s) are included in these tables** (made by other code than "
                  "the code here now, or by a method not loaded here); they are listed at the end."]
    if report.sections:
        parts += ["", "Suites: " + ", ".join(f"[{s.name} ({s.profile})](#{_anchor(s)})" for s in report.sections)]
    else:
        parts += ["", "No records to show."]
    for sec in report.sections:
        parts += ["", f'<a id="{_anchor(sec)}"></a>', "", f"## {sec.name} ({sec.profile} profile)", "", sec.intro,
                  "", sec.coverage, "", _md_table(sec.summary)]
        if page_href is not None:
            parts += ["", f"Per-case tables, the aggregate and the suite's findings: "
                          f"[{sec.name} details]({page_href[sec.name]}#{_anchor(sec)})."]
        parts += [""] + [f"- {line}" for line in sec.claims]
        if sec.figures and figure_base is not None:
            shown = sec.figures[:MAX_SUMMARY_FIGURES]
            more = len(sec.figures) - len(shown)
            parts += ["", "Figures: " + "; ".join(f"[{t}]({_rel(p, figure_base)})" for t, p in shown)
                      + (f"; and {more} more on the suite page." if more else ".")]
    if stale:
        parts += _stale_md(report, results_dir)
    return "\n".join(parts) + "\n"


def section_markdown(sec: SectionView, figure_base: Path | None, level: int = 2) -> list[str]:
    """One suite and profile in full: summary, aggregate and claims, overview, per-case tables, notes, figures."""
    h = "#" * level
    parts = ["", f'<a id="{_anchor(sec)}"></a>', "", f"{h} {sec.name} ({sec.profile} profile)", "", sec.intro,
             "", sec.coverage, "", "Summary (as in the leaderboard):", "", _md_table(sec.summary)]
    parts += ["", f"{h}# {sec.name} ({sec.profile}): across cases", ""]
    if sec.aggregate is not None:
        parts += [_md_table(sec.aggregate), ""]
    parts += [f"- {line}" for line in sec.claims]
    if sec.robust is not None:
        parts += ["", f"{ROBUST_TITLE}:", "", _md_table(sec.robust)]
    if sec.figures and figure_base is not None:
        parts += ["", f"{h}# Figures", ""] + [f"- [{t}]({_rel(p, figure_base)})" for t, p in sec.figures]
    informative_table = informative_frame(sec.cases)
    if informative_table is not None:
        parts += ["", f"{h}# Is each case informative?", "", INFORMATIVE_NOTE, "", _md_table(informative_table)]
    if any(c.main is not None and len(c.main) > 1 for c in sec.cases):
        parts += ["", f"{h}# Overview: primary metric by case and method (mean ± std over seeds)", "",
                  _md_table(pivot_frame(sec.records))]
    merged, rest = merged_single_rows(sec.cases)
    for cases, tested, frame in merged:
        parts += ["", f"{h}# {_merged_title(sec, cases, tested)}", "", _md_table(frame)]
    for c in rest:
        parts += ["", f"{h}# {sec.name} / {md_code(c.case)}", "",
                  f"Primary metric `{c.primary}` ({'higher' if c.higher else 'lower'} is better); "
                  f"model selection: {c.selection}." + _stale_note(c)
                  + (f" **Reproduction, outside the rankings and claims:** {c.reproduction}." if c.reproduction
                     else "")]
        if c.main is not None:
            parts += ["", _md_table(c.main)]
        if c.apart is not None:
            parts += ["", f"Rows with a seed count other than {c.n_seeds} (not tested, not in the aggregate):", "",
                      _md_table(c.apart)]
    for title, frame, *note in sec.tables:
        parts += ["", f"{h}# {title}", "", *(n for line in note for n in (line, "")), _md_table(frame)]
    if sec.notes:
        parts += ["", f"{h}# Per-case notes from the suite (descriptive; the claims are the aggregate's)", ""]
        parts += [f"- {s}" for s in sec.notes]
    return parts


def _stale_note(c: CaseView) -> str:
    return f" Stale rows (other code; see the list at the end): {', '.join(c.stale)}." if c.stale else ""


def suite_page_markdown(suite: str, sections: list[SectionView], summary_href: str, figure_base: Path | None) -> str:
    parts = [lb.HEADER, "", f"# {suite}: full tables", "", f"Back to the [leaderboard summary]({summary_href}). "
             "Per-case values are mean ± std over seeds; how rows are compared is stated in the summary."]
    for sec in sections:
        parts += section_markdown(sec, figure_base)
    return "\n".join(parts) + "\n"


def markdown_files(results_dir: Path, out: Path, figures_dir: Path, render_dir: Path | None = None) -> dict[Path, str]:
    """leaderboard.md (``out``) and its per-suite pages (``docs/leaderboard/<suite>.md`` beside it) as
    {path: text}; figures are drawn into ``render_dir`` (default ``figures_dir``) and linked where
    ``figures_dir`` puts them."""
    out = Path(out)
    report = build(results_dir)
    draw_figures(report, Path(render_dir or figures_dir))
    if render_dir is not None:  # link the committed location, not the temporary one
        for sec in report.sections:
            sec.figures = [(t, Path(figures_dir) / Path(p).relative_to(render_dir)) for t, p in sec.figures]
    pages_dir = out.parent / PAGES_DIR
    names = list(dict.fromkeys(s.name for s in report.sections))
    hrefs = {n: _rel(pages_dir / f"{n}.md", out.parent) for n in names}
    files = {out: summary_markdown(report, Path(results_dir), hrefs, out.parent)}
    for n in names:
        files[pages_dir / f"{n}.md"] = suite_page_markdown(
            n, [s for s in report.sections if s.name == n], _rel(out, pages_dir), pages_dir)
    findings = out.parent / FINDINGS
    files[findings] = findings_markdown(report, _rel(out, findings.parent))
    readme = out.parent / "README.md"  # its findings block, when it has one (a scratch folder has none)
    if readme.is_file():
        text = with_readme_block(readme.read_text(encoding="utf-8"),
                                 readme_block(report, _rel(findings, out.parent)))
        if text is not None:
            files[readme] = text
    return files


def findings_markdown(report: Report, summary_href: str) -> str:
    """docs/findings.md: per suite and profile, the aggregate's claims and the suite's own findings, all generated
    from the records by :mod:`harness.reporting.compare`'s rule (so no finding is written by hand)."""
    parts = [lb.HEADER, "", "# Findings", "", f"Generated from the records with the statistics stated in the "
             f"[leaderboard summary]({summary_href}) (per case: exact sign-flip with Holm; suite claims on these "
             "cases and across cases). Nothing here is written by hand."]
    if not report.sections:
        parts += ["", "No current records."]
    for sec in report.sections:
        parts += ["", f"## {sec.name} ({sec.profile} profile)", "", "Claims from the aggregate:", ""]
        parts += [f"- {line}" for line in sec.claims]
        if sec.notes:
            parts += ["", "The suite's findings:", ""] + [f"- {line}" for line in sec.notes]
    return "\n".join(parts) + "\n"


def readme_block(report: Report, findings_href: str) -> str:
    """The README's generated block: each suite's findings (the claims with them are in docs/findings.md)."""
    parts = [README_START, "", "<!-- Generated by `python -m harness leaderboard` from results/. Do not edit by "
             "hand. -->", "", f"Generated from the committed records; with each suite's claims in "
             f"[{findings_href}]({findings_href}).", ""]
    for sec in report.sections:
        parts += [f"**{sec.name} ({sec.profile})**", ""]
        parts += [f"- {line}" for line in (sec.notes or ["(no findings from this suite's records)"])] + [""]
    if not report.sections:
        parts += ["No current records.", ""]
    return "\n".join(parts + [README_END])


def with_readme_block(text: str, block: str) -> str | None:
    """``text`` with its findings block replaced by ``block``; None when it has no (well-formed) block."""
    start, end = text.find(README_START), text.find(README_END)
    if start < 0 or end < start:
        return None
    return text[:start] + block + text[end + len(README_END):]


def _figures_dir(out: Path, figures_dir: Path | None) -> Path:
    return Path(figures_dir) if figures_dir is not None else Path(out).parent / DEFAULT_FIGURES


def write_markdown(results_dir: Path, out: Path, figures_dir: Path | None = None) -> list[Path]:
    """Write the summary ``out``, the per-suite pages, docs/findings.md and the README block (pages of suites without
    records any more are removed), and draw the figures into ``figures_dir`` (default ``docs/figures`` beside
    ``out``)."""
    files = markdown_files(results_dir, out, _figures_dir(out, figures_dir))
    pages_dir = Path(out).parent / PAGES_DIR
    for old in pages_dir.glob("*.md") if pages_dir.is_dir() else []:
        if old not in files:
            old.unlink()
    for path, text in files.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return list(files)


def markdown_problems(results_dir: Path, out: Path, figures_dir: Path | None = None) -> list[str]:
    """Why the summary or a suite page is not what the records generate now, or a linked figure is missing (empty
    when all is up to date)."""
    if not Path(out).is_file():
        return [f"{out} does not exist; run `python -m harness leaderboard`"]
    with tempfile.TemporaryDirectory() as tmp:
        files = markdown_files(results_dir, out, _figures_dir(out, figures_dir), render_dir=Path(tmp))
    found = []
    for path, text in files.items():
        shown = path if path == Path(out) else path.relative_to(Path(out).parent)
        if not path.is_file():
            found.append(f"{shown} does not exist; run `python -m harness leaderboard`")
        elif path.read_text(encoding="utf-8") != text:
            what = ": its findings block differs from" if path.name == "README.md" else " differs from"
            found.append(f"{shown}{what} what the records in {results_dir} generate")
    pages_dir = Path(out).parent / PAGES_DIR
    found += [f"{p.relative_to(Path(out).parent)} is not generated by the records any more"
              for p in (sorted(pages_dir.glob("*.md")) if pages_dir.is_dir() else []) if p not in files]
    missing = []
    for path, text in files.items():
        for href in re.findall(r"\]\(([^)#]+\.png)\)", text):
            target = (path.parent / href).resolve()
            shown = _rel(target, Path(out).parent)
            if not target.is_file() and shown not in missing:
                missing.append(shown)
    return found + [f"figure {m} is missing" for m in missing]


def informative_problems(results_dir: Path) -> list[str]:
    """Ranked cases (standard and full) whose baseline sits below a floor of its suite's report and that the report
    does not declare a reproduction: one line each (:mod:`harness.reporting.informative`)."""
    # the checks section_view made for each case's tested rows
    return [informative.problem(sec.name, sec.profile, check) for sec in build(results_dir).sections
            if sec.profile in lb.RANKED_PROFILES for case in sec.cases if not case.reproduction
            for check in case.checks if not check.floor.each_method and not check.ok]


def check_markdown(results_dir: Path, out: Path, figures_dir: Path | None = None) -> bool:
    """True when ``out`` and its pages equal what the records generate now and their linked figures exist."""
    if not Path(out).is_file():
        raise UsageError(f"{out} does not exist; run `python -m harness leaderboard`")
    return not markdown_problems(results_dir, out, figures_dir)


# ------------------------------------------------------------------------------------------------- HTML

CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:1.5rem auto;max-width:1200px;
padding:0 1rem;color:#1d1d1f;line-height:1.45}
h1{font-size:1.6rem}h2{font-size:1.3rem;margin-top:2rem;border-bottom:1px solid #ddd}h3{font-size:1.05rem}
table{border-collapse:collapse;margin:.5rem 0 1rem;font-size:.85rem;font-variant-numeric:tabular-nums}
th,td{border:1px solid #d0d7de;padding:.25rem .5rem;text-align:left;white-space:nowrap}
th{background:#f1f3f5;cursor:pointer;user-select:none}th:hover{background:#e2e6ea}
th[data-dir=asc]::after{content:" ▲"}th[data-dir=desc]::after{content:" ▼"}
tr:nth-child(even) td{background:#fafbfc}.wrap{overflow-x:auto}
.note{color:#555;font-size:.9rem}.stale{background:#fff4e5;border:1px solid #f0c36d;padding:.5rem .75rem}
figure{display:inline-block;margin:.5rem 1rem .5rem 0;vertical-align:top}figure img{max-width:100%}
figcaption{font-size:.85rem;color:#555}details{margin:.5rem 0}summary{cursor:pointer}
"""

# sort a table by the clicked column: numbers by their leading value ("0.81 ± 0.02" -> 0.81), else as text
SORT_JS = """
document.querySelectorAll("table.sortable th").forEach(function (th) {
  th.addEventListener("click", function () {
    var table = th.closest("table"), body = table.tBodies[0];
    var col = Array.prototype.indexOf.call(th.parentNode.children, th);
    var asc = th.dataset.dir !== "asc";
    table.querySelectorAll("th").forEach(function (h) { delete h.dataset.dir; });
    th.dataset.dir = asc ? "asc" : "desc";
    function key(tr) {
      var t = tr.children[col].textContent.trim(), n = parseFloat(t);
      return isNaN(n) ? t.toLowerCase() : n;
    }
    Array.from(body.rows).sort(function (a, b) {
      var x = key(a), y = key(b), c;
      if (typeof x === typeof y) { c = x < y ? -1 : x > y ? 1 : 0; } else { c = typeof x === "number" ? -1 : 1; }
      return asc ? c : -c;
    }).forEach(function (tr) { body.appendChild(tr); });
  });
});
"""


def _html_table(frame: pd.DataFrame, table_id: str | None = None) -> str:
    text = frame.to_html(index=False, escape=True, border=0, classes="sortable", table_id=table_id, na_rep="")
    return f'<div class="wrap">{text}</div>'


def _p(text: str) -> str:
    """A line of the Markdown prose as HTML: escaped, `code` spans kept."""
    return re.sub(r"`([^`]+)`", r"<code>\1</code>", html.escape(text))


def _page(title: str, body: list[str]) -> str:
    return "\n".join([
        "<!DOCTYPE html>", '<html lang="en">', "<head>", '<meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{html.escape(title)}</title>", f"<style>{CSS}</style>", "</head>", "<body>",
        *body, f"<script>{SORT_JS}</script>", "</body>", "</html>", ""])


def _stale_html(report: Report, results_dir: Path) -> list[str]:
    if not report.stale:
        return []
    items = "".join(f"<li><code>{html.escape(Path(p).relative_to(results_dir).as_posix())}</code>: "
                    f"{html.escape(why)}</li>" for p, why in report.stale)
    what = ("included in the tables above" if report.stale_included
            else "not ranked; regenerate them with <code>python -m harness regenerate --stale</code>")
    return ['<h2 id="stale">Stale records</h2>', f'<details><summary>{len(report.stale)} stale record(s), {what}'
            f"</summary><ul>{items}</ul></details>"]


def index_html(report: Report, results_dir: Path, title: str) -> str:
    body = [f"<h1>{html.escape(title)}</h1>",
            '<p class="note">Generated by <code>python -m harness</code> from the records in '
            f"<code>{html.escape(str(results_dir))}</code>. Per-case values are mean ± std over seeds; the summary's "
            "mean ± sem is the mean over cases of each case's seed mean with its standard error from seed variation "
            "(per-case sem combined as sqrt(Σ sem²) / cases). Methods are ordered by mean rank over cases (1 = best), "
            "then by the mean primary metric. Click a column header to sort.</p>",
            f'<details><summary>How rows are compared</summary><p class="note">{_p(lb.RULE.replace("**", ""))}'
            "</p></details>"]
    if report.stale and report.stale_included:
        body.append(f'<p class="stale"><b>{len(report.stale)} stale record(s) are included</b> (made by other code '
                    'than the code here now, or by a method not loaded here): <a href="#stale">listed below</a>.</p>')
    elif report.stale:
        body.append(f'<p class="note">{len(report.stale)} stale record(s) are not ranked: '
                    '<a href="#stale">listed below</a>.</p>')
    if not report.sections:
        body.append("<p>No records to show.</p>")
    for sec in report.sections:
        page = f"{sec.name}.html#{_anchor(sec)}"
        body += [f'<h2 id="{_anchor(sec)}"><a href="{page}">{html.escape(sec.name)}</a> '
                 f"({html.escape(sec.profile)} profile)</h2>",
                 f'<p class="note">{_p(sec.intro)} {_p(sec.coverage)}</p>',
                 _html_table(sec.summary, f"summary-{_anchor(sec)}"),
                 f'<p class="note">{_p(sec.claims[0])}</p>' if sec.claims else "",
                 f"<details><summary>All {len(sec.claims)} claims from the aggregate</summary><ul>"
                 + "".join(f"<li>{_p(line)}</li>" for line in sec.claims) + "</ul></details>",
                 f'<p><a href="{page}">Per-case tables, aggregate and figures for {html.escape(sec.name)} '
                 f"({html.escape(sec.profile)}) →</a></p>"]
    return _page(title, body + _stale_html(report, results_dir))


def suite_html(suite: str, sections: list[SectionView], site: Path, title: str) -> str:
    body = [f'<p><a href="index.html">← {html.escape(title)}</a></p>', f"<h1>{html.escape(suite)}</h1>"]
    for sec in sections:
        a = _anchor(sec)
        body += [f'<h2 id="{a}">{html.escape(sec.name)} ({html.escape(sec.profile)} profile)</h2>',
                 f'<p class="note">{_p(sec.intro)} {_p(sec.coverage)}</p>', "<h3>Summary</h3>",
                 _html_table(sec.summary, f"summary-{a}"), "<h3>Across cases</h3>"]
        if sec.aggregate is not None:
            body.append(_html_table(sec.aggregate, f"aggregate-{a}"))
        body.append("<ul>" + "".join(f"<li>{_p(line)}</li>" for line in sec.claims) + "</ul>")
        if sec.robust is not None:
            body += [f'<p class="note">{_p(ROBUST_TITLE)}</p>', _html_table(sec.robust, f"robust-{a}")]
        informative_table = informative_frame(sec.cases)
        if informative_table is not None:
            body += ["<h3>Is each case informative?</h3>", f'<p class="note">{_p(INFORMATIVE_NOTE)}</p>',
                     _html_table(informative_table, f"informative-{a}")]
        if any(c.main is not None and len(c.main) > 1 for c in sec.cases):
            body += ["<h3>Overview: primary metric by case and method (mean ± std over seeds)</h3>",
                     _html_table(pivot_frame(sec.records), f"pivot-{a}")]
        merged, rest = merged_single_rows(sec.cases)
        for i, (cases, tested, frame) in enumerate(merged):
            body += [f"<h3>{_p(_merged_title(sec, cases, tested))}</h3>", _html_table(frame, f"cases-{a}-{i}")]
        if rest:
            body.append("<h3>Per-case tables</h3>")
        for c in rest:
            body += [f'<h4 id="{a}-{html.escape(c.case)}">{html.escape(c.case)}</h4>',
                     f'<p class="note">Primary metric <code>{html.escape(c.primary)}</code> '
                     f"({'higher' if c.higher else 'lower'} is better); model selection: "
                     f"{html.escape(c.selection + '.' + _stale_note(c))}"
                     + (f" <strong>Reproduction, outside the rankings and claims:</strong> {_p(c.reproduction)}."
                        if c.reproduction else "") + "</p>"]
            if c.main is not None:
                body.append(_html_table(c.main))
            if c.apart is not None:
                body += [f'<p class="note">Rows with a seed count other than {c.n_seeds} (not tested, not in the '
                         "aggregate):</p>", _html_table(c.apart)]
        if sec.figures:
            figs = [f'<figure><a href="{_rel(p, site)}"><img src="{_rel(p, site)}" alt="{html.escape(t)}" '
                    f'loading="lazy" style="max-width:560px"></a><figcaption>{html.escape(t)}</figcaption></figure>'
                    for t, p in sec.figures]
            body.append("<h3>Figures</h3>")
            body += figs if len(figs) <= 6 else [f"<details><summary>{len(figs)} figures</summary>", *figs,
                                                 "</details>"]
        for i, (title, frame, *note) in enumerate(sec.tables):
            body += [f"<h3>{_p(title)}</h3>", *(f'<p class="note">{_p(line)}</p>' for line in note),
                     _html_table(frame, f"data-{a}-{i}")]
        if sec.notes:
            body += ["<h3>Per-case notes from the suite</h3>",
                     "<ul>" + "".join(f"<li>{_p(s)}</li>" for s in sec.notes) + "</ul>"]
    return _page(f"{suite} — {title}", body)


def write_html(report: Report, results_dir: Path, site: Path, title: str = "Leaderboard") -> Path:
    """Write ``site/index.html``, ``site/<suite>.html`` and the figures under ``site/figures/``; for the
    repository's own ``results/``, also each suite's history across the commits that changed its records."""
    site = Path(site)
    site.mkdir(parents=True, exist_ok=True)
    figures = site / "figures"
    if figures.is_dir():
        shutil.rmtree(figures)  # a figure of an earlier build must not linger
    draw_figures(report, figures)
    if Path(results_dir).resolve() == (REPO / "results").resolve():
        for sec in report.sections:
            path = figures / sec.name / sec.profile / "history.png"
            title_text = f"{sec.name} ({sec.profile}): mean primary metric across the commits that changed it"
            if history_figure(suite_history(sec.name, sec.profile), path, title_text):
                sec.figures.append(("History across commits (`python -m harness history METHOD`)", path))
    (site / "index.html").write_text(index_html(report, Path(results_dir), title), encoding="utf-8")
    for name in dict.fromkeys(s.name for s in report.sections):
        (site / f"{name}.html").write_text(
            suite_html(name, [s for s in report.sections if s.name == name], site, title), encoding="utf-8")
    return site / "index.html"


# ----------------------------------------------------------------------------------------------- report


def report_markdown(report: Report, results_dir: Path, base: Path | None) -> str:
    """The report of a user's results folder as one Markdown file: the summary, every suite in full, then the
    stale records. Figures (drawn by :func:`write_html` beforehand, if at all) are linked relative to ``base``."""
    parts = [summary_markdown(report, results_dir, None, base, title=f"Report: {results_dir}",
                              stale=False).rstrip("\n")]
    for sec in report.sections:
        parts += section_markdown(sec, base, level=2)
    parts += _stale_md(report, results_dir)
    return "\n".join(parts) + "\n"
