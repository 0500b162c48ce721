"""The unlearning suite's report (:mod:`harness.suites.unlearning` defines its cases): head-only forgetting and
the gap-RTE Pareto front per case."""

from __future__ import annotations

from pathlib import Path

from harness.reporting.figures import label_points, pyplot, save, seed_sem, time_axis
from harness.reporting.informative import Floor, one_over

DESCRIPTION = ("forget a random 10%, a whole class or one k-means cluster of pixel features (MNIST-5k, CIFAR-10) "
               "or a sub-population (PACS sketch dogs); compared with retrained oracles; MIA is SalUn's confidence "
               "attack, averaged over 5 attack subsamples (the record also holds the correctness, entropy, "
               "modified-entropy and prob attacks, each with its sd over subsamples); KLoM bins hold >= 6 oracles "
               "each (measured; standard: 2 bins of 6; the reference: 20 bins over 100 oracles)")
LEADERBOARD_COLUMNS = ["UA", "RA", "TA", "MIA", "RTE", "klom_forget", "cka_original", "cka_retrain", "knn_forget"]
# retrain is the oracle the gap is measured to, so its gap is 0 by construction: a reference row, shown without a
# verdict (harness.reporting.compare)
ORACLE = "retrain"
REFERENCE_METHODS = {ORACLE: "the retrained oracle the gap is measured to (gap 0 by construction)"}
CLASSES = {"mnist5k": 10, "cifar10": 10, "pacs": 7}  # the datasets' class counts (the records keep no test labels)
INFORMATIVE = (
    Floor("retrain_TA", one_over(lambda r: CLASSES.get(r["task"]["params"].get("dataset"))),
          label="retrained oracle's test accuracy"),
)


def _mean(rec: dict, metric: str) -> float | None:
    m = rec["metrics"].get(metric)
    return None if m is None else m.get("mean")


def _rows(records: list[dict]) -> dict[str, dict[str, dict]]:
    by_case: dict[str, dict[str, dict]] = {}
    for r in records:
        if r["status"] == "ok" and not r["hparam_overrides"]:
            by_case.setdefault(r["case"], {})[r["method"]] = r
    return by_case


def _label(rec: dict) -> str:
    oracle = any(rec.get("run", {}).get("oracle_matching") or [])
    return rec["method"] + (" (oracle-matching)" if oracle else "")


def _share(value: float, start: float, end: float) -> float | None:
    """How far ``value`` has moved from ``start`` towards ``end`` (1 = all the way); None when they coincide."""
    return None if abs(end - start) < 1e-9 else (value - start) / (end - start)


def head_only(rec: dict, forgot: float = 0.8, kept: float = 0.5) -> bool:
    """Forgets in the output but not in the features ("Are We Truly Forgetting?").

    All three read against the same seed's original and retrained model (oracle 0), so they need no absolute scale:
    * there is something to forget: the retrained model's UA is at least 0.1 above the original's;
    * the output forgot: UA went at least ``forgot`` of the way from the original's to the retrained model's;
    * the features did not: CKA of the forget features to the original's stayed more than ``kept`` of the way from
      the retrained model's CKA to the original (1), and kNN accuracy of the forget samples on those features more
      than ``kept`` of the way from the retrained model's to the original's.
    """
    keys = ("UA", "original_UA", "retrain_UA", "cka_original", "retrain_cka_original", "knn_forget",
            "original_knn_forget", "retrain_knn_forget")
    v = {k: _mean(rec, k) for k in keys}
    if any(x is None for x in v.values()) or rec["method"] == ORACLE:
        return False
    if v["retrain_UA"] - v["original_UA"] < 0.1:
        return False
    output = _share(v["UA"], v["original_UA"], v["retrain_UA"])
    cka = _share(v["cka_original"], v["retrain_cka_original"], 1.0)
    knn = _share(v["knn_forget"], v["retrain_knn_forget"], v["original_knn_forget"])
    return output is not None and output >= forgot and (cka is None or cka > kept) and (knn is None or knn > kept)


def pareto(rows: list[tuple[str, float, float]]) -> list[str]:
    """Methods on the gap/RTE Pareto front (no other method has both a lower-or-equal gap and RTE, one strictly)."""
    front = []
    for name, gap, rte in rows:
        if not any((g <= gap and t <= rte) and (g < gap or t < rte) for n, g, t in rows if n != name):
            front.append(name)
    return front


def findings(records: list[dict]) -> list[str]:
    """Head-only forgetting and the gap-RTE Pareto front per case, generated from the records (never asserted)."""
    lines = []
    for case, recs in sorted(_rows(records).items()):
        heads = [_label(r) for m, r in sorted(recs.items()) if head_only(r)]
        if heads:
            lines.append(f"`{case}`: forgets in the head only (UA near the retrained model's, but CKA to the "
                         f"original and kNN accuracy of the forget set nearer the original's than the retrained "
                         f"model's): {', '.join(heads)}.")
        rows = [(m, _mean(r, "gap"), _mean(r, "RTE")) for m, r in recs.items()
                if _mean(r, "gap") is not None and _mean(r, "RTE") is not None]
        if rows:
            front = pareto(rows)
            pts = "; ".join(f"{_label(recs[m])} gap {g:.3f} at RTE {t:.3f}"
                            for m, g, t in sorted(rows, key=lambda r: r[2]) if m in front)
            lines.append(f"`{case}`: gap-to-retrain vs RTE Pareto front (lower both is better): {pts}.")
    return lines


def figures(records: list[dict], out_dir: Path) -> list[tuple[str, Path]]:
    """One scatter per case: average gap to retrain against RTE (log scale), ± 1 sem over seeds on both axes,
    the Pareto front joined."""
    plt = pyplot()
    out = []
    for case, recs in sorted(_rows(records).items()):
        rows = [(m, _mean(r, "gap"), _mean(r, "RTE")) for m, r in recs.items()
                if _mean(r, "gap") is not None and _mean(r, "RTE")]
        if not rows:
            continue
        front_names = pareto(rows)
        fig, ax = plt.subplots(figsize=(6.5, 4.2))
        for m, g, t in rows:
            ax.errorbar(t, g, xerr=seed_sem(recs[m]["metrics"].get("RTE")) or 0.0,
                        yerr=seed_sem(recs[m]["metrics"].get("gap")) or 0.0, fmt="o", ms=5, capsize=2, lw=0.8,
                        color="tab:red" if m in front_names else "tab:blue")
        front = sorted((t, g) for m, g, t in rows if m in front_names)
        ax.plot([t for t, _ in front], [g for _, g in front], color="tab:red", lw=0.8)
        time_axis(ax, [t for _, _, t in rows])
        ax.set_xlabel("RTE: method time / retrain time (lower is better)")
        ax.set_ylabel("average gap to retrain (lower is better)")
        ax.set_title(f"unlearning / {case}: average gap to retrain against RTE\n(red: Pareto front; "
                     "bars: ± 1 sem over seeds)", fontsize=9)
        ax.grid(alpha=0.3)
        label_points(ax, [(t, g) for _, g, t in rows], [_label(recs[m]) for m, _, _ in rows])
        path = Path(out_dir) / f"unlearning-{case}-gap-rte.png"
        save(fig, path)
        out.append((f"{case}: gap to retrain vs RTE", path))
    return out
