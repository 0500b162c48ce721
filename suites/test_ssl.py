"""Self-supervised suite: pretraining scored by frozen-feature probes.
See ``harness/suites/ssl.py`` for the cases, splits, probes and metrics."""

from harness.suites import ssl as SUITE  # noqa: F401  (the plugin reads SUITE)


def test_ssl(harness_case):
    harness_case.run()
