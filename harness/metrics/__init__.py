"""Metrics and statistics for the harness: pure, vectorised functions over numpy arrays (torch tensors are
converted). Bad or degenerate input raises :class:`MetricError`; no metric returns a placeholder value.

Modules: ``classification`` (accuracy, macro-F1, group/domain accuracy, ECE), ``openset`` (AUROC, AUPR, FPR@95,
OSCR), ``unlearning`` (UA/RA/TA, MIA-efficacy, RTE, average gap, margins, KLoM), ``probes`` (kNN, linear and
Gaussian naive Bayes probes, linear CKA), ``stats`` (mean/std/sem over seeds, two-sided paired t and sign-flip
permutation tests, Holm correction, Friedman test with Nemenyi CD, bootstrap CIs over seeds and over cases). Each
module's docstring gives the exact definitions.

Import the submodule you use (``from harness.metrics.openset import auroc``): a record's code digest
follows imports, so a change to the unlearning metrics does not touch the losses suite.
"""
