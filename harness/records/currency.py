"""Is this record current? The one answer, for the leaderboard, ``validate``/``verify``, ``--resume`` and the gate.

A record is **current** when, in this checkout,

1. its suite is registered and has the record's case: for a suite with ``DATASET_OPTION`` (cases that depend on
   user input) the suite's ``spec_for_record(record)``, else the case of that name in
   ``case_specs(profile)``;
2. the case's task fingerprint is the record's (same case parameters, budget and suite version);
3. its method is registered, and the record's ``code`` digests are those of the current method, protocol and
   suite code (:func:`harness.records.provenance.code_versions`, the one code digest); a record re-stamped by
   ``regenerate --stale`` (its seed 0 re-executed bit-identically at a later commit, see
   :func:`harness.checks.verify.restamp`) carries the digests of the code that re-executed it;
4. every metric's recorded direction agrees with the suite's ``LOWER_IS_BETTER``;
5. a CPU record was made under the pinned CPU numerics (:mod:`harness.cpu_numerics`), so any machine can
   re-execute it bit for bit.

Otherwise it is **stale**, with the first reason in that order. :class:`Verdict` also says which code parts
differ and whether the code is all that differs (then a re-execution of seed 0 may re-stamp it instead of
re-running every seed).

**Machine independence.** The answer depends on the checkout and on the record only, never on a cache: a clean
clone gives the same stale list on any machine of one kind, whatever its cache holds. Hence a suite's
``spec_for_record`` must rebuild a case whose existence depends on local state from the record itself: the
remote-sensing probes of SSL-suite encoders exist in ``case_specs`` only where the encoder is cached, so their
records are judged against the current case definition with the encoder identity the record names (what trained
it: task, data, method, hparams, seed; the code that trained it is in the record's suite digest; whether that
encoder is itself current is the SSL suite's records' question).

Memoised per :class:`Judge`: one per pass over a results folder (a leaderboard build, a regenerate run), so case
lists and code digests are computed once per (suite, profile) and (method, case module) in that pass, and an
edit between passes is seen.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType

from harness.core.registry import get_method_class, load_method_module, method_names
from harness.core.task import CaseSpec
from harness.cpu_numerics import PINS
from harness.errors import UsageError
from harness.records import iter_records
from harness.records.provenance import code_versions, stale_parts
from harness.suites import case_specs, get_suite, is_suite

CURRENT = "current"


@dataclass(frozen=True)
class Verdict:
    """Whether a record is current, why not, which code parts differ and the case spec it was judged against."""

    current: bool
    reason: str  # CURRENT, or the first reason it is stale
    stale_code: tuple[str, ...] = ()  # "method", "protocol", "suite": the digests that differ
    spec: CaseSpec | None = None
    code_only: bool = False  # stale by code digests alone: a bit-identical re-execution may re-stamp it


@dataclass
class Collected:
    current: list[dict] = field(default_factory=list)
    stale: list[tuple[Path, str]] = field(default_factory=list)


def unpinned(record: dict) -> bool:
    """A CPU record made without :data:`harness.cpu_numerics.PINS` (the instruction set it ran under depends on
    the machine, so no re-execution can vouch for its bits). Decided from the record alone, so the same on any
    machine."""
    env = record.get("environment", {})
    if not str(env.get("device", "")).startswith("cpu"):
        return False
    made = env.get("cpu_numerics") or {}
    return any(made.get(name) != value for name, value in PINS.items())


class Judge:
    """Answers "is this record current" for many records, memoising case lists and code digests."""

    def __init__(self) -> None:
        self._cases: dict[tuple[str, str], dict[str, CaseSpec]] = {}
        self._code: dict[tuple, dict[str, str] | str] = {}

    def spec_for(self, record: dict) -> CaseSpec | None:
        """The current spec of a record's case, or None when its suite or case is gone (or its data is not here)."""
        if not is_suite(record["suite"]):
            return None
        suite = get_suite(record["suite"])
        if getattr(suite, "DATASET_OPTION", False):
            return suite.spec_for_record(record) if hasattr(suite, "spec_for_record") else None
        key = (record["suite"], record["profile"])
        if key not in self._cases:
            self._cases[key] = {s.case: s for s in case_specs(suite, record["profile"])}
        return self._cases[key].get(record["case"])

    def code_now(self, method: str | type, spec: CaseSpec) -> dict[str, str] | str:
        """Current code digests for a method (name or class) on a case, or why they cannot be known."""
        roots = getattr(get_suite(spec.suite), "code_roots", None) if is_suite(spec.suite) else None
        extra = tuple(str(root) for root in roots(spec)) if roots is not None else ()  # e.g. the SSL method probed
        key = (method, spec.suite, spec.protocol, spec.build.__module__, extra)
        if key not in self._code:
            try:
                cls = get_method_class(method) if isinstance(method, str) else method
                self._code[key] = code_versions(cls, spec)
            except UsageError:
                self._code[key] = f"method {method!r} is not registered here (install or load it to rank this record)"
        return self._code[key]

    def judge(self, record: dict, spec: CaseSpec | None = None, method_cls: type | None = None) -> Verdict:
        """The verdict on one record; ``spec`` and ``method_cls`` when the caller already holds them (a run
        resuming its own record, possibly of a suite or method that is not registered)."""
        if spec is None:
            if not is_suite(record["suite"]):
                return Verdict(False, f"unknown suite {record['suite']!r}")
            spec = self.spec_for(record)
        if spec is None:
            return Verdict(False, "case no longer in the suite (or its data is not here)")
        now = self.code_now(method_cls or record["method"], spec)
        parts = () if isinstance(now, str) else tuple(stale_parts(record, now))
        wrong = _wrong_directions(record, get_suite(spec.suite) if is_suite(spec.suite) else None)
        reasons = []  # in the order of the module docstring: the first one is the verdict's reason
        if spec.fingerprint != record["fingerprint"]:
            reasons.append("task fingerprint differs from the current suite definition")
        if isinstance(now, str):
            reasons.append(now)
        if parts:
            reasons.append("made before code fingerprints were recorded" if not record.get("code")
                           else f"made by other code ({', '.join(parts)} changed)")
        if wrong:
            reasons.append(f"metric direction differs from the suite's LOWER_IS_BETTER for {', '.join(wrong)}")
        if unpinned(record):
            reasons.append("made under CPU numerics other than the pinned ones (harness/cpu_numerics.py): no machine "
                           "can re-execute it bit for bit")
        if not reasons:
            return Verdict(True, CURRENT, spec=spec)
        return Verdict(False, reasons[0], parts, spec, code_only=bool(parts) and len(reasons) == 1)

    def collect(self, results_dir: Path) -> Collected:
        """Every record under ``results_dir``, current or stale with its reason."""
        out = Collected()
        for path, record in iter_records(results_dir):
            verdict = self.judge(record)
            if verdict.current:
                out.current.append(record)
            else:
                out.stale.append((path, verdict.reason))
        return out


