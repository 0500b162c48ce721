"""Remote-sensing suite: frozen-encoder preprocessing grid and few-shot probes (``--method=frozen``), supervised
RSSCN7 scale shift, EuroSAT and SYNTHETIC 13-band cases (any supervised method).
See ``harness/suites/remote_sensing.py`` for the cases, the grid and the metrics."""

from harness.suites import remote_sensing as SUITE  # noqa: F401  (the plugin reads SUITE)

# classes of the supervised cases' datasets, known before loading (see suites/test_shift.py)
CLASSES = {"rsscn7": 7, "eurosat": 10, "synthetic_ms": 7}


def NUM_CLASSES(spec) -> int | None:  # noqa: N802  (read by the plugin like a constant)
    return CLASSES.get(spec.params.get("dataset")) if spec.protocol == "supervised" else None


def test_remote_sensing(harness_case):
    harness_case.run()
