"""The self-supervised suite's report (:mod:`harness.suites.ssl` defines its cases): random-teacher's
student-over-teacher gain, the kNN ranking per case, and the online-kNN curves (``run.online_knn``: the weighted
kNN's val accuracy during pretraining, see :mod:`harness.protocols.pretrain`)."""

from __future__ import annotations

import math
from collections import Counter
from pathlib import Path

import numpy as np

from harness.reporting.figures import pyplot, save
from harness.reporting.paired import one_case

DESCRIPTION = ("self-supervised pretraining scored by frozen-feature probes: linear probe (C chosen on val), kNN "
               "(k=20), alignment and uniformity, and an online kNN curve on val during pretraining; CIFAR-10, "
               "MNIST-5k, PACS, EuroSAT and two transfer cases")
LEADERBOARD_COLUMNS = ["knn_acc", "alignment", "uniformity", "epoch_time_s", "peak_memory_mb", "teacher_probe_acc",
                       "gain_probe_acc"]


def _paired(rec: dict, a: str, b: str) -> str:
    """Student against teacher: two metrics of one record, paired over its seeds, by the leaderboard's per-case
    rule (exact sign-flip; with 5 or fewer seeds no test can reach 0.05: the difference and its range instead)."""
    pairs = [(x, y) for x, y in zip(rec["metrics"][a]["per_seed"], rec["metrics"][b]["per_seed"])
             if x is not None and y is not None]
    return one_case([x - y for x, y in pairs])


def findings(records: list[dict]) -> list[str]:
    """Generated from the records: random-teacher's student-over-teacher gain, and the kNN ranking per case."""
    ok = [r for r in records if r["status"] == "ok" and not r["hparam_overrides"]]
    lines = []
    for rec in sorted((r for r in ok if "gain_knn_acc" in r["metrics"]), key=lambda r: r["case"]):
        m = rec["metrics"]
        lines.append(
            f"`{rec['case']}`, {rec['method']}: student minus teacher, kNN {m['gain_knn_acc']['mean']:+.4f} "
            f"({m['knn_acc']['mean']:.4f} vs {m['teacher_knn_acc']['mean']:.4f}; "
            f"{_paired(rec, 'knn_acc', 'teacher_knn_acc')}), linear probe {m['gain_probe_acc']['mean']:+.4f} "
            f"({_paired(rec, 'probe_acc', 'teacher_probe_acc')}).")
    for case in sorted({r["case"] for r in ok}):
        ranked = sorted((r for r in ok if r["case"] == case and "knn_acc" in r["metrics"]),
                        key=lambda r: (-r["metrics"]["knn_acc"]["mean"], r["method"]))
        order = " > ".join(f"{r['method']} {r['metrics']['knn_acc']['mean']:.4f}" for r in ranked)
        lines.append(f"`{case}`: ranking by kNN accuracy: {order}.")
    lines += online_knn_findings(ok)
    return lines


def _label(rec: dict) -> str:
    over = rec["hparam_overrides"]
    return rec["method"] + (f"[{', '.join(f'{k}={v}' for k, v in sorted(over.items()))}]" if over else "")


def online_curves(records: list[dict]) -> dict[str, dict[str, list[tuple[float, float, float | None, int]]]]:
    """case -> row -> [(epoch, mean val accuracy over seeds, its standard error or None below 2 seeds, n seeds)],
    from the records' per-seed ``run.online_knn`` curves (seeds share the evaluation epochs)."""
    out: dict[str, dict[str, list[tuple[float, float, float | None, int]]]] = {}
    for rec in records:
        if rec["status"] != "ok" or rec.get("suite") not in (None, "ssl"):
            continue
        per_seed = [c for c in (rec.get("run", {}).get("online_knn") or []) if c]
        if not per_seed:
            continue
        by_epoch: dict[float, list[float]] = {}
        for curve in per_seed:
            for epoch, acc in curve:
                by_epoch.setdefault(round(float(epoch), 9), []).append(float(acc))
        points = []
        for epoch in sorted(by_epoch):
            accs = by_epoch[epoch]
            sem = float(np.std(accs, ddof=1) / math.sqrt(len(accs))) if len(accs) > 1 else None
            points.append((epoch, float(np.mean(accs)), sem, len(accs)))
        out.setdefault(rec["case"], {})[_label(rec)] = points
    return out


