"""The remote-sensing suite's report (:mod:`harness.suites.remote_sensing` defines its cases): preprocessing
swing, the EuroSAT resize effect against the seed paper, few-shot crossovers, heat maps and few-shot curves."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from harness.protocols.probe import FEWSHOT, PROBES
from harness.reporting.compare import oriented_diffs
from harness.reporting.figures import pyplot, save, seed_sem
from harness.reporting.informative import Floor, majority
from harness.reporting.paired import one_case
from harness.suites.remote_sensing import NAME

DESCRIPTION = ("Remote sensing: frozen encoders (random, ImageNet EfficientNet-Lite0, cached SSL) under a resize/"
               "crop x normalisation grid with kNN, linear and few-shot probes; supervised RSSCN7 scale shift and "
               "EuroSAT; SYNTHETIC 13-band set offline")
LEADERBOARD_COLUMNS = ["ref:linear", "ref:knn5", "swing:linear", "swing:knn5", "resize_gain:knn5",
                       "fewshot_lr@5", "fewshot_nb@5", "ood_acc", "test_acc", "id_acc", "worst_domain_acc"]
INFORMATIVE = (Floor("ood_acc", majority("test.y"), label="OOD accuracy"),)  # the ERM cases (probes have no baseline)
REPRODUCTIONS: dict[str, str] = {
    "rsscn7-scale": (
        "not a reproduction of a published failure: ERM trained on RSSCN7 at some scales and tested at a held-out "
        "one. Its held-out accuracy at standard is 0.309 over three seeds (0.326, 0.290, 0.310), under the floor "
        "(chance 0.186, the largest class, + 0.20); the previous protocol's record gave 0.375, also under it. Shown, "
        "not ranked, until a protocol change makes the case informative; not tuned to these numbers"),
}
SEED_PAPER_EUROSAT = (0.821, 0.912)  # ImageNet ResNet-50, EuroSAT kNN accuracy at 64 px and resized to 224 px


def summary_split(record: dict) -> str | None:
    """A probe case's encoder gets its own summary row: a random and an ImageNet encoder measure different things,
    and one mean over both would describe neither."""
    return record.get("task", {}).get("params", {}).get("encoder")  # probe cases only; supervised ones have none


def stored_case(params: dict) -> bool:
    """A probe of an SSL-suite encoder: declared only where the SSL suite's store holds that encoder."""
    return params.get("ssl") is not None


def _probe_records(records: list[dict]) -> list[dict]:
    return [r for r in records if r["status"] == "ok" and r["case"].startswith("probe-")
            and "ref:linear" in r["metrics"]]


def _mean(rec: dict, metric: str) -> float | None:
    m = rec["metrics"].get(metric)
    return None if m is None else m["mean"]


def _pm(rec: dict, metric: str, scale: float = 100.0) -> str:
    m = rec["metrics"][metric]
    std = f" ± {m['std'] * scale:.1f}" if m.get("std") is not None else ""
    return f"{m['mean'] * scale:.1f}{std}"


def _cells(rec: dict, probe: str) -> dict[str, float]:
    return {k.split("@", 1)[1]: v["mean"] for k, v in rec["metrics"].items() if k.startswith(f"{probe}@")}


def crossover(rec: dict) -> str:
    """Where few-shot logistic regression overtakes naive Bayes (and stays ahead), from the means."""
    shots = [s for s in rec["task"]["params"]["shots"] if f"fewshot_lr@{s}" in rec["metrics"]]
    if not shots:
        return "no few-shot results"
    ahead = [_mean(rec, f"fewshot_lr@{s}") > _mean(rec, f"fewshot_nb@{s}") for s in shots]
    for i, s in enumerate(shots):
        if all(ahead[i:]):
            if i == 0:
                return f"logistic regression is ahead of naive Bayes from {s} shot(s) per class on"
            where = "with the whole train split" if s == "all" else f"at {s} shots per class"
            return f"logistic regression overtakes naive Bayes {where} (naive Bayes ahead at {shots[i - 1]})"
    return ("logistic regression does not overtake naive Bayes for good (naive Bayes level or ahead at the largest "
            "shot count)")


