"""Run records: one JSON file per (suite case, method, profile), aggregating seeds.

Records are plain JSON, checked whenever they are loaded: against
:data:`RECORD_SCHEMA` (JSON Schema, draft 2020-12), then for internal
consistency (:func:`check_consistency`: one per-seed value per seed, mean, std
and sem equal to those of the per-seed values, directions, timing ratio). A
hand-edited record fails with an error naming the file and the field.

Each record may carry its evidence: ``<record>.npz`` beside it, holding every
seed's compact arrays (predictions, labels, scores) under ``seed<k>/<name>``,
from which ``python -m harness validate --recompute`` recomputes the metrics.
The record stores the npz's sha256. Both files are written to temp files
(fsync) and renamed, npz first, while the writer holds a lock on the record
path (:func:`record_lock`): an interrupted run leaves the old record or the new
one, and a second writer of the same record fails at once with a clear error
instead of silently overwriting the first.

A record re-stamped by ``regenerate --stale`` (its seed 0 re-executed bit-identically by newer code, see
:func:`harness.checks.verify.restamp`) carries ``restamp``: the seed, commit, date, device and the code digests it
vouches for, which must equal the record's ``code``; its metrics and evidence are those of the original run.

Layout: ``<results>/<suite>/<case>/<method>[-h<hparam hash>]__<profile>.json``
(+ ``.npz``; the lock file is the hidden ``.<name>.lock``).
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import os
import re
import tempfile
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import jsonschema
import numpy as np
from filelock import FileLock, Timeout

from harness.core.registry import NAME_PATTERN
from harness.errors import RecordError, RecordLocked
from harness.metrics.stats import PairedComparison, paired_test, summarize

SCHEMA_VERSION = 1

_metric = {
    "type": "object",
    "required": ["per_seed", "mean", "std"],
    "properties": {
        "per_seed": {"type": "array", "items": {"type": ["number", "null"]}},
        "mean": {"type": ["number", "null"]},
        "std": {"type": ["number", "null"]},
        "sem": {"type": ["number", "null"]},
        "higher_is_better": {"type": "boolean"},
    },
}

_code = {
    "type": "object", "required": ["method", "protocol", "suite"],
    "properties": {k: {"type": "string"} for k in ("method", "protocol", "suite")},
}

RECORD_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "harness run record",
    "type": "object",
    "required": [
        "schema_version", "suite", "case", "method", "family", "profile", "status", "seeds", "primary_metric",
        "higher_is_better", "metrics", "timing", "hparams", "fingerprint", "model_selection", "environment",
    ],
    "properties": {
        "schema_version": {"const": SCHEMA_VERSION},
        "suite": {"type": "string", "minLength": 1},
        "case": {"type": "string", "minLength": 1},
        "method": {"type": "string", "pattern": NAME_PATTERN.pattern},  # the registry's rule for names
        "family": {"type": "string"},
        "profile": {"enum": ["smoke", "standard", "full"]},
        "status": {"enum": ["ok", "diverged"]},
        "diverged": {
            "type": ["object", "null"],
            "properties": {"step": {"type": "integer"}, "seed": {"type": "integer"}, "value": {"type": "string"}},
        },
        "seeds": {"type": "array", "items": {"type": "integer"}},
        "primary_metric": {"type": "string"},
        "higher_is_better": {"type": "boolean"},
        "metrics": {"type": "object", "additionalProperties": _metric},
        "per_domain": {"type": "object"},
        "timing": {
            "type": "object",
            "required": ["step_time_median_s", "step_time_iqr_s", "samples_per_s", "peak_memory_bytes"],
            "properties": {
                "step_time_median_s": {"type": ["number", "null"]},
                "step_time_iqr_s": {"type": ["number", "null"]},
                "samples_per_s": {"type": ["number", "null"]},
                "peak_memory_bytes": {"type": "integer"},
                "memory_kind": {"type": "string"},
                "reference_time_s": {"type": ["number", "null"]},
                "normalised_step_time": {"type": ["number", "null"]},
                "wall_time_s": {"type": ["number", "null"]},
                "precision": {"enum": ["fp32", "bf16", "fp16"]},
                "compile": {"type": ["string", "null"]},
                "compile_time_s": {"type": ["number", "null"]},
                "steps_compiling": {"type": "integer"},
                "speed_fingerprint": {"type": "string"},
            },
        },
        "kernels": {"type": "object", "required": ["activity", "steps", "top"]},  # harness.running.profiling
        "hparams": {"type": "object"},
        "hparam_overrides": {"type": "object"},
        "fingerprint": {"type": "string", "pattern": "^[0-9a-f]{16,64}$"},
        "data_fingerprint": {"type": ["string", "null"]},
        "task": {"type": "object"},
        "model_selection": {"type": "string"},
        "notes": {"type": "array", "items": {"type": "string"}},
        "case_metrics": {
            "type": "object",
            "additionalProperties": {
                "type": "object", "required": ["value"],
                "properties": {"value": {"type": ["number", "null"]}, "higher_is_better": {"type": "boolean"}},
            },
        },
        "run": {"type": "object"},
        "task_info": {"type": "object"},
        "code": _code,
        "restamp": {  # harness.checks.verify.restamp: seed 0 re-executed bit-identically by newer code
            "type": "object", "required": ["seed", "commit", "date", "code"],
            "properties": {"seed": {"type": "integer"}, "commit": {"type": ["string", "null"]},
                           "date": {"type": "string"}, "device": {"type": "string"}, "code": _code,
                           "previous_code": {"type": ["object", "null"]}, "seconds": {"type": "number"}},
        },
        "evidence": {
            "type": ["object", "null"], "required": ["file", "sha256", "arrays"],
            "properties": {"file": {"type": "string"}, "sha256": {"type": "string", "pattern": "^[0-9a-f]{64}$"},
                           "arrays": {"type": "integer"}},
        },
        "environment": {
            "type": "object",
            "required": ["device", "torch", "harness_version", "git_commit", "date"],
            "properties": {
                "device": {"type": "string"},
                "torch": {"type": "string"},
                "cuda": {"type": ["string", "null"]},
                "cuda_driver": {"type": ["string", "null"]},
                "cpu_numerics": {"type": ["object", "null"]},
                "python": {"type": "string"},
                "harness_version": {"type": "string"},
                "git_commit": {"type": ["string", "null"]},
                "date": {"type": "string"},
            },
        },
    },
}

_VALIDATOR = jsonschema.Draft202012Validator(RECORD_SCHEMA)


def validate(record: Any, source: str = "<record>") -> dict:
    """Raise :class:`RecordError` naming the file and the offending field."""
    version = record.get("schema_version") if isinstance(record, dict) else None
    if isinstance(version, int) and not isinstance(version, bool) and version > SCHEMA_VERSION:
        raise RecordError(
            f"{source}: written by a newer harness (record schema {version}; this harness reads schema "
            f"{SCHEMA_VERSION}). Upgrade the harness (git pull, then `pip install -e .`) to read it"
        )
    errors = sorted(_VALIDATOR.iter_errors(record), key=lambda e: list(e.absolute_path))
    if errors:
        err = errors[0]
        where = "/".join(str(p) for p in err.absolute_path) or "(top level)"
        raise RecordError(f"{source}: invalid record at {where}: {err.message}")
    return record


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.=+-]+", "_", text)


def hparam_tag(overrides: dict[str, Any]) -> str:
    """Empty for default hparams, else a short stable hash so variants do not overwrite the default row."""
    if not overrides:
        return ""
    blob = json.dumps(overrides, sort_keys=True, default=str).encode()
    return "-h" + hashlib.sha256(blob).hexdigest()[:8]


def record_path(results_dir: Path, suite: str, case: str, method: str, profile: str,
                overrides: dict[str, Any] | None = None) -> Path:
    name = f"{_slug(method)}{hparam_tag(overrides or {})}__{profile}.json"
    return Path(results_dir) / _slug(suite) / _slug(case) / name


REL_TOL = 1e-9  # stored summaries vs. summaries recomputed from per-seed values (JSON keeps floats exactly)


def _close(a: float | None, b: float | None) -> bool:
    if a is None or b is None:
        return a is None and b is None
    return math.isclose(a, b, rel_tol=REL_TOL, abs_tol=1e-12)


def _nan_none(v: float) -> float | None:
    return None if v is None or not math.isfinite(v) else float(v)


def check_consistency(record: dict, source: str = "<record>") -> dict:
    """Raise :class:`RecordError` naming the file and field where the record contradicts itself."""

    def fail(field: str, msg: str) -> None:
        raise RecordError(f"{source}: inconsistent record at {field}: {msg}")

    seeds = record["seeds"]
    if len(set(seeds)) != len(seeds):
        fail("seeds", f"repeated seeds {seeds}")
    diverged = record["status"] == "diverged"
    if diverged != (record.get("diverged") is not None):
        fail("diverged", f"status {record['status']!r} but diverged is {record.get('diverged')!r}")
    n = len(seeds) - (1 if diverged else 0)  # a diverged run records the seed it stopped in, without values
    for name, m in record["metrics"].items():
        where = f"metrics/{name}"
        if len(m["per_seed"]) != n:
            fail(f"{where}/per_seed", f"{len(m['per_seed'])} values for {n} completed seed(s) {seeds[:n]}")
        values = [v for v in m["per_seed"] if v is not None]
        s = summarize(values) if values else {"mean": None, "std": None, "sem": None}
        for key in ("mean", "std", "sem"):
            if key in m and not _close(m[key], _nan_none(s[key])):
                fail(f"{where}/{key}", f"{m[key]!r} but the per-seed values {m['per_seed']} give {_nan_none(s[key])!r}")
    primary = record["primary_metric"]
    if record["status"] == "ok" and primary not in record["metrics"]:
        fail("primary_metric", f"{primary!r} is not among the metrics {sorted(record['metrics'])}")
    pm = record["metrics"].get(primary, {})
    if "higher_is_better" in pm and pm["higher_is_better"] != record["higher_is_better"]:
        fail("higher_is_better", f"{record['higher_is_better']} but metrics/{primary}/higher_is_better is "
             f"{pm['higher_is_better']}")
    for dom, d in (record.get("per_domain") or {}).items():
        vals = d.get("per_seed", [])
        if len(vals) > n or (vals and not _close(d.get("mean"), float(sum(vals) / len(vals)))):
            fail(f"per_domain/{dom}", f"mean {d.get('mean')!r} over {len(vals)} values for {n} seed(s)")
    restamp = record.get("restamp")
    if restamp is not None and restamp["code"] != record.get("code"):
        fail("restamp/code", f"{restamp['code']} but the record's code is {record.get('code')}: the code digests "
             "changed after the re-stamp")
    t = record["timing"]
    step, ref, norm = t.get("step_time_median_s"), t.get("reference_time_s"), t.get("normalised_step_time")
    if norm is not None and not (step and ref and _close(norm, step / ref)):
        fail("timing/normalised_step_time", f"{norm!r} but step_time_median_s / reference_time_s is "
             f"{step!r} / {ref!r}")
    return record


def evidence_path(path: Path) -> Path:
    return Path(path).with_suffix(".npz")


def _npz_bytes(arrays: dict[str, np.ndarray]) -> bytes:
    """A deterministic npz (fixed member dates, sorted keys): the same arrays give the same bytes and sha256."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for key in sorted(arrays):
            arr = np.asarray(arrays[key])
            if arr.dtype.hasobject:
                raise RecordError(f"evidence array {key!r} has dtype object; only numeric arrays are stored")
            info = zipfile.ZipInfo(f"{key}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            with zf.open(info, "w") as fh:
                np.lib.format.write_array(fh, np.ascontiguousarray(arr), allow_pickle=False)
    return buf.getvalue()


def seed_arrays(per_seed: dict[int, dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """Flatten ``{seed: {name: array}}`` into the npz's ``seed<k>/<name>`` keys."""
    return {f"seed{seed}/{name}": arr for seed, arrays in per_seed.items() for name, arr in arrays.items()}


def load_evidence(path: Path, record: dict | None = None) -> dict[int, dict[str, np.ndarray]]:
    """``{seed: {name: array}}`` from a record's npz (never unpickled); checks the sha256 the record stores."""
    path = Path(path)
    npz = evidence_path(path) if path.suffix == ".json" else path
    if not npz.is_file():
        raise RecordError(f"{npz}: evidence file missing (the record lists it)")
    blob = npz.read_bytes()
    expected = (record or {}).get("evidence", {}) or {}
    if expected.get("sha256") and hashlib.sha256(blob).hexdigest() != expected["sha256"]:
        raise RecordError(f"{npz}: sha256 differs from the record's evidence/sha256 (edited or from another run)")
    out: dict[int, dict[str, np.ndarray]] = {}
    try:
        with np.load(io.BytesIO(blob), allow_pickle=False) as data:
            for key in data.files:
                seed, _, name = key.partition("/")
                if not seed.startswith("seed") or not name:
                    raise RecordError(f"{npz}: unexpected member {key!r} (expected seed<k>/<name>)")
                out.setdefault(int(seed[4:]), {})[name] = data[key]
    except (ValueError, OSError, zipfile.BadZipFile) as err:
        raise RecordError(f"{npz}: unreadable evidence ({err})") from None
    return out


def _write_atomic(path: Path, data: bytes) -> Path:
    """Write ``data`` to a temp file beside ``path`` (fsync); return the temp path for the caller to rename."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return Path(tmp)


def _record_bytes(record: dict, path: Path) -> bytes:
    """The record as written: validated and consistent, else a RecordError naming the file."""
    validate(record, str(path))
    check_consistency(record, str(path))
    return (json.dumps(record, indent=2, sort_keys=True, allow_nan=False) + "\n").encode("utf-8")


def write_record(record: dict, path: Path, arrays: dict[str, np.ndarray] | None = None) -> Path:
    """Validate, then write atomically (temp files + fsync + rename); ``arrays`` become ``<record>.npz``.

    Sets ``record["evidence"]`` (file name, sha256 and member count, or None) in place before writing.

    ``arrays`` uses the npz's flat ``seed<k>/<name>`` keys (:func:`seed_arrays`). Without arrays an old
    evidence file beside the record is removed, so a record never points at another run's evidence.
    """
    path = Path(path)
    npz = evidence_path(path)
    blob = _npz_bytes(arrays) if arrays else None
    record["evidence"] = None if blob is None else {
        "file": npz.name, "sha256": hashlib.sha256(blob).hexdigest(), "arrays": len(arrays or {})}
    text = _record_bytes(record, path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temps: list[Path] = []
    try:
        if blob is not None:
            temps.append(_write_atomic(npz, blob))
        temps.append(_write_atomic(path, text))
        if blob is not None:
            os.replace(temps[0], npz)
        os.replace(temps[-1], path)
    except BaseException:  # includes KeyboardInterrupt: never leave a temp file behind
        for tmp in temps:
            tmp.unlink(missing_ok=True)
        raise
    if blob is None:
        npz.unlink(missing_ok=True)
    return path


def rewrite_record(record: dict, path: Path) -> Path:
    """Rewrite a record's JSON in place (atomically), its evidence file untouched: for fields that describe the
    record rather than its run (a re-stamp). The evidence must still be the one the record's sha256 names."""
    path = Path(path)
    text = _record_bytes(record, path)
    if record.get("evidence"):
        load_evidence(path, record)  # a RecordError when the npz is missing or not the recorded one
    os.replace(_write_atomic(path, text), path)
    return path


def lock_path(path: Path) -> Path:
    path = Path(path)
    return path.with_name(f".{path.name}.lock")


@contextmanager
def record_lock(path: Path) -> Iterator[None]:
    """Hold the lock of one record path for a whole run; a second holder fails at once (RecordLocked)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(lock_path(path)), timeout=0)
    try:
        lock.acquire()
    except Timeout:
        raise RecordLocked(
            f"{path}: another run is writing this record right now (lock {lock_path(path).name} is held); "
            "wait for it to finish, or pass a different --results-dir"
        ) from None
    try:
        yield
    finally:
        # Removed while still held, so no lock file is left beside the record. A run that opened the old file in
        # the microseconds before the unlink could lock it beside a newcomer's new file; with timeout=0 nothing
        # waits on a lock, so that window is the whole exposure.
        lock_path(path).unlink(missing_ok=True)
        lock.release()


def unrecordable(value: Any) -> str | None:
    """Why ``value`` cannot be stored in a record's JSON as it is (None: it can). The record is written after
    training, so runs ask this of what they will store (hparams) before training, not when the JSON is written."""
    try:
        json.dumps(value, allow_nan=False)
    except ValueError:
        return "holds a number that is not finite (a record is JSON, which has no inf or nan)"
    except (TypeError, RecursionError) as err:
        return f"is not something a record's JSON can store ({err})"
    return None


def check_writable(results_dir: Path) -> Path:
    """Create ``results_dir`` if needed and prove it writable, before any training; a clear error if not."""
    results_dir = Path(results_dir)
    try:
        if results_dir.exists() and not results_dir.is_dir():
            raise NotADirectoryError("it exists and is not a folder")
        results_dir.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".write-check-", dir=results_dir)
        os.close(fd)
        os.unlink(probe)
    except OSError as err:
        reason = err.strerror or str(err)
        raise RecordError(f"results folder {results_dir} is not writable ({reason}); pass --results-dir=PATH "
                          "to a folder you can write") from None
    return results_dir


def load_record(path: Path) -> dict:
    try:
        record = json.loads(Path(path).read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise RecordError(f"{path}: not valid JSON ({err})") from None
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
        raise RecordError(f"{path}: no such record file") from None
    return check_consistency(validate(record, str(path)), str(path))


def record_files(results_dir: Path) -> list[Path]:
    """The record files under ``results_dir``, sorted (dot files such as the manifest are not records)."""
    return [p for p in sorted(Path(results_dir).rglob("*.json")) if not p.name.startswith(".")]


def iter_records(results_dir: Path) -> list[tuple[Path, dict]]:
    """All records under ``results_dir``, validated; a bad file is a RecordError naming it."""
    return [(p, load_record(p)) for p in record_files(results_dir)]


def higher_is_better(record: dict, metric: str) -> bool:
    """A metric's direction as the record states it (per metric; the record-level flag for the primary metric)."""
    m = record["metrics"].get(metric) or record.get("case_metrics", {}).get(metric) or {}
    if "higher_is_better" in m:
        return bool(m["higher_is_better"])
    if metric == record["primary_metric"]:
        return bool(record["higher_is_better"])
    raise RecordError(f"record {record['suite']}/{record['case']}/{record['method']} states no direction for "
                      f"{metric!r}")


def paired_values(rec: dict, base: dict, metric: str) -> tuple[list[float], list[float]]:
    """Seed-matched values of ``metric`` in two records (seeds either lacks are dropped)."""
    a = dict(zip(rec["seeds"], rec["metrics"].get(metric, {}).get("per_seed", [])))
    b = dict(zip(base["seeds"], base["metrics"].get(metric, {}).get("per_seed", [])))
    seeds = [s for s in a if s in b and a[s] is not None and b[s] is not None]
    return [a[s] for s in seeds], [b[s] for s in seeds]


def paired_verdict(rec: dict, base: dict, metric: str, test: str = "t",
                   alpha: float = 0.05) -> PairedComparison | None:
    """Two-sided paired test of ``rec`` against ``base`` on seed-matched values; None below 2 pairs.

    The metric's direction comes from the record (:func:`higher_is_better`). ``test="t"`` is the
    leaderboard's per-case test (see :mod:`harness.reporting.leaderboard`); ``"permutation"`` the exact sign-flip test.
    The p-value is unadjusted: correct it over a table with :func:`harness.metrics.holm`.
    """
    a, b = paired_values(rec, base, metric)
    if len(a) < 2:
        return None
    return paired_test(a, b, higher_is_better=higher_is_better(rec, metric), test=test, alpha=alpha)


FRAME_KEYS = ["suite", "profile", "case", "method", "hparams", "metric", "primary", "higher_is_better", "status"]


def to_frame(source: Path | str | list[dict], per_seed: bool = True):
    """Records as a tidy pandas DataFrame, for your own analysis of a results folder.

    ``source`` is a results folder (every record under it, validated) or a list of record dicts. With
    ``per_seed`` (the default) there is one row per record x metric x seed, column ``seed`` and ``value``;
    otherwise one row per record x metric with ``mean``, ``std`` (sample, ddof=1), ``sem`` and ``n`` (seeds).
    Both carry :data:`FRAME_KEYS` (``hparams`` is the overrides as JSON, "" for the method's defaults; ``primary``
    marks the case's primary metric), the median step time ``step_ms`` and, for a folder, the record's ``path``.
    A diverged record has its rows with NaN values. Whether a record is current with the code here is
    :func:`harness.records.currency.collect`'s question, not this frame's.

    >>> df = to_frame("results")                                   # doctest: +SKIP
    >>> df[df.primary].groupby(["suite", "method"]).value.mean()   # doctest: +SKIP
    """
    import pandas as pd

    if isinstance(source, (str, Path)):
        pairs = [(p.as_posix(), r) for p, r in iter_records(Path(source))]
    else:
        pairs = [(None, r) for r in source]
    rows = []
    for path, rec in pairs:
        step = rec.get("timing", {}).get("step_time_median_s")
        base = {"suite": rec["suite"], "profile": rec["profile"], "case": rec["case"], "method": rec["method"],
                "hparams": json.dumps(rec["hparam_overrides"], sort_keys=True, default=str)
                if rec["hparam_overrides"] else "",
                "status": rec["status"], "step_ms": step * 1e3 if step else math.nan}
        if path is not None:
            base["path"] = path
        for name, m in sorted(rec["metrics"].items()):
            row = {**base, "metric": name, "primary": name == rec["primary_metric"],
                   "higher_is_better": higher_is_better(rec, name)}
            values = [math.nan if v is None else float(v) for v in m.get("per_seed", [])]
            if per_seed:
                for seed, v in zip(rec["seeds"], values or [math.nan] * len(rec["seeds"])):
                    rows.append({**row, "seed": seed, "value": v})
            else:
                rows.append({**row, "mean": math.nan if m.get("mean") is None else m["mean"],
                             "std": math.nan if m.get("std") is None else m["std"],
                             "sem": math.nan if m.get("sem") is None else m["sem"],
                             "n": sum(not math.isnan(v) for v in values)})
    value_cols = ["seed", "value"] if per_seed else ["mean", "std", "sem", "n"]
    columns = FRAME_KEYS + value_cols + ["step_ms"] + (["path"] if isinstance(source, (str, Path)) else [])
    return pd.DataFrame(rows, columns=columns)
