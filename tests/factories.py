"""Builders shared by the harness's tests: consistent records made by the current code, and the rendered pages.

A plain module (not a test module), so importing it registers nothing and collects nothing.
"""

from __future__ import annotations

import json
import types
from collections.abc import Callable
from pathlib import Path

from harness import records
from harness.core.registry import get_method_class
from harness.cpu_numerics import PINS
from harness.metrics.stats import summarize
from harness.protocols.pretrain import encoder_identity
from harness.records.provenance import code_versions
from harness.reporting import site
from harness.suites import get_suite


def metric(per_seed: list[float], higher_is_better: bool = True) -> dict:
    """A metric entry whose summaries agree with its per-seed values (as the runner writes them)."""
    s = summarize(per_seed)
    finite = {k: (None if s[k] != s[k] else s[k]) for k in ("mean", "std", "sem")}  # NaN (one seed) -> None
    return {"per_seed": per_seed, **finite, "higher_is_better": higher_is_better}


def make_record(case: str, method: str, per_seed: list[float], profile: str = "standard", suite: str = "losses",
                primary: str = "test_acc", **extra) -> dict:
    """A consistent record made by the current code (fingerprint and code versions), for leaderboard tests."""
    spec = next(s for s in get_suite(suite).case_specs(profile) if s.case == case)
    rec = {
        "schema_version": 1, "suite": suite, "case": case, "method": method, "family": "loss",
        "profile": profile, "status": "ok", "diverged": None, "seeds": list(range(len(per_seed))),
        "primary_metric": primary, "higher_is_better": True,
        "metrics": {primary: metric(per_seed), "test_auroc": metric(per_seed)},
        "timing": {"step_time_median_s": 0.002, "step_time_iqr_s": 0.0001, "samples_per_s": 1000.0,
                   "peak_memory_bytes": 1, "memory_kind": "process_peak_rss"},
        "hparams": {}, "hparam_overrides": {}, "fingerprint": spec.fingerprint, "model_selection": "val",
        "environment": {"device": "cpu (test)", "torch": "x", "harness_version": "0", "git_commit": None,
                        "date": "2026-01-01T00:00:00+00:00", "cpu_numerics": {"capability": "AVX2", **PINS}},
        "code": code_versions(get_method_class(method), spec),
    }
    rec.update(extra)
    return rec


def write(results: Path, rec: dict) -> Path:
    return records.write_record(rec, records.record_path(results, rec["suite"], rec["case"], rec["method"],
                                                         rec["profile"], rec.get("hparam_overrides")))


def rendered(results_dir: Path) -> str:
    """Everything the site renders of the current records as one Markdown text: the summary, every suite section in
    full (per-case tables, aggregate, claims, findings), then the stale records."""
    return site.report_markdown(site.build(results_dir), results_dir, None)


def table(md: str, title: str) -> list[list[str]]:
    """The cells of the first table after a heading, header row first."""
    lines = md.split(title, 1)[1].splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("| "))
    block = []
    for line in lines[start:]:
        if not line.startswith("|"):
            break
        if "---" not in line:
            block.append([c.strip() for c in line.strip("|").split("|")])
    return block


def suite_records(tmp_path: Path) -> list[dict]:
    """The records a ``run_suite`` run wrote under ``tmp_path/results``."""
    return [json.loads(p.read_text()) for p in sorted((tmp_path / "results").rglob("*.json"))]


class FakeSSLSuite(types.ModuleType):
    """Stands in for ``harness.suites.ssl``: ``cached_encoders(profile=...)`` lists the given stored encoders."""

    def __init__(self, entries: list) -> None:
        super().__init__("harness.suites.ssl")
        self.entries, self.asked = entries, []

    def cached_encoders(self, dataset=None, *, profile=None):
        self.asked.append(profile)
        return self.entries


def stored_encoder(weights: Path, name: str, load: Callable | None = None, **info) -> types.SimpleNamespace:
    """An entry as ``harness.suites.ssl.cached_encoders`` lists it: ``name`` is "<method>/<case>/<profile>/seed<k>",
    ``weights`` stands for its weights file (written with other bytes on each call)."""
    method, case, profile, seed = name.split("/")
    info = {"method": method, "case": case, "profile": profile, "seed": int(seed.removeprefix("seed")),
            "in_chans": 3, **info}
    weights.write_bytes(name.encode() + weights.name.encode())
    return types.SimpleNamespace(name=name, path=weights, info=info, identity=encoder_identity(info), load=load)