def findings(records: list[dict]) -> list[str]:
    """Generated from the records: preprocessing swing per built-in encoder, the EuroSAT 64 -> 224 resize effect
    against the seed paper, the few-shot crossover, the SSL suite's encoders summarised per probe set (one line each,
    not one per encoder), and the best supervised method per case."""
    lines = []
    probes = sorted(_probe_records(records), key=lambda r: r["case"])
    for rec in (r for r in probes if not stored_case(r["task"]["params"])):
        cells = _cells(rec, "linear")
        best, worst = max(cells, key=cells.get), min(cells, key=cells.get)
        n = len(rec["seeds"])
        swing = ", ".join(f"{p} {_pm(rec, f'swing:{p}')}" for p in PROBES if f"swing:{p}" in rec["metrics"])
        lines.append(f"`{rec['case']}`: accuracy swing (max - min over {len(cells)} preprocessing policies, points, "
                     f"{'mean ± std over ' + str(n) + ' seeds' if n > 1 else 'one seed'}): {swing}; linear probe "
                     f"best at {best} ({cells[best]:.3f}), worst at {worst} ({cells[worst]:.3f}). "
                     f"Few-shot: {crossover(rec)}.")
        if _resizes_eurosat(rec):
            lines.append(_resize_finding(rec))
    lines += _stored_encoder_findings(probes)
    by_case: dict[str, dict[str, dict]] = {}
    for r in records:
        if r["status"] == "ok" and not r["case"].startswith("probe-") and not r["hparam_overrides"]:
            by_case.setdefault(r["case"], {})[r["method"]] = r
    for case, recs in sorted(by_case.items()):
        metric = next(iter(recs.values()))["primary_metric"]
        best = max(recs.values(), key=lambda r: r["metrics"][metric]["mean"])
        line = f"`{case}`: best {metric} is {best['method']} ({best['metrics'][metric]['mean']:.4f})"
        erm = recs.get("erm")
        if erm is not None and best is not erm:
            line += (f"; against ERM ({erm['metrics'][metric]['mean']:.4f}), the per-case rule: "
                     f"{one_case(oriented_diffs(best, erm, metric))} (the best is picked after the fact: descriptive)")
        lines.append(line + ".")
    return lines


def _resizes_eurosat(rec: dict) -> bool:
    return rec["case"].startswith("probe-eurosat-") and rec["task_info"]["reference"].startswith("resize224/")


def _ssl(rec: dict) -> dict:
    """What trained an SSL-encoder probe's encoder (its ``method`` and pretraining ``case``, among others)."""
    return rec["task"]["params"]["ssl"]


def _ssl_label(rec: dict) -> str:
    return f"{_ssl(rec)['method']} pretrained on {_ssl(rec)['case']}"


def _stored_encoder_findings(probes: list[dict]) -> list[str]:
    """The SSL suite's encoders, one summary per probe set: each encoder is one pretraining seed, so these are
    descriptive counts and ranges, not tests (the SSL suite's own records test its methods)."""
    lines = []
    by_data: dict[str, list[dict]] = {}
    for rec in probes:
        by_data.setdefault(rec["task"]["params"]["data"], []).append(rec)
    for data, recs in sorted(by_data.items()):
        stored = [r for r in recs if stored_case(r["task"]["params"])]
        if not stored:
            continue
        ref = stored[0]["task_info"]["reference"]
        acc = {_ssl_label(r): _mean(r, "ref:linear") for r in stored}
        best, worst = max(acc, key=acc.get), min(acc, key=acc.get)
        builtin = ", ".join(f"{r['task']['params']['encoder']} {_mean(r, 'ref:linear'):.3f}"
                            for r in recs if not stored_case(r["task"]["params"]))
        untrained = {_ssl(r)["case"]: _mean(r, "ref:linear") for r in stored if _ssl(r)["method"] == "random-init"}
        trained = [(_ssl(r)["case"], _mean(r, "ref:linear")) for r in stored
                   if _ssl(r)["method"] != "random-init" and _ssl(r)["case"] in untrained]
        above = sum(a > untrained[case] for case, a in trained)
        swings = [100 * _mean(r, "swing:linear") for r in stored]
        methods = {_ssl(r)["method"] for r in stored}
        cases = sorted({_ssl(r)["case"] for r in stored})
        line = (f"SSL-suite encoders probed on `{data}` ({len(stored)} cases: {len(methods)} SSL methods pretrained on "
                f"{', '.join(cases)}, pretraining seed 0 only, so descriptive): linear-probe accuracy at {ref} "
                f"median {np.median(list(acc.values())):.3f}, from {acc[worst]:.3f} ({worst}) to {acc[best]:.3f} "
                f"({best})" + (f"; the built-in encoders: {builtin}" if builtin else ""))
        if trained:
            line += (f"; above the untrained encoder (random-init) of the same pretraining case in {above} of "
                     f"{len(trained)}")
        line += (f". Accuracy swing over the preprocessing policies (linear, points): median {np.median(swings):.1f}, "
                 f"range {min(swings):.1f} to {max(swings):.1f}.")
        lines.append(line)
        resized = [_resize_effect(r) for r in stored if _resizes_eurosat(r)]
        if resized:
            gains = [float(np.mean(g)) for g, _ in resized]
            lines.append(f"SSL-suite encoders on `{data}`, 64 -> {ref.split('/')[0]} ({ref.split('/')[1]} "
                         f"normalisation), kNN-5: mean Δ {100 * np.mean(gains):+.1f} points over {len(gains)} "
                         f"encoders, positive in {sum(g > 0 for g in gains)}; the seed paper's claim (see the "
                         f"built-in encoders' lines) holds on {sum(h for _, h in resized)} of {len(resized)}.")
    return lines


