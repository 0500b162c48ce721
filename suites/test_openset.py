"""Open-set recognition on the Semantic Shift Benchmark protocol.
See ``harness/suites/openset.py`` for the cases, splits, trainers, scores and metrics."""

from harness.suites import openset as SUITE  # noqa: F401  (the plugin reads SUITE)


def NUM_CLASSES(spec) -> int | None:  # noqa: N802  (read by the plugin like a constant)
    """A case trains on its known classes. The SSB cases know theirs only once the split file is read, but the
    suite refuses a case with fewer than MIN_KNOWN (3), so that many is a sure lower bound."""
    known = spec.params.get("known")
    return len(known) if known else SUITE.MIN_KNOWN


def test_openset(harness_case):
    harness_case.run()
