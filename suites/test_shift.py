"""WILDS-like distribution-shift suite (domain generalisation).
See ``harness/suites/shift.py`` for the cases, splits, model selection and metrics."""

from harness.suites import shift as SUITE  # noqa: F401  (the plugin reads SUITE)


def test_shift(harness_case, benchmark):
    harness_case.run(benchmark)