def _wrong_directions(record: dict, suite: ModuleType | None) -> list[str]:
    """Metrics whose recorded direction contradicts the suite's ``LOWER_IS_BETTER`` (none when it declares none)."""
    if suite is None or not hasattr(suite, "LOWER_IS_BETTER"):
        return []
    lower = set(suite.LOWER_IS_BETTER)
    return sorted(m for m, v in record["metrics"].items()
                  if "higher_is_better" in v and v["higher_is_better"] == (m.removeprefix("oracle_") in lower))


def judge(record: dict, spec: CaseSpec | None = None, method_cls: type | None = None) -> Verdict:
    """:meth:`Judge.judge` for one record (nothing memoised across calls)."""
    return Judge().judge(record, spec, method_cls)


def spec_for(record: dict) -> CaseSpec | None:
    """:meth:`Judge.spec_for` for one record."""
    return Judge().spec_for(record)


def collect(results_dir: Path) -> Collected:
    """:meth:`Judge.collect`: the records under ``results_dir``, current or stale with the reason."""
    return Judge().collect(results_dir)


def recorded_modules(records: list[dict]) -> dict[str, list[str]]:
    """The ``--method-module`` files records name (``run.method_module``, written by the runner) for methods not
    registered here: file -> the method names whose records name it."""
    known = set(method_names())
    found: dict[str, list[str]] = {}
    for record in records:
        module = (record.get("run") or {}).get("method_module")
        if isinstance(module, str) and module and record["method"] not in known:
            names = found.setdefault(module, [])
            if record["method"] not in names:
                names.append(record["method"])
    return found


def load_recorded_methods(results_dir: Path, say: Callable[[str], None] = print) -> list[str]:
    """Load the method files that the records under ``results_dir`` name for methods not registered here, so
    their records are judged against their code (current, or stale because the file changed) instead of being
    "not registered here"; returns the method names loaded, and says what it loaded or could not.

    A method file runs code: only a file the user's own run loaded with ``--method-module`` is named by a record,
    and a file inside ``results_dir`` itself is never loaded (a folder of records someone hands you must not bring
    the code it runs). ``harness report`` calls this; ``--method-module`` still works for a file that moved."""
    results_dir = Path(results_dir).resolve()
    loaded: list[str] = []
    for module, names in sorted(recorded_modules([r for _, r in iter_records(results_dir)]).items()):
        path = Path(module)
        if path.resolve().is_relative_to(results_dir):
            say(f"note: not loading {path}, named by the records of {', '.join(names)}: it lies inside the results "
                "folder (records never bring code); pass --method-module to load it")
            continue
        if not path.is_file():
            say(f"note: the records of {', '.join(names)} name {path} (their --method-module), which is not here; "
                "they are listed stale: pass --method-module with the file's new place")
            continue
        try:
            added = load_method_module(path)
        except UsageError as err:
            say(f"note: could not load {path}, named by the records of {', '.join(names)}: {err}")
            continue
        say(f"loaded {', '.join(added) or 'no method'} from {path} (the --method-module its records name)")
        loaded += added
    return loaded
