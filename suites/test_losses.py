"""Loss-ensemble suite: binary digit pairs and breast cancer with label noise.
See ``harness/suites/losses.py`` for the protocol and metrics."""

from harness.suites import losses as SUITE  # noqa: F401  (the plugin reads SUITE)


def test_losses(harness_case, benchmark):
    harness_case.run(benchmark)
