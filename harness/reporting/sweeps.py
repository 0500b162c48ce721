"""Model selection over a sweep's runs, and DomainBed's ``collect_results`` tables.

Reads the run files :mod:`harness.running.sweep` writes (it trains nothing) and chooses, per (case, method), one
draw of hparams under each of DomainBed's three rules:

* ``val``, **training-domain validation**: the draw with the best mean (over trials) accuracy of the
  validation checkpoint on the training domains' validation split.
* ``loo``, **leave-one-domain-out cross-validation**: the best mean over trials of the mean over folds of the
  accuracy on the fold's left-out training domain (each fold trained without it). The reported number is the
  full run's (all training domains) validation checkpoint. DomainBed also picks the checkpoint step by the
  same score; here the checkpoint stays the training-domain validation one, so the rules differ in the hparams
  only.
* ``oracle``, **test-domain validation**: the best mean accuracy of the oracle checkpoint on the held-out
  domains' oracle split (15% of each held-out domain, disjoint from ``test``). DomainBed's oracle takes the last
  checkpoint; here the checkpoint is chosen on the same oracle split.

A rule reads selection scores only (``selection.*``, ``fold_acc``): a run's test metrics decide nothing, and
``select`` never looks at them before the choice is made. A draw takes part in a rule when each of its trials
(and, for ``loo``, each fold of each trial) finished with a score; ties go to the lowest draw (draw 0 is the
defaults). The chosen draw's case primary metric (test split) is reported as mean +- standard error over
trials (SE = sample std / sqrt(n); one trial has none), in percent, as DomainBed prints it.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from tabulate import tabulate

from harness.metrics.stats import summarize

RULES = {
    "val": "training-domain validation set",
    "loo": "leave-one-domain-out cross-validation",
    "oracle": "test-domain validation set (oracle)",
}
COLUMNS = ["case", "method", "draw", "trial", "fold", "status", "primary_metric", "sel_val", "sel_oracle", "fold_acc",
           "test_val", "test_oracle", "hparams", "budget"]


def load_runs(folder: Path) -> pd.DataFrame:
    """Every run file under ``folder`` (a sweep root's ``<suite>/<profile>``), one row per run."""
    rows = []
    for path in sorted(Path(folder).glob("*/*/d*_t*.json")):
        run = json.loads(path.read_text())
        ident = run["identity"]
        sel, test = run.get("selection") or {}, run.get("test") or {}
        rows.append({"case": ident["case"], "method": ident["method"], "draw": ident["draw"], "trial": ident["trial"],
                     "fold": ident["fold"], "status": run["status"], "primary_metric": run.get("primary_metric"),
                     "sel_val": sel.get("val"), "sel_oracle": sel.get("oracle"), "fold_acc": run.get("fold_acc"),
                     "test_val": test.get("val"), "test_oracle": test.get("oracle"),
                     "hparams": ident["hparams"], "budget": ident["budget"]})
    runs = pd.DataFrame(rows, columns=COLUMNS)
    for col in ("sel_val", "sel_oracle", "fold_acc", "test_val", "test_oracle"):
        runs[col] = pd.to_numeric(runs[col], errors="coerce")  # None (not kept) becomes NaN
    return runs


def _scores(runs: pd.DataFrame, rule: str) -> pd.DataFrame:
    """Per draw of one (case, method): the rule's selection score and the trials it rests on (no test metric)."""
    main = runs[runs["fold"].isna()]
    n_trials = main["trial"].nunique()
    out = []
    for draw, group in main.groupby("draw"):
        ok = group[group["status"] == "ok"]
        if rule in ("val", "oracle"):
            vals = ok[f"sel_{rule}"].dropna()
            score = vals.mean() if len(vals) == n_trials else math.nan
        else:
            folds = runs[runs["fold"].notna() & (runs["draw"] == draw)]
            per_trial = [f["fold_acc"].mean() for _, f in folds.groupby("trial")
                         if (f["status"] == "ok").all() and f["fold_acc"].notna().all()
                         and len(f) == runs["fold"].dropna().nunique()]
            score = float(np.mean(per_trial)) if len(per_trial) == n_trials and len(ok) == n_trials else math.nan
        out.append({"draw": draw, "score": score, "trials": len(ok)})
    return pd.DataFrame(out, columns=["draw", "score", "trials"])


def select(runs: pd.DataFrame, rule: str) -> dict[str, Any] | None:
    """The draw ``rule`` chooses for one (case, method)'s runs and its test result, or None when no draw can be
    scored (e.g. ``loo`` without fold runs)."""
    scores = _scores(runs, rule).dropna(subset=["score"])
    if scores.empty:
        return None
    best = scores.sort_values(["score", "draw"], ascending=[False, True]).iloc[0]  # ties: lowest draw
    draw = int(best["draw"])
    # only now, with the choice made, are the chosen draw's test results read
    chosen = runs[runs["fold"].isna() & (runs["draw"] == draw)]
    test = chosen["test_oracle" if rule == "oracle" else "test_val"].dropna().to_numpy(dtype=float)
    s = summarize(test) if test.size else {"mean": math.nan, "sem": math.nan, "n": 0}
    first = chosen.iloc[0]
    return {"draw": draw, "score": float(best["score"]), "mean": s["mean"], "se": s["sem"], "n": s["n"],
            "hparams": first["hparams"], "budget": first["budget"], "metric": first["primary_metric"],
            "draws_scored": len(scores)}


def selections(runs: pd.DataFrame) -> pd.DataFrame:
    """One row per (rule, case, method) with the chosen draw (rules that cannot score any draw are left out)."""
    rows = []
    for (case, method), group in runs.groupby(["case", "method"]):
        for rule in RULES:
            chosen = select(group, rule)
            if chosen is not None:
                rows.append({"rule": rule, "case": case, "method": method, **chosen})
    return pd.DataFrame(rows)


def _cell(mean: float, se: float) -> str:
    if not math.isfinite(mean):
        return "n/a"
    return f"{100 * mean:.1f} ± {100 * se:.1f}" if math.isfinite(se) else f"{100 * mean:.1f} ± n/a"


def _setting(row: pd.Series, searched: dict[str, list[str]]) -> str:
    names = searched.get(row["method"])
    values = {**row["budget"], **row["hparams"]}
    keep = {k: v for k, v in values.items() if names is None or k in names}
    return ", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in sorted(keep.items()))


def _searched(folder: Path) -> dict[str, list[str]]:
    """The hparam names each method's sweep searched (its ``space.json``)."""
    out: dict[str, list[str]] = {}
    for path in Path(folder).glob("*/*/space.json"):
        blob = json.loads(path.read_text())
        out.setdefault(blob["method"], [])
        out[blob["method"]] = sorted(set(out[blob["method"]]) | set(blob["space"]))
    return out


def _by_dataset(cases: list[str]) -> dict[str, list[str]]:
    """Cases grouped by dataset, from the ``<dataset>-<held out>`` case names (DomainBed: one table per dataset,
    one column per test environment)."""
    out: dict[str, list[str]] = {}
    for case in cases:
        out.setdefault(case.partition("-")[0], []).append(case)
    return out


def tables(folder: Path, tablefmt: str = "github") -> str:
    """DomainBed's ``collect_results`` output for every sweep under ``folder``: per rule and dataset, a table of
    methods by held-out domain (mean ± SE over trials, in %, with the average over them), then the hparams each
    rule chose."""
    runs = load_runs(folder)
    if runs.empty:
        return f"no sweep runs under {folder}\n"
    chosen = selections(runs)
    searched = _searched(folder)
    cases = sorted(runs["case"].unique())
    metrics = sorted({m for m in runs["primary_metric"].dropna().unique()})
    parts = [f"# Sweeps under {folder}\n",
             f"{len(runs)} runs: {runs['method'].nunique()} method(s), {len(cases)} case(s); metric: "
             f"{', '.join(metrics)} on the test split, mean ± SE over trials, in %. Draws per (case, method): up to "
             f"{runs.groupby(['case', 'method'])['draw'].nunique().max()}, trials: up to {runs['trial'].nunique()}; "
             f"leave-one-domain-out fold runs: {int(runs['fold'].notna().sum())}. Run status: "
             f"{', '.join(f'{k} {v}' for k, v in runs['status'].value_counts().sort_index().items())}.\n"]
    for rule, title in RULES.items():
        parts.append(f"## Model selection: {title}\n")
        sub = chosen[chosen["rule"] == rule] if not chosen.empty else chosen
        if sub.empty:
            parts.append("no draw could be scored under this rule (leave-one-domain-out needs `--loo` runs)\n")
            continue
        for dataset, in_dataset in sorted(_by_dataset(cases).items()):
            rows = []
            for method, group in sub.groupby("method"):
                by_case = {r["case"]: r for _, r in group.iterrows()}
                if not set(by_case) & set(in_dataset):
                    continue  # no sweep of this method on this dataset
                cells = [_cell(by_case[c]["mean"], by_case[c]["se"]) if c in by_case else "n/a" for c in in_dataset]
                means = [by_case[c]["mean"] for c in in_dataset if c in by_case]
                avg = f"{100 * np.mean(means):.1f}" if len(means) == len(in_dataset) else "n/a"
                rows.append([method, *cells, avg])
            heads = [c.partition("-")[2] or c for c in in_dataset]  # the held-out domain, as DomainBed's env columns
            parts.append(f"**{dataset}** (held-out domain per column)\n")
            parts.append(tabulate(rows, headers=["Algorithm", *heads, "Avg"], tablefmt=tablefmt,
                                  disable_numparse=True) + "\n")
        detail = [[r["case"], r["method"], str(r["draw"]), f"{100 * r['score']:.1f}", str(r["draws_scored"]),
                   str(r["n"]), _setting(r, searched)] for _, r in sub.sort_values(["case", "method"]).iterrows()]
        parts.append(tabulate(detail, headers=["case", "method", "draw", "selection score %", "draws scored",
                                               "trials", "chosen hparams"], tablefmt=tablefmt,
                              disable_numparse=True) + "\n")
    return "\n".join(parts)


def write_report(folder: Path) -> tuple[str, Path]:
    """The tables as markdown, written to ``<folder>/report.md``; returns (text, path)."""
    text = tables(folder)
    path = Path(folder) / "report.md"
    path.write_text(text)
    return text, path


__all__ = ["RULES", "load_runs", "select", "selections", "tables", "write_report"]
