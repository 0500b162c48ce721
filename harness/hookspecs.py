"""Hooks the harness offers to conftest files and plugins (pytest-benchmark style)."""

from __future__ import annotations

import pluggy
import pytest

hookspec = pluggy.HookspecMarker("pytest")


@hookspec
def pytest_harness_update_record(record: dict, config: pytest.Config) -> None:
    """Edit a run record in place before it is validated and written (add machine info, tags...)."""