def _resize_effect(rec: dict) -> tuple[list[float], bool]:
    """Per-seed kNN-5 gain of resizing EuroSAT 64 -> the reference size, and whether the seed paper's claim holds:
    at least half its gain, positive, and the same sign in every seed."""
    ref = rec["task_info"]["reference"]
    native, resized = rec["metrics"][f"knn5@native/{ref.split('/')[1]}"], rec["metrics"][f"knn5@{ref}"]
    gains = [b - a for a, b in zip(native["per_seed"], resized["per_seed"])]
    consistent = all(g > 0 for g in gains) or all(g < 0 for g in gains)
    large = abs(float(np.mean(gains))) >= (SEED_PAPER_EUROSAT[1] - SEED_PAPER_EUROSAT[0]) / 2
    return gains, bool(large and consistent and np.mean(gains) > 0)


def _resize_finding(rec: dict) -> str:
    ref = rec["task_info"]["reference"]
    norm = ref.split("/")[1]
    native, resized = rec["metrics"][f"knn5@native/{norm}"], rec["metrics"][f"knn5@{ref}"]
    gains, holds = _resize_effect(rec)
    paper = SEED_PAPER_EUROSAT[1] - SEED_PAPER_EUROSAT[0]
    verdict = "holds here" if holds else "is not established here"
    return (f"`{rec['case']}`, EuroSAT 64 -> {ref.split('/')[0]} ({norm} normalisation), kNN-5: "
            f"{native['mean']:.3f} -> {resized['mean']:.3f}, Δ {np.mean(gains) * 100:+.1f} points (per seed "
            f"{', '.join(f'{g * 100:+.1f}' for g in gains)}; the per-case rule: {one_case(gains)}). The seed "
            f"paper's ImageNet ResNet-50 went {SEED_PAPER_EUROSAT[0]:.3f} -> {SEED_PAPER_EUROSAT[1]:.3f} "
            f"({paper * 100:+.1f}); its claim that resizing to the pretraining size changes frozen-feature accuracy "
            f"a lot (at least half that gain, same sign in every seed) {verdict}.")