def online_knn_findings(records: list[dict]) -> list[str]:
    """Per case: the online kNN's val accuracy from the first evaluation to the last, per method (seed means)."""
    lines = []
    for case, rows in sorted(online_curves(records).items()):
        moved = sorted(((pts[-1][1] - pts[0][1], row, pts) for row, pts in rows.items() if len(pts) > 1),
                       key=lambda t: (-t[0], t[1]))
        if not moved:
            continue
        # most methods share the seed's initial encoder: its accuracy is said once, another start beside its row
        common = Counter(round(pts[0][1], 6) for _, _, pts in moved).most_common(1)[0][0]
        text = ", ".join(f"{row} {d:+.3f}" + ("" if round(pts[0][1], 6) == common else f" (from {pts[0][1]:.3f})")
                         for d, row, pts in moved)
        lines.append(f"`{case}`: online kNN on val (weighted, k=20, T=0.07; mean over seeds), change from epoch "
                     f"{moved[0][2][0][0]:g} ({common:.3f} unless said) to {moved[0][2][-1][0]:g}: {text}.")
    return lines


def figures(records: list[dict], out_dir: Path) -> list[tuple[str, Path]]:
    """The online-kNN curves: val accuracy against pretraining epoch, a panel per case, a line per method (mean over
    seeds, band ± 1 standard error); an encoder that trains nothing (random-init) is a dotted level."""
    curves = online_curves(records)
    if not curves:
        return []
    plt = pyplot()
    cases = sorted(curves)
    cols = min(3, len(cases))
    rows = math.ceil(len(cases) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.4 * cols + 1.8, 2.9 * rows), squeeze=False)
    trained = sorted({row for per_case in curves.values() for row, pts in per_case.items() if len(pts) > 1})
    # tab20's dark hues first, then the light ones: the first ten rows get ten distinct hues
    colours = {row: plt.get_cmap("tab20")((2 * i) % 20 + (2 * i) // 20 % 2) for i, row in enumerate(trained)}
    for ax, case in zip(axes.flat, cases):
        for row, pts in sorted(curves[case].items()):
            x = [p[0] for p in pts]
            y = [p[1] for p in pts]
            if len(pts) == 1:  # trained nothing: its initial encoder is a level, not a curve
                ax.axhline(y[0], color=colours.get(row, "0.35"), ls=":", lw=1.2, label=row)
                continue
            ax.plot(x, y, marker="o", ms=2.5, lw=1.2, color=colours[row], label=row)
            if all(p[2] is not None for p in pts):
                sem = np.array([p[2] for p in pts])
                ax.fill_between(x, np.array(y) - sem, np.array(y) + sem, color=colours[row], alpha=0.12, lw=0)
        ax.set_title(case, fontsize=9)
        ax.set_xlabel("pretraining epoch", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
    for ax in axes.flat[len(cases):]:
        ax.set_visible(False)
    for ax in axes[:, 0]:
        ax.set_ylabel("online kNN accuracy (val)", fontsize=8)
    handles: dict[str, object] = {}
    for ax in axes.flat[:len(cases)]:
        for h, lab in zip(*ax.get_legend_handles_labels()):
            handles.setdefault(lab, h)
    fig.legend([handles[k] for k in sorted(handles)], sorted(handles), loc="center left", bbox_to_anchor=(1.0, 0.5),
               frameon=False, fontsize=8, title="method", title_fontsize=8)
    fig.suptitle("SSL: online kNN during pretraining (weighted cosine kNN, k=20, T=0.07, fitted on train, scored on "
                 "val; mean over seeds, band ± 1 s.e.)", fontsize=9)
    fig.tight_layout()
    path = Path(out_dir) / "ssl_online_knn.png"
    save(fig, path)
    return [("SSL: online kNN accuracy (val) during pretraining", path)]
