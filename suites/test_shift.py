"""WILDS-like distribution-shift suite (domain generalisation).
See ``harness/suites/shift.py`` for the cases, splits, model selection and metrics."""

from harness.suites import shift as SUITE  # noqa: F401  (the plugin reads SUITE)

# classes per dataset, known before loading, so the plugin deselects binary-only methods from multi-class cases
# (tests/test_plugin_conventions.py checks these against built tasks)
CLASSES = {"colored_digits": 2, "digits_multi": 10, "rotated_digits": 10, "pacs": 7, "rsscn7": 7}


def NUM_CLASSES(spec) -> int | None:  # noqa: N802  (read by the plugin like a constant)
    return CLASSES.get(spec.params.get("dataset"))


def test_shift(harness_case):
    harness_case.run()
