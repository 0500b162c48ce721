"""Metrics and statistics for the harness: pure, vectorised functions over numpy arrays (torch tensors are
converted). Bad or degenerate input raises :class:`MetricError`; no metric returns a placeholder value.

Modules: ``classification`` (accuracy, macro-F1, group/domain accuracy, ECE), ``openset`` (AUROC, AUPR, FPR@95,
OSCR), ``unlearning`` (UA/RA/TA, MIA-efficacy, RTE, average gap, margins, KLoM), ``probes`` (kNN, linear and
Gaussian naive Bayes probes, linear CKA), ``stats`` (mean/std/sem over seeds, two-sided paired t and sign-flip
permutation tests, Holm correction, Friedman test with Nemenyi CD, bootstrap CIs over seeds and over cases). Each
module's docstring gives the exact definitions.
"""

from harness.metrics._checks import MetricError, as_predictions
from harness.metrics.classification import (
    DomainAccuracy,
    GroupAccuracy,
    WorstGroupAccuracy,
    accuracy,
    domain_accuracy,
    expected_calibration_error,
    group_accuracies,
    macro_f1,
    per_class_accuracy,
    worst_group_accuracy,
)
from harness.metrics.openset import aupr_in, aupr_out, auroc, fpr_at_95_tpr, fpr_at_tpr, openset_metrics, oscr
from harness.metrics.probes import (
    GaussianNaiveBayes,
    knn_accuracy,
    knn_predict,
    linear_cka,
    linear_probe_accuracy,
    linear_probe_predict,
    naive_bayes_accuracy,
    naive_bayes_predict,
)
from harness.metrics.stats import (
    FriedmanResult,
    PairedComparison,
    PairedTTest,
    bootstrap_ci,
    bootstrap_mean_diff_ci,
    friedman,
    holm,
    mean_std,
    paired_test,
    paired_ttest,
    standard_error,
    summarize,
)
from harness.metrics.unlearning import (
    KLoMResult,
    average_gap,
    klom,
    margins,
    mia_efficacy,
    mia_efficacy_from_confidence,
    retain_accuracy,
    run_time_efficiency,
    test_accuracy,
    true_class_probability,
    unlearning_accuracy,
)

__all__ = [
    "DomainAccuracy",
    "FriedmanResult",
    "GaussianNaiveBayes",
    "GroupAccuracy",
    "KLoMResult",
    "MetricError",
    "PairedComparison",
    "PairedTTest",
    "WorstGroupAccuracy",
    "accuracy",
    "as_predictions",
    "aupr_in",
    "aupr_out",
    "auroc",
    "average_gap",
    "bootstrap_ci",
    "bootstrap_mean_diff_ci",
    "domain_accuracy",
    "expected_calibration_error",
    "fpr_at_95_tpr",
    "fpr_at_tpr",
    "friedman",
    "group_accuracies",
    "holm",
    "klom",
    "knn_accuracy",
    "knn_predict",
    "linear_cka",
    "linear_probe_accuracy",
    "linear_probe_predict",
    "naive_bayes_accuracy",
    "naive_bayes_predict",
    "macro_f1",
    "margins",
    "mean_std",
    "mia_efficacy",
    "mia_efficacy_from_confidence",
    "openset_metrics",
    "oscr",
    "paired_test",
    "paired_ttest",
    "per_class_accuracy",
    "retain_accuracy",
    "run_time_efficiency",
    "standard_error",
    "summarize",
    "test_accuracy",
    "true_class_probability",
    "unlearning_accuracy",
    "worst_group_accuracy",
]
