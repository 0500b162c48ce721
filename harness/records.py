"""Run records: one JSON file per (suite case, method, profile), aggregating seeds.

Records are plain JSON, validated against :data:`RECORD_SCHEMA` (JSON Schema,
draft 2020-12) whenever they are loaded, and written atomically: a temp file in
the same folder, fsync, then ``os.replace``. An interrupted run therefore
leaves either the old record or the new one, never half of one.

Layout: ``<results>/<suite>/<case>/<method>[-h<hparam hash>]__<profile>.json``.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
from pathlib import Path
from typing import Any

import jsonschema

from harness.errors import RecordError
from harness.metrics import PairedTTest, paired_ttest

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
        "method": {"type": "string", "minLength": 1},
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
        "kernels": {"type": "object", "required": ["activity", "steps", "top"]},  # harness.profiling
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
        "environment": {
            "type": "object",
            "required": ["device", "torch", "harness_version", "git_commit", "date"],
            "properties": {
                "device": {"type": "string"},
                "torch": {"type": "string"},
                "cuda": {"type": ["string", "null"]},
                "cuda_driver": {"type": ["string", "null"]},
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


def write_record(record: dict, path: Path) -> Path:
    """Validate, then write atomically (temp file + fsync + rename)."""
    validate(record, str(path))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(record, indent=2, sort_keys=True, allow_nan=False) + "\n"
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:  # includes KeyboardInterrupt: never leave the temp file behind
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def load_record(path: Path) -> dict:
    try:
        record = json.loads(Path(path).read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise RecordError(f"{path}: not valid JSON ({err})") from None
    return validate(record, str(path))


def iter_records(results_dir: Path) -> list[tuple[Path, dict]]:
    """All records under ``results_dir``, validated; a bad file is a RecordError naming it."""
    return [(p, load_record(p)) for p in sorted(Path(results_dir).rglob("*.json")) if not p.name.startswith(".")]


def paired_verdict(rec: dict, base: dict, metric: str) -> PairedTTest | None:
    """Paired one-sided t-test of ``rec`` against ``base`` on seed-matched values; None below 2 pairs."""
    a = dict(zip(rec["seeds"], rec["metrics"][metric]["per_seed"]))
    b = dict(zip(base["seeds"], base["metrics"][metric]["per_seed"]))
    seeds = [s for s in a if s in b and a[s] is not None and b[s] is not None]
    if len(seeds) < 2:
        return None
    return paired_ttest([a[s] for s in seeds], [b[s] for s in seeds], higher_is_better=rec["higher_is_better"])
