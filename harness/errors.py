"""Errors that reach users. Each one says what was wrong and how to fix it."""

from __future__ import annotations


class HarnessError(Exception):
    """Base class: a clear, user-facing error (never a torch traceback)."""


class UsageError(HarnessError):
    """Bad command-line input: unknown method, malformed option."""


class HparamError(UsageError):
    """Unknown hyper-parameter or a value of the wrong type."""


class DataMissing(HarnessError):
    """A dataset is absent. Suites turn this into a skip (or a failure under --strict-data)."""

    def __init__(self, name: str, path: str, hint: str = "") -> None:
        self.name, self.path, self.hint = name, path, hint
        msg = f"{name} not found under {path}"
        super().__init__(f"{msg}; {hint}" if hint else msg)


class DataError(HarnessError):
    """A dataset file exists but is unreadable, corrupt or inconsistent. Names the file."""


class RecordError(HarnessError):
    """A results record is malformed, fails schema validation or contradicts itself."""


class RecordLocked(RecordError):
    """Another run holds the lock of the record this run would write."""


class Diverged(HarnessError):
    """A NaN or Inf loss stopped the case."""

    def __init__(self, step: int, value: float, seed: int | None = None) -> None:
        self.step, self.value, self.seed = step, value, seed
        where = f" (seed {seed})" if seed is not None else ""
        super().__init__(f"diverged at step {step}{where}: loss = {value}")


class MethodError(HarnessError):
    """A method's code failed on the harness's conventions (output shape, target dtype); says which and how."""


class SealedData(MethodError, AttributeError):
    """A method reached for task data it must not see (the test split, or any split outside its batches)."""


class Unsupported(HarnessError):
    """A method cannot take part in a case; pytest reports a skip with this reason."""
