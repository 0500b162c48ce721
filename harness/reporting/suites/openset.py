"""The open-set suite's report (:mod:`harness.suites.openset` defines its cases): the SSB paper's findings
measured on the records (accuracy against AUROC, MLS against MSP, Easy against Hard) and its Figure 2."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from scipy.stats import spearmanr

from harness.reporting import claims
from harness.reporting.figures import pyplot, save
from harness.reporting.informative import Floor, constant, majority
from harness.suites.openset import NAME

DESCRIPTION = ("open-set recognition on the SSB protocol: MNIST and CIFAR-10 6-known splits (CIFAR with far-OOD "
               "sets beside the near-OOD held-out classes), CUB with the SSB Easy/Medium/Hard splits, PACS under "
               "covariate shift; the image cases train a linear head on frozen ImageNet Lite0 features (smoke and "
               "standard), so absolute numbers are not the paper's; fpr95 is ours (unknowns accepted at 95% of "
               "knowns), fpr95_openood OpenOOD v1.5's (knowns rejected at 95% of unknowns)")
LEADERBOARD_COLUMNS = ["acc", "oscr", "fpr95", "fpr95_openood", "aupr_in", "aupr_out", "auroc_far", "auroc_easy",
                       "auroc_medium", "auroc_hard", "auroc_photo", "auroc_msp"]
# A training method's row is its own model scored with MLS, so the `erm` row and the `mls` row (MLS on the ERM
# model) are one measurement of the same models: ranking both would count it twice and test it against itself.
# `erm` stays in the tables as a reference row (no verdict, no rank); `mls` is the one that is compared.
REFERENCE_METHODS = {"erm": "the same measurement as mls (MLS on the ERM model); compared as mls"}
# Standard cases below the suite's informativeness bar (closed-set accuracy >= chance + 20 points and the baseline's
# AUROC >= 0.70): reported, kept out of rankings (a report attribute: rewording a reason stales no record). Measured
# with msp and erm at the standard profile, seed 0 (a pilot in a scratch folder). The MNIST cases clear the bar; on
# CIFAR-10 MLS clears it on all five splits (0.725-0.822) but MSP, the baseline, only on splits 2 and 4 (0.665-0.737):
# not declared here, so the standard regeneration will say whether they rank (`leaderboard --check`).
REPRODUCTIONS: dict[str, str] = {
    "cub-ssb": "the shared CUB copy is 64 px with about 30 training images for each of its 24 known classes; a linear "
               "head on frozen ImageNet Lite0 features (224 px) reaches closed-set accuracy 0.70 (chance 0.04) but "
               "AUROC 0.67 (MSP) and 0.64 (MLS), under the 0.70 bar: the SSB's fine-grained unknowns need the "
               "paper's fine-tuned, high-resolution backbones (the full profile)",
    "pacs-covariate": "trained on photos only, the frozen-feature head reaches 0.53 accuracy on art paintings and "
                      "sketches (chance 0.25; sketches alone 0.36) and AUROC 0.67 (MSP and MLS), against 0.97 on "
                      "held-out photos: the covariate shift, not the open-set score, bounds it; kept for that trend",
}
INFORMATIVE = (
    Floor("acc", majority("y", known_only=True), label="closed-set accuracy"),
    Floor("auroc", constant(0.5), label="AUROC"),
)


def _family(case: str) -> str:
    return case.split("-split")[0] if "-split" in case else case


def _row(rec: dict) -> str:
    trainer = rec["hparam_overrides"].get("trainer")
    return rec["method"] + (f"[{trainer}]" if trainer else "")


def _per_seed(rec: dict, key: str) -> list:
    """A per-seed fact of the record's ``run`` (the runner keeps one entry per seed)."""
    return rec.get("run", {}).get(key) or [None] * len(rec["seeds"])


def _models(records: list[dict]) -> dict[tuple, dict[str, Any]]:
    """One entry per closed-set model (case, trainer, seed): its checkpoints, and its MLS and MSP AUROC where a
    record scored it with them (an ``mls``/``msp`` row, or a training method's row: its own score and ``_msp``)."""
    models: dict[tuple, dict[str, Any]] = {}
    for rec in records:
        trainers, checkpoints, scores = (_per_seed(rec, k) for k in ("trainer", "checkpoints", "score"))
        for i, seed in enumerate(rec["seeds"]):
            if trainers[i] is None:
                continue
            entry = models.setdefault((rec["case"], trainers[i], seed), {})
            if checkpoints[i]:
                entry["checkpoints"] = checkpoints[i]
            for metric, tag in (("auroc", scores[i]), ("auroc_msp", "msp")):
                value = rec["metrics"].get(metric, {}).get("per_seed", [])
                if tag in ("mls", "msp") and i < len(value) and value[i] is not None:
                    entry[tag] = value[i]
    return models


def _spearman(points: list[tuple[float, float]]) -> str:
    if len(points) < 3 or len({a for a, _ in points}) < 2 or len({b for _, b in points}) < 2:
        return "n/a (too few distinct points)"
    rho, p = spearmanr([a for a, _ in points], [b for _, b in points])
    return f"ρ = {rho:+.2f} (p = {p:.2g}, n = {len(points)})"


