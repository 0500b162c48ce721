"""Remote-sensing suite: frozen-encoder preprocessing grid and few-shot probes (``--method=frozen``), supervised
RSSCN7 scale shift, EuroSAT and SYNTHETIC 13-band cases (any supervised method).
See ``harness/suites/remote_sensing.py`` for the cases, the grid and the metrics."""

from harness.suites import remote_sensing as SUITE  # noqa: F401  (the plugin reads SUITE)


def test_remote_sensing(harness_case, benchmark):
    harness_case.run(benchmark)
