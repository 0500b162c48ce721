"""Protocols: how a suite uses a method. Each is a plain function
``(task, method, ctx, seed) -> SeedResult``."""

from harness.protocols.supervised import SeedResult, run_supervised

PROTOCOL_RUNNERS = {"supervised": run_supervised}

__all__ = ["PROTOCOL_RUNNERS", "SeedResult", "run_supervised"]
