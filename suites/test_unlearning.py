"""Machine-unlearning suite. See ``harness/suites/unlearning.py`` for the cases, reference models and metrics."""

from harness.suites import unlearning as SUITE  # noqa: F401  (the plugin reads SUITE)


def test_unlearning(harness_case):
    harness_case.run()
