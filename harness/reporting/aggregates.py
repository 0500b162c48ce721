"""Aggregates that survive few cases, by rliable's definitions (Agarwal et al., "Deep Reinforcement Learning at
the Edge of the Statistical Precipice", NeurIPS 2021), computed with scipy.

rliable 1.2 itself cannot be used here: it imports ``arch``, which fails to import under pandas 3. The
definitions are rliable's, the resampling is :func:`scipy.stats.bootstrap` with one sample per case, which is
rliable's stratified bootstrap (seeds resampled within each case, the cases kept):

* **IQM**: the mean of the middle 50% of all seed x case scores (:func:`scipy.stats.trim_mean`, 25% cut each
  side); robust to an outlying case or seed, unlike the mean, and less noisy than the median;
* **probability of improvement** P(X > Y): per case, the Mann-Whitney probability that a seed of X beats a seed
  of Y (ties count one half), averaged over cases;
* **performance profile**: the fraction of all seed x case scores above each threshold tau.

Scores are each case's primary metric oriented so that higher is better (a lower-is-better metric is negated),
on the cases every compared method ran with the suite's seed count (the Friedman block of
:func:`harness.reporting.compare.aggregate`). They pool cases on the metric's own scale, so they mean most where
the cases share one (accuracies, AUROCs). Descriptive: the suite's claims are :mod:`harness.reporting.claims`'s.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd
from scipy import stats

from harness.records import higher_is_better
from harness.reporting.compare import Aggregate

CONFIDENCE = 0.95
RESAMPLES = 2000
SEED = 0  # the bootstrap's stream: the pages must be the same on every build


def score_matrices(records: list[dict], agg: Aggregate) -> dict[str, np.ndarray]:
    """method -> (seeds, cases) oriented primary-metric scores over the aggregate's block; empty when the block's
    records do not share one seed count (rliable's matrices are rectangular)."""
    cells = {(r["case"], r["method"]): r for r in records
             if r["status"] == "ok" and not r["hparam_overrides"] and r["case"] in agg.cases}
    out = {}
    for method in agg.methods:
        columns = []
        for case in agg.cases:
            rec = cells.get((case, method))
            if rec is None:
                return {}
            values = np.asarray(rec["metrics"][rec["primary_metric"]]["per_seed"], dtype=float)
            columns.append(values if higher_is_better(rec, rec["primary_metric"]) else -values)
        if len({len(c) for c in columns}) != 1 or np.isnan(np.concatenate(columns)).any():
            return {}
        out[method] = np.stack(columns, axis=1)
    return out if len({m.shape for m in out.values()}) == 1 else {}


def _pooled(columns: tuple[np.ndarray, ...], axis: int) -> np.ndarray:
    """Every case's seeds side by side on the last axis (scipy's resamples stay on the leading ones)."""
    return np.concatenate([np.moveaxis(c, axis, -1) for c in columns], axis=-1)


def _iqm(*columns: np.ndarray, axis: int = -1) -> np.ndarray:
    return stats.trim_mean(_pooled(columns, axis), 0.25, axis=-1)


def _mean(*columns: np.ndarray, axis: int = -1) -> np.ndarray:
    return np.mean(_pooled(columns, axis), axis=-1)


def _improvement(*columns: np.ndarray, axis: int = -1) -> np.ndarray:
    """Columns are X's cases then Y's cases: the mean over cases of P(X > Y) + P(X = Y) / 2."""
    half = len(columns) // 2
    per_case = []
    for x, y in zip(columns[:half], columns[half:]):
        x, y = np.moveaxis(x, axis, -1)[..., :, None], np.moveaxis(y, axis, -1)[..., None, :]
        per_case.append(np.mean((x > y) + 0.5 * (x == y), axis=(-2, -1)))
    return np.mean(per_case, axis=0)


def interval(columns: list[np.ndarray], statistic: Callable[..., np.ndarray]) -> tuple[float, float, float]:
    """(estimate, low, high): the statistic and its stratified percentile-bootstrap interval."""
    estimate = float(statistic(*columns))
    if all(np.ptp(c) == 0 for c in columns):
        return estimate, estimate, estimate
    res = stats.bootstrap(columns, statistic, n_resamples=RESAMPLES, confidence_level=CONFIDENCE,
                          method="percentile", vectorized=True, rng=np.random.default_rng(SEED))
    return estimate, float(res.confidence_interval.low), float(res.confidence_interval.high)


def _cases(matrix: np.ndarray) -> list[np.ndarray]:
    return [matrix[:, c] for c in range(matrix.shape[1])]


def robust_table(records: list[dict], agg: Aggregate) -> pd.DataFrame | None:
    """IQM, mean and P(improvement over the baseline), each with its interval, per method (best IQM first)."""
    scores = score_matrices(records, agg)
    if len(scores) < 2 or agg.baseline not in scores:
        return None
    seeds, cases = scores[agg.baseline].shape
    base = _cases(scores[agg.baseline])
    rows = []
    for method, matrix in scores.items():
        own = _cases(matrix)
        iqm, mean = interval(own, _iqm), interval(own, _mean)
        row = {"method": method, "IQM": iqm[0], f"IQM {CONFIDENCE:.0%} CI": f"[{iqm[1]:.4f}, {iqm[2]:.4f}]",
               "mean": f"{mean[0]:.4f}", f"mean {CONFIDENCE:.0%} CI": f"[{mean[1]:.4f}, {mean[2]:.4f}]"}
        if method == agg.baseline:
            row[f"P(better than {agg.baseline})"] = "—"
        else:
            poi = interval(own + base, _improvement)
            row[f"P(better than {agg.baseline})"] = f"{poi[0]:.3f} [{poi[1]:.3f}, {poi[2]:.3f}]"
        rows.append(row)
    frame = pd.DataFrame(rows).sort_values(["IQM", "method"], ascending=[False, True], kind="stable")
    frame["IQM"] = frame["IQM"].map(lambda v: f"{v:.4f}")
    frame["cases × seeds"] = f"{cases} × {seeds}"
    return frame.reset_index(drop=True)


def performance_profiles(scores: dict[str, np.ndarray], taus: np.ndarray) -> dict[str, np.ndarray]:
    """method -> (3, len(taus)): the fraction of seed x case scores above each tau, and its interval."""
    out = {}
    for method, matrix in scores.items():
        def above(*columns: np.ndarray, axis: int = -1) -> np.ndarray:
            pooled = _pooled(columns, axis)
            return np.moveaxis(np.mean(pooled[..., None, :] > taus[:, None], axis=-1), -1, 0)  # taus first

        columns = _cases(matrix)
        curve = above(*columns)
        if all(np.ptp(c) == 0 for c in columns):
            out[method] = np.stack([curve, curve, curve])
            continue
        res = stats.bootstrap(columns, above, n_resamples=RESAMPLES, confidence_level=CONFIDENCE,
                              method="percentile", vectorized=True, rng=np.random.default_rng(SEED))
        low, high = res.confidence_interval  # NaN where every resample agrees (a tau outside the scores)
        out[method] = np.stack([curve, np.where(np.isnan(low), curve, low), np.where(np.isnan(high), curve, high)])
    return out
