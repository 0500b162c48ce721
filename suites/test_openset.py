"""Open-set recognition on the Semantic Shift Benchmark protocol.
See ``harness/suites/openset.py`` for the cases, splits, trainers, scores and metrics."""

from harness.suites import openset as SUITE  # noqa: F401  (the plugin reads SUITE)


def test_openset(harness_case, benchmark):
    harness_case.run(benchmark)
