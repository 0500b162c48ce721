"""The loss-ensemble suite's report (:mod:`harness.suites.losses` defines its cases): EnsLoss against each fixed
loss in its regime, and the quick cases' tally against ``bce``."""

from __future__ import annotations

import numpy as np

from harness.metrics.stats import friedman
from harness.records import paired_values
from harness.reporting.informative import Floor, majority
from harness.reporting.paired import compare, family, ok_records_by_case
from harness.suites.losses import BASELINE, PRIMARY, is_regime_case

DESCRIPTION = ("binary digit pairs (MNIST-5k), breast cancer and CIFAR-10 class pairs (the EnsLoss regime), "
               "label noise 0 / 0.2")
LEADERBOARD_COLUMNS = ["test_auroc", "train_acc", "gap"]
FIXED_LOSSES = ("bce", "hinge", "exponential")  # the paper's fixed-loss baselines
INFORMATIVE = (
    Floor("test_acc", majority("test.y"), label="test accuracy"),
    Floor("train_acc", majority("train.y"), each_method=True, label="training accuracy (labels as trained on)"),
)

REPRODUCTIONS: dict[str, str] = {
    "cifar3v5-noise0.2": (
        "the EnsLoss regime's cat-vs-dog pair with 20% of the training labels flipped, trained to the last epoch "
        "without early stopping: the fixed losses memorise the flipped labels (bce fits 0.966 of the labels it was "
        "trained on) and bce, the baseline, tests at 0.637 at standard, under the suite's floor of chance + 0.20 "
        "(0.70), as the overfitting the regime sets up predicts. Kept as the regime's noisiest case, shown but not "
        "ranked; the noise-free cat-vs-dog case and both automobile-vs-truck cases rank"),
}


def findings(records: list[dict]) -> list[str]:
    """EnsLoss against each fixed loss in its regime (the CIFAR2 cases), then every loss against ``bce`` over the
    quick cases, both kinds of claim, Holm over the losses (generated from the records, never asserted in tests)."""
    lines = _regime_findings(ok_records_by_case(records, {r["case"] for r in records if is_regime_case(r["case"])}))
    quick = ok_records_by_case(records, {r["case"] for r in records if not is_regime_case(r["case"])})
    methods = sorted({m for recs in quick.values() for m in recs} - {BASELINE})
    lines += [f"Quick cases (MNIST-5k pairs, breast cancer; early stopping, not the EnsLoss regime): "
              f"{comparison.describe()}."
              for comparison in family([compare(quick, m, BASELINE, PRIMARY) for m in methods])]
    return lines


def _regime_findings(by_case: dict[str, dict[str, dict]]) -> list[str]:
    if not by_case:
        return []
    lines = []
    train = [r["metrics"]["train_acc"]["mean"] for recs in by_case.values() for m, r in recs.items()
             if m in FIXED_LOSSES and r["metrics"].get("train_acc", {}).get("mean") is not None]
    if train:
        lines.append(f"EnsLoss regime ({len(by_case)} CIFAR2 case(s), last epoch, no early stopping): the fixed "
                     f"losses reach a mean train accuracy of {np.mean(train):.3f} on the labels they were trained "
                     "on (noisy ones included), so the models overfit as in the paper's setting.")
    verdicts = {}
    for comparison in family([compare(by_case, "ensloss", fixed, PRIMARY) for fixed in FIXED_LOSSES]):
        verdicts[comparison.baseline] = comparison.verdict()
        gaps = [np.mean(np.subtract(*paired_values(by_case[c]["ensloss"], by_case[c][comparison.baseline], "gap")))
                for c in comparison.cases if "gap" in by_case[c]["ensloss"]["metrics"]]
        gap_text = f"; train-test gap Δ {np.mean(gaps):+.4f} (ensloss − {comparison.baseline})" if gaps else ""
        lines.append(f"EnsLoss regime: {comparison.describe()}{gap_text}.")
    methods = sorted({m for recs in by_case.values() for m in recs})
    complete = [c for c, recs in sorted(by_case.items()) if all(m in recs for m in methods)]
    if len(methods) >= 2 and len(complete) >= 2:
        matrix = [[by_case[c][m]["metrics"][PRIMARY]["mean"] for m in methods] for c in complete]
        result = friedman(matrix)
        ranks = ", ".join(f"{m} {r:.2f}" for m, r in sorted(zip(methods, result.mean_ranks), key=lambda t: t[1]))
        lines.append(f"EnsLoss regime, Friedman test over {len(complete)} cases x {len(methods)} methods on "
                     f"{PRIMARY}: p = {result.p:.3g}; mean ranks (1 = best): {ranks}.")
    if verdicts:
        if all(v == "better" for v in verdicts.values()) and len(verdicts) == len(FIXED_LOSSES):
            claim = "holds on these cases: EnsLoss is better than every fixed loss"
        elif any(v == "worse" for v in verdicts.values()):
            worse = ", ".join(f for f, v in verdicts.items() if v == "worse")
            claim = f"is contradicted on these cases: EnsLoss is worse than {worse}"
        else:
            claim = "is not established on these cases: against " + ", ".join(f"{f} {v}" for f, v in verdicts.items())
        lines.append(f"The paper's claim that EnsLoss beats the fixed losses it ensembles (BCE, hinge, exponential) "
                     f"{claim} (on-these-cases verdicts above, Holm over {len(verdicts)}).")
    return lines
