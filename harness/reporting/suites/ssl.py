"""The self-supervised suite's report (:mod:`harness.suites.ssl` defines its cases): random-teacher's
student-over-teacher gain and the kNN ranking per case."""

from __future__ import annotations

from harness.reporting.paired import one_case

DESCRIPTION = ("self-supervised pretraining scored by frozen-feature probes: linear probe (C chosen on val), kNN "
               "(k=20), alignment and uniformity; CIFAR-10, MNIST-5k, PACS, EuroSAT and two transfer cases")
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
    return lines
