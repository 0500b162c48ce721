"""Your own ImageFolder tree as a case: ``pytest suites/ --method=erm --dataset=imagefolder:PATH``.
See ``harness/suites/imagefolder.py`` for the split, profiles and metrics."""

from harness.suites import imagefolder as SUITE  # noqa: F401  (the plugin reads SUITE)


def test_imagefolder(harness_case):
    harness_case.run()
