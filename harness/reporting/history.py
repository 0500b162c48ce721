"""A method's results across the commits that changed its records (asv's question, asked of accuracy too).

For one suite, method and profile, each commit that changed one of the method's committed records gives one
point: the mean over cases of the primary metric's mean (each record's own direction; the cases are those the
method had at that commit, so the count is shown beside it) and the median over cases of the median step time.

**Where it stepped**: one change-point test on each series, the standardised CUSUM statistic
max_k |mean(x[:k]) - mean(x[k:])| sqrt(k (n - k) / n), with its p from :func:`scipy.stats.permutation_test` over
orderings of the points (exact up to 8 points). Under "no change" every ordering is equally likely; a small p
names the commit where the level moved. With few points the test cannot reject (:func:`floor_p`: 7 points give
at best 0.057), and the text says so. A change of the case list or of a protocol moves it too: the table says
which cases each point averages.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

from harness.core.digest import REPO
from harness.records.git import file_versions
from harness.reporting.figures import legend_outside, pyplot, save

ALPHA = 0.05


@dataclass(frozen=True)
class Step:
    """The most likely change point of a series: the first point after it, the shift and the test's p."""

    index: int
    shift: float
    p: float

    def describe(self, labels: list[str], what: str) -> str:
        verdict = "stepped" if self.p < ALPHA else "no step detected"
        return (f"{what}: {verdict} at {labels[self.index]} (mean after − before {self.shift:+.4g}; change-point "
                f"permutation test p = {self.p:.3g})" if self.p < ALPHA
                else f"{what}: {verdict} (best split before {labels[self.index]}, p = {self.p:.3g})")


def _cusum(x: np.ndarray, axis: int = -1) -> np.ndarray:
    x = np.moveaxis(np.asarray(x, dtype=float), axis, -1)
    n = x.shape[-1]
    k = np.arange(1, n)
    left = np.cumsum(x, axis=-1)[..., :-1] / k
    right = (np.sum(x, axis=-1, keepdims=True) - np.cumsum(x, axis=-1)[..., :-1]) / (n - k)
    return np.max(np.abs(left - right) * np.sqrt(k * (n - k) / n), axis=-1)


def floor_p(n: int) -> float:
    """The smallest p the test can give on n distinct points: the two orderings that put one side of the best split
    first or last, 2 k! (n - k)! / n!, at its smallest k."""
    return min(2 * math.factorial(k) * math.factorial(n - k) / math.factorial(n) for k in range(1, n)) if n > 1 else 1.0


def change_point(values: list[float]) -> Step | None:
    """The standardised-CUSUM change point of ``values`` and its permutation p; None below 3 points or when every
    value is the same."""
    x = np.asarray(values, dtype=float)
    if len(x) < 3 or np.ptp(x) == 0:
        return None
    n = len(x)
    k = np.arange(1, n)
    gaps = [abs(x[:i].mean() - x[i:].mean()) * math.sqrt(i * (n - i) / n) for i in k]
    best = int(k[int(np.argmax(gaps))])
    res = stats.permutation_test((x,), _cusum, permutation_type="pairings", vectorized=True, alternative="greater",
                                 n_resamples=9999 if n > 8 else math.factorial(n), rng=np.random.default_rng(0))
    return Step(best, float(x[best:].mean() - x[:best].mean()), float(res.pvalue))


def suite_history(suite: str, profile: str = "standard", repo: Path = REPO) -> dict[str, pd.DataFrame]:
    """method -> its history (:func:`method_history`), for every method with committed records of the suite."""
    by_method: dict[str, list[tuple[str, str, list[dict]]]] = {}
    for commit, date, files in file_versions(f"results/{suite}", f"results/{suite}/*/*__{profile}.json", repo):
        grouped: dict[str, list[dict]] = {}
        for name, blob in files.items():
            try:
                grouped.setdefault(Path(name).name.rsplit("__", 1)[0], []).append(json.loads(blob))
            except (json.JSONDecodeError, UnicodeDecodeError):
                continue
        for method, records in grouped.items():
            points = by_method.setdefault(method, [])
            if not points or points[-1][2] != records:  # a point only where this method's records changed
                points.append((commit, date, records))
    return {m: _frame(points) for m, points in sorted(by_method.items())
            if not re.search(r"-h[0-9a-f]{8}$", m)}  # default hparams only (see records.hparam_tag)


def method_history(suite: str, method: str, profile: str = "standard", repo: Path = REPO) -> pd.DataFrame:
    """One row per commit that changed the method's records of that suite and profile, oldest first."""
    points = [(commit, date, [json.loads(blob) for blob in files.values()])
              for commit, date, files in file_versions(f"results/{suite}",
                                                       f"results/{suite}/*/{method}__{profile}.json", repo)]
    return _frame(points)


def _frame(points: list[tuple[str, str, list[dict]]]) -> pd.DataFrame:
    rows = []
    for commit, date, records in points:
        means = [r["metrics"][r["primary_metric"]]["mean"] for r in records
                 if r.get("status") == "ok" and r["metrics"].get(r["primary_metric"], {}).get("mean") is not None]
        step_times = [r["timing"]["step_time_median_s"] for r in records if r["timing"].get("step_time_median_s")]
        if not means:
            continue
        rows.append({"commit": commit[:12], "date": date[:10], "cases": len(means),
                     "metric": " / ".join(sorted({r["primary_metric"] for r in records})),
                     "mean over cases": float(np.mean(means)),
                     "median step ms": float(np.median(step_times)) * 1e3 if step_times else math.nan})
    return pd.DataFrame(rows, columns=["commit", "date", "cases", "metric", "mean over cases", "median step ms"])


def steps(frame: pd.DataFrame) -> list[str]:
    """The change-point lines for the metric and the step time of one history."""
    labels = [f"{c} ({d})" for c, d in zip(frame["commit"], frame["date"])]
    out = []
    for column in ("mean over cases", "median step ms"):
        series = frame[column].dropna()
        found = change_point(list(series))
        if floor_p(len(series)) > ALPHA:
            needed = next(n for n in range(2, 40) if floor_p(n) <= ALPHA)
            out.append(f"{column}: {len(series)} points cannot reach p < {ALPHA} (a change-point test needs at least "
                       f"{needed})")
        elif found is None:
            out.append(f"{column}: too few distinct points for a change-point test ({len(series)})")
        else:
            out.append(found.describe([labels[i] for i in series.index], column))
    return out


def history_figure(histories: dict[str, pd.DataFrame], path: Path, title: str) -> bool:
    """The mean primary metric of each method across the commits that changed its records; False when no method
    has two points."""
    shown = {m: f for m, f in histories.items() if len(f) >= 2}
    if not shown:
        return False
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=110)
    for method, frame in sorted(shown.items()):
        ax.plot(pd.to_datetime(frame["date"]), frame["mean over cases"], marker="o", ms=3, lw=1, label=method)
        found = change_point(list(frame["mean over cases"]))
        if found is not None and found.p < ALPHA:
            ax.axvline(pd.to_datetime(frame["date"].iloc[found.index]), lw=0.6, ls=":", color="grey")
    ax.set_xlabel("commit date")
    ax.set_ylabel("mean over cases of the primary metric")
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    fig.autofmt_xdate()
    legend_outside(ax)
    save(fig, path)
    return True