def findings(records: list[dict]) -> list[str]:
    """The paper's findings, measured on the records: accuracy against AUROC, MLS against MSP, Easy against Hard."""
    ok = [r for r in records if r["status"] == "ok" and r["suite"] == NAME]
    models = _models(ok)
    lines = []
    for family in sorted({_family(case) for case, _, _ in models}):
        mine = {k: v for k, v in models.items() if _family(k[0]) == family and v.get("checkpoints")}
        every = [(c[1], c[2]) for v in mine.values() for c in v["checkpoints"] if None not in c[1:]]
        final = [(v["checkpoints"][-1][1], v["checkpoints"][-1][2]) for v in mine.values()]
        if not mine:
            continue
        trainers = sorted({k[1] for k in mine})
        lines.append(f"`{family}`: Spearman between closed-set accuracy and MLS AUROC over every checkpoint of "
                     f"{len(mine)} models ({len(trainers)} trainers: {', '.join(trainers)}; seeds and splits) "
                     f"{_spearman(every)}; final models only {_spearman(final)}.")
    pairs = [(v["mls"], v["msp"], k) for k, v in models.items() if v.get("mls") is not None
             and v.get("msp") is not None]
    if len(pairs) >= 2:
        # the leaderboard's on-these-cases rule (harness.reporting.claims): models are paired within their case
        groups = [[a - b for a, b, k in pairs if k[0] == case] for case in sorted({k[0] for *_, k in pairs})]
        t = claims.holm_family({"x": claims.on_these_cases(groups)}, "on")["x"]
        wins = sum(a > b for a, b, _ in pairs)
        per_family = ", ".join(
            f"{f} {sum(a > b for a, b, k in pairs if _family(k[0]) == f)}/{sum(_family(k[0]) == f for *_, k in pairs)}"
            for f in sorted({_family(k[0]) for _, _, k in pairs}))
        verdict = {"better": "MLS better", "worse": "MSP better"}.get(t.verdict, t.verdict)
        lines.append(f"MLS vs MSP (AUROC, paired over {t.n} closed-set models = case x trainer x seed): MLS higher "
                     f"in {wins} ({per_family}), mean over cases Δ {t.estimate:+.4f}; on these cases (stratified "
                     f"sign-flip over {len(groups)} case(s), p = {t.p:.3g}): {verdict}.")
    easy, hard, rows = [], [], set()
    for rec in ok:
        if rec["case"] != "cub-ssb" or "auroc_easy" not in rec["metrics"] or "auroc_hard" not in rec["metrics"]:
            continue
        for e, h in zip(rec["metrics"]["auroc_easy"]["per_seed"], rec["metrics"]["auroc_hard"]["per_seed"]):
            if e is not None and h is not None:
                easy.append(e)
                hard.append(h)
                rows.add(_row(rec))
    if len(easy) >= 2:
        t = claims.holm_family({"x": claims.on_these_cases([np.subtract(easy, hard)])}, "on")["x"]
        lines.append(f"CUB (SSB): Easy vs Hard unknowns, AUROC over {t.n} (row, seed) pairs of {len(rows)} rows: "
                     f"Easy {np.mean(easy):.4f} vs Hard {np.mean(hard):.4f}, Easy higher in "
                     f"{sum(e > h for e, h in zip(easy, hard))}; sign-flip over the pairs, p = {t.p:.3g}: Easy "
                     f"{t.verdict}.")
    if lines:
        lines.append("These are short CPU budgets (a small CNN from scratch on MNIST; a linear head on frozen "
                     "ImageNet Lite0 features for CIFAR-10, CUB and PACS): absolute numbers are not the paper's; the "
                     "trends above are what they show.")
    return lines


def figures(records: list[dict], out_dir: Path) -> list[tuple[str, Path]]:
    """Closed-set accuracy against MLS AUROC at every checkpoint, one panel per dataset (the paper's Figure 2)."""
    models = _models([r for r in records if r["status"] == "ok" and r["suite"] == NAME])
    families = sorted({_family(k[0]) for k, v in models.items() if v.get("checkpoints")})
    if not families:
        return []
    plt = pyplot()
    fig, axes = plt.subplots(1, len(families), figsize=(3.6 * len(families) + 1.6, 3.6), squeeze=False)
    trainers = sorted({k[1] for k, v in models.items() if v.get("checkpoints")})
    for ax, family in zip(axes[0], families):
        mine = {k: v for k, v in models.items() if _family(k[0]) == family and v.get("checkpoints")}
        for colour, trainer in enumerate(trainers):
            pts = [c for k, v in mine.items() if k[1] == trainer for c in v["checkpoints"]]
            ax.scatter([c[1] for c in pts], [c[2] for c in pts], s=10, alpha=0.7, color=f"C{colour}", label=trainer)
        ax.set_title(family, fontsize=9)
        ax.set_xlabel("closed-set accuracy", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.xaxis.set_major_locator(plt.MaxNLocator(4))  # 4 ticks at most: a narrow panel's labels must not touch
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("AUROC, MLS score (higher is better)", fontsize=8)
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="center left", bbox_to_anchor=(1.0, 0.5), frameon=False, fontsize=8,
               title="trainer", title_fontsize=8)
    fig.suptitle("open set: AUROC (MLS) against closed-set accuracy; a point per checkpoint of each seed's model "
                 "(no averaging, so no error bars)", fontsize=9)
    fig.tight_layout()
    path = Path(out_dir) / "openset_accuracy_vs_auroc.png"
    save(fig, path)
    return [("Open set: closed-set accuracy against AUROC (every checkpoint)", path)]
