"""Loss-ensemble suite: binary digit pairs and breast cancer with label noise.
See ``harness/suites/losses.py`` for the protocol and metrics."""

from harness.suites import losses as SUITE  # noqa: F401  (the plugin reads SUITE)

NUM_CLASSES = 2  # every case is binary, known before loading (the plugin deselects by it: harness/plugin.py)


def test_losses(harness_case):
    harness_case.run()
