"""Shared pieces of the leaderboard's figures: seed error bars, readable step-time axes, labels that do not sit
on each other, legends outside the data.

Error bars in every figure are ± 1 standard error of the mean over seeds (sample std / sqrt(n)), unless a
figure says otherwise. A mean over cases gets the combined standard error sqrt(sum sem_c^2) / n_cases: the
error from seed variation only, not the spread between cases.
"""

from __future__ import annotations

import math
from pathlib import Path


def pyplot():
    """matplotlib.pyplot on the non-interactive Agg backend."""
    # imported on first use: matplotlib takes about a second to import, paid only by code that draws
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def seed_sem(metric: dict | None) -> float | None:
    """Standard error over seeds of one record's metric (std / sqrt(n), sample std); None below 2 seeds."""
    if not metric:
        return None
    values = [v for v in metric.get("per_seed", []) if v is not None]
    if len(values) < 2 or metric.get("std") is None:
        return None
    return metric["std"] / math.sqrt(len(values))


def mean_over_cases(records: list[dict], metric: str | None = None) -> tuple[float | None, float | None]:
    """Mean over records (one per case) of each record's seed mean of ``metric`` (default: its primary metric),
    and that mean's standard error from seed variation, sqrt(sum sem_c^2) / n; the sem is None when a record
    has fewer than 2 seeds (its own error is unknown)."""
    means, sems = [], []
    for rec in records:
        m = rec["metrics"].get(metric or rec["primary_metric"], {})
        if rec["status"] != "ok" or m.get("mean") is None:
            continue
        means.append(m["mean"])
        sems.append(seed_sem(m))
    if not means:
        return None, None
    sem = None if any(s is None for s in sems) else math.sqrt(sum(s * s for s in sems)) / len(sems)
    return sum(means) / len(means), sem


def time_axis(ax, values: list[float], axis: str = "x") -> None:
    """Log scale with ticks written as plain numbers when the values span more than 4x, else linear (a log axis
    over less than a decade gets one or two ticks, and matplotlib's minor labels collide). The tick set thins
    with the span so labels never touch: 1-2-3-5 per decade up to 1.5 decades, 1-2-5 up to 3, then 1 only."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter  # lazily, as in pyplot()

    values = [v for v in values if v and v > 0]
    if not values or max(values) / min(values) <= 4:
        return
    decades = math.log10(max(values) / min(values))
    subs = (1.0, 2.0, 3.0, 5.0) if decades <= 1.5 else (1.0, 2.0, 5.0) if decades <= 3 else (1.0,)
    target = ax.xaxis if axis == "x" else ax.yaxis
    (ax.set_xscale if axis == "x" else ax.set_yscale)("log")
    target.set_major_locator(LogLocator(base=10, subs=subs))
    target.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    target.set_minor_formatter(NullFormatter())


def label_points(ax, points: list[tuple[float, float]], labels: list[str], fontsize: float = 7.5) -> None:
    """Annotate points with labels pushed apart vertically where they would overlap (a thin line joins a moved
    label to its point). Call after the axes' data and scales are set."""
    fig = ax.figure
    ax.autoscale_view()
    fig.canvas.draw()  # fixes the limits, so data -> pixel transforms are final
    px = fig.dpi / 72.0
    height = fontsize * 1.35 * px
    marker = 5 * px  # a label must not cover another point's marker either
    placed: list[tuple[float, float, float, float]] = [
        (x - marker, y - marker, x + marker, y + marker) for x, y in (ax.transData.transform(p) for p in points)]
    right = ax.get_window_extent().x1
    order = sorted(range(len(points)), key=lambda i: ax.transData.transform(points[i])[1])
    for i in order:
        x, y = ax.transData.transform(points[i])
        width = 0.6 * fontsize * px * len(labels[i])
        left = x + 4 * px + width > right  # a label that would cross the right spine goes left of its point
        x0, y0 = (x - 4 * px - width if left else x + 4 * px), y + 2 * px
        shift = 0.0
        own = (x - marker, y - marker, x + marker, y + marker)
        for step in range(1, 40):
            box = (x0, y0 + shift, x0 + width, y0 + shift + height)
            if not any(b != own and box[0] < b[2] and b[0] < box[2] and box[1] < b[3] and b[1] < box[3]
                       for b in placed):
                break
            shift = height * ((step + 1) // 2) * (1 if step % 2 else -1)  # try above, then below, further out
        placed.append((x0, y0 + shift, x0 + width, y0 + shift + height))
        moved = abs(shift) > 0
        ax.annotate(labels[i], points[i], xytext=(-4 if left else 4, 2 + shift / px), textcoords="offset points",
                    fontsize=fontsize, ha="right" if left else "left",
                    arrowprops={"arrowstyle": "-", "lw": 0.5, "color": "0.5", "shrinkA": 0, "shrinkB": 2}
                    if moved else None)


def legend_outside(ax, **kwargs) -> None:
    """The legend to the right of the axes, never over the data."""
    handles, labels = ax.get_legend_handles_labels()
    if handles:
        ax.legend(handles, labels, loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0.0,
                  frameon=False, **{"fontsize": 8, **kwargs})


def save(fig, path) -> None:
    """Write a PNG without a software tag (stable bytes for one matplotlib), cropped to its contents."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110, bbox_inches="tight", metadata={"Software": None})
    pyplot().close(fig)
