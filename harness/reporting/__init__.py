"""Reports read records and never run code that is measured: leaderboard, site, figures, claims, and each suite's
findings, figures and description (:mod:`harness.reporting.suites`).  Nothing here is in a record's code digest or a
store key: suites, protocols and methods never import this package (``tests/test_reports_apart.py`` checks it), so a
reworded sentence stales nothing. Within the package imports run one way: ``site`` -> ``leaderboard`` -> ``suites``,
``paired`` -> ``compare`` -> ``claims``, ``figures``."""