def figures(records: list[dict], out_dir: Path) -> list[tuple[str, Path]]:
    """PNG heat maps of the preprocessing grid (one per probe case) and few-shot curves (one per dataset)."""
    plt = pyplot()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    made: list[tuple[str, Path]] = []
    recs = _probe_records(records)
    for rec in sorted(recs, key=lambda r: (r["profile"], r["case"])):
        grid = rec["task_info"]["grid"]
        geometries = list(dict.fromkeys(g.split("/")[0] for g in grid))
        norms = list(dict.fromkeys(g.split("/")[1] for g in grid))
        fig, axes = plt.subplots(1, len(PROBES), figsize=(3.2 * len(PROBES) + 1.5, 0.45 * len(geometries) + 1.8),
                                 squeeze=False, gridspec_kw={"wspace": 0.08})
        for ax, probe in zip(axes[0], PROBES):
            values = np.full((len(geometries), len(norms)), np.nan)
            for i, g in enumerate(geometries):
                for j, nm in enumerate(norms):
                    m = rec["metrics"].get(f"{probe}@{g}/{nm}")
                    if m is not None and m["mean"] is not None:
                        values[i, j] = m["mean"]
            im = ax.imshow(values, vmin=0, vmax=1, cmap="viridis", aspect="auto")
            for (i, j), v in np.ndenumerate(values):
                if np.isfinite(v):
                    ax.text(j, i, f"{v:.2f}", ha="center", va="center", fontsize=7,
                            color="white" if v < 0.6 else "black")
            ax.set_xticks(range(len(norms)), norms, rotation=30, fontsize=8)
            ax.set_yticks(range(len(geometries)), geometries if probe == PROBES[0] else [], fontsize=8)
            ax.set_title(probe, fontsize=9)
        fig.colorbar(im, ax=axes[0].tolist(), shrink=0.8, label="accuracy")
        fig.suptitle(f"{rec['case']}: accuracy per preprocessing ({rec['profile']}, mean of {len(rec['seeds'])} "
                     f"seed{'s' if len(rec['seeds']) > 1 else ''})", fontsize=10)
        path = out_dir / f"{NAME}-{rec['profile']}-{rec['case']}-grid.png"
        fig.savefig(path, dpi=110, bbox_inches="tight")
        plt.close(fig)
        made.append((f"{rec['case']}: preprocessing grid ({rec['profile']})", path))
    by_data: dict[tuple[str, str], list[dict]] = {}
    for rec in recs:
        by_data.setdefault((rec["profile"], rec["task"]["params"]["data"]), []).append(rec)
    for (profile, data), group in sorted(by_data.items()):
        # one panel per classifier, a colour per encoder, the legend beside the panels: 30 curves on one axes
        # under an inside legend could not be read
        group = sorted(group, key=lambda r: r["case"])
        fig, axes = plt.subplots(1, len(FEWSHOT), figsize=(4.2 * len(FEWSHOT) + 3.5, 4.0), sharey=True,
                                 squeeze=False)
        for ax, clf in zip(axes[0], FEWSHOT):
            ticks: dict[float, str] = {}
            for colour, rec in enumerate(group):
                n_all = min(rec["task_info"]["pool_counts"]) * rec["task"]["params"]["train_fraction"]
                xs, ys, es = [], [], []
                for s in rec["task"]["params"]["shots"]:
                    m = rec["metrics"].get(f"fewshot_{clf}@{s}")
                    if m is None or m["mean"] is None:
                        continue
                    xs.append(n_all if s == "all" else int(s))
                    ticks[xs[-1]] = f"all\n({n_all:g})" if s == "all" else str(s)
                    ys.append(m["mean"])
                    es.append(seed_sem(m) or 0.0)
                if xs:
                    ax.errorbar(xs, ys, yerr=es, marker="o", markersize=3, capsize=2, lw=1,
                                linestyle="-" if colour < 10 else "--", color=f"C{colour % 10}",
                                label=rec["task"]["params"]["encoder"])
            ax.set_xscale("log")
            # a shot count within 1.4x of the next larger tick would print over it (50 next to all (60))
            keep = sorted(ticks)
            keep = [x for i, x in enumerate(keep) if i == len(keep) - 1 or keep[i + 1] / x >= 1.4]
            ax.set_xticks(keep, [ticks[x] for x in keep], fontsize=8)
            ax.minorticks_off()
            ax.set_xlabel("labelled samples per class", fontsize=8)
            ax.set_title("logistic regression" if clf == "lr" else "naive Bayes", fontsize=9)
            ax.grid(alpha=0.3)
        axes[0][0].set_ylabel("test accuracy (higher is better)", fontsize=8)
        handles, labels = axes[0][0].get_legend_handles_labels()
        fig.legend(handles, labels, loc="center left", bbox_to_anchor=(1.0, 0.5), frameon=False, fontsize=7,
                   title="encoder", title_fontsize=8)
        fig.suptitle(f"few-shot probes, {data} ({profile}): test accuracy against labelled samples per class "
                     "(± 1 sem over seeds)", fontsize=9)
        fig.tight_layout()
        path = out_dir / f"{NAME}-{profile}-{data}-fewshot.png"
        save(fig, path)
        made.append((f"{data}: few-shot curves ({profile})", path))
    return made
