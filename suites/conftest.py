"""Suites are run on request (``pytest suites/ --method=...``); the harness's
pytest plugin (entry point ``pytest11``) supplies the options and fixtures."""
