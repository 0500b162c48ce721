"""The regression gate CI runs on every change: ``python -m harness gate --base auto``.

1. **What changed**: ``git diff --name-only <base>`` (against the working
   tree) plus untracked files. ``--base auto`` is the merge-base of HEAD with
   ``origin/main`` when that ref exists and HEAD is not on it, else ``HEAD~1``
   (a clean clone of main checks its last commit), else there is nothing
   to compare (a fresh single-commit clone passes at once).
2. **What to re-run**, from the files the code fingerprint covers
   (:mod:`harness.records.provenance`: each method, protocol and suite module with the
   files it imports):
   - a file only a method runs (its own file, ``baselines/dg/sam.py`` for
     udim, ...) and the suite's baseline does not: that method, on every suite
     where it has committed smoke records;
   - a file the suite's baseline run covers (the suite module, its protocol,
     ``harness/core/method.py``, ... and what they import): the baseline method of
     each affected suite. A change there moves every method alike, and the
     baseline is the cheapest witness; pass ``--all-methods`` to re-run every
     method with committed smoke records.
   Changes elsewhere (the data layer, the runner, the CLI) are the unit tests'
   job.
3. **Compare** each re-run (same seeds, ``smoke`` profile, into a temporary
   folder; ``results/`` is never touched) with its committed smoke record. A
   committed record whose task fingerprint differs from the current case
   definition (:mod:`harness.records.currency`) is no reference: it is
   reported as not compared (regenerate it); a record of a case that is gone
   fails (delete it); one stale by code digests only is compared, which is
   the point of the gate:
   - the primary metric, on seed-paired differences d_i = new_i - old_i
     oriented by the metric's direction: a regression when mean(d) is below
     ``-tolerance`` (default 0.05). The message names the metric, the old and
     new means, the tolerance and the two-sided paired test's p (with 2 or 3
     seeds no test can reject; the tolerance decides, the p is context);
   - the step time: a regression when both the machine-normalised ratio
     (step time / the reference workload's time in the same process, new over
     old) and the raw ratio exceed ``time_tolerance`` (default 2.0). The
     normalised ratio alone is too noisy: the reference is a few milliseconds
     of matmul and convolution timed once per case, and on this shared 2-core
     machine it varied 4x between the run that made the committed smoke
     records and a gate run minutes later, while the step times agreed within
     20%. Requiring both ratios keeps a real slowdown (both move) and drops
     a noisy reference (only the normalised ratio moves) or a slower machine
     (only the raw ratio moves);
   - a run that diverges where the committed one did not;
   - **all the method's cases together** (:func:`aggregate`): per case the
     mean seed-paired difference d_c (oriented so that negative is worse),
     then a one-sided exact sign-flip test over cases of "mean d_c < 0"
     (cases are the independent units; seeds are paired within a case). A
     regression when p < ``AGGREGATE_ALPHA`` (0.05) and mean d_c is worse than
     ``AGGREGATE_MIN_EFFECT`` (0.002, a fifth of a point). This catches a
     method slightly worse everywhere that the per-case tolerance lets
     through: 0.4 points worse on all 9 cases gives p = 1/512. With fewer than
     5 cases no sign-flip test can reach p < 0.05 (the smallest p is 2^-n), so
     the per-case tolerance alone decides there, and the message says so. On
     the same machine an unchanged method reproduces every case exactly
     (d_c = 0, p = 1), so the test does not fire on noise.

On the same machine, CPU smoke runs with the same seeds are deterministic, so
an unchanged method reproduces its committed record exactly.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from harness.checks import verify
from harness.core.digest import REPO, import_closure
from harness.core.registry import get_method_class, method_entries
from harness.errors import DataMissing, HarnessError, Unsupported
from harness.metrics.stats import paired_test, sign_flip_p
from harness.records import currency, higher_is_better, hparam_tag, iter_records, paired_values
from harness.records.git import changed_files, resolve_base
from harness.records.provenance import method_files, protocol_files
from harness.suites import all_suites

PROFILE = "smoke"
TOLERANCE = 0.05
TIME_TOLERANCE = 2.0
AGGREGATE_ALPHA = 0.05
AGGREGATE_MIN_EFFECT = 0.002


@dataclass(frozen=True)
class Target:
    suite: str
    method: str
    reason: str


def smoke_records(results_dir: Path) -> dict[tuple[str, str], list[tuple[Path, dict]]]:
    """Committed smoke records with default hparams, by (suite, method)."""
    found: dict[tuple[str, str], list[tuple[Path, dict]]] = {}
    for path, rec in iter_records(results_dir):
        if rec["profile"] == PROFILE and not rec["hparam_overrides"]:
            found.setdefault((rec["suite"], rec["method"]), []).append((path, rec))
    return found


def targets(changed: list[str], committed: dict[tuple[str, str], list], all_methods: bool = False,
            repo: Path = REPO) -> list[Target]:
    """The (suite, method) pairs a change affects (see the module docstring)."""
    paths = {(repo / c).resolve(): c for c in changed}

    def hit(files) -> str | None:
        found = sorted(paths[f.resolve()] for f in files if f.resolve() in paths)
        return found[0] if found else None

    closures: dict[str, frozenset[Path]] = {}

    def closure(method: str) -> frozenset[Path]:
        if method not in closures:
            try:
                closures[method] = frozenset(method_files(get_method_class(method)))
            except HarnessError:  # a method that no longer imports: its own file is all we know
                closures[method] = frozenset()
        return closures[method]

    out: dict[tuple[str, str], str] = {}
    suites = {suite.NAME: suite for suite in all_suites()}
    for suite in suites.values():
        shared = set(import_closure([Path(suite.__file__)])) | set(protocol_files(suite.PROTOCOL))
        shared |= closure(suite.BASELINE)
        why = hit(shared)
        for s, method in committed:  # a suite without committed smoke records (user data only) has nothing to re-run
            if s != suite.NAME:
                continue
            own = hit(closure(method) - shared)  # code only this method (and not the baseline) runs
            if own is not None:
                out.setdefault((s, method), f"{own} changed")
            elif why is not None and (all_methods or method == suite.BASELINE):
                out.setdefault((s, method), f"{why} changed (shared by every method of the suite)")
    for entry in method_entries():
        if any(method == entry.name for _, method in committed):
            continue
        own = hit(f for f in closure(entry.name) if f.resolve().is_relative_to((repo / "baselines").resolve()))
        if own is not None:  # "": no committed smoke record anywhere (reported, not compared)
            out.setdefault(("", entry.name), f"{own} changed")
    return [Target(s, m, why) for (s, m), why in sorted(out.items())]


def compare(old: dict, new: dict, tolerance: float = TOLERANCE, time_tolerance: float = TIME_TOLERANCE) -> list[str]:
    """Regressions of ``new`` against the committed ``old`` record (empty when it passes)."""
    where = f"{old['suite']}/{old['case']} {old['method']}"
    if new["status"] != "ok":
        if old["status"] == "ok":
            return [f"{where}: diverged at step {new['diverged']['step']} (seed {new['diverged']['seed']}); the "
                    "committed smoke record did not"]
        return []
    failures = []
    metric = old["primary_metric"]
    up = higher_is_better(old, metric)
    a, b = paired_values(new, old, metric)
    if a:
        d = np.asarray(a) - np.asarray(b)
        mean = float(d.mean()) * (1 if up else -1)
        if mean < -tolerance:
            test = paired_test(a, b, higher_is_better=up) if len(a) >= 2 else None
            p = f", two-sided paired test p = {test.p:.3f}" if test is not None else ""
            failures.append(
                f"{where}: {metric} regressed: new {float(np.mean(a)):.4f} vs committed {float(np.mean(b)):.4f} "
                f"(seed-paired Δ {float(d.mean()):+.4f} over {len(a)} seed(s){p}; tolerance {tolerance:.4f}, "
                f"{'higher' if up else 'lower'} is better)")
    t_old, t_new = old["timing"].get("normalised_step_time"), new["timing"].get("normalised_step_time")
    raw_old, raw_new = old["timing"].get("step_time_median_s"), new["timing"].get("step_time_median_s")
    if t_old and t_new and raw_old and raw_new and min(t_new / t_old, raw_new / raw_old) > time_tolerance:
        failures.append(
            f"{where}: step time regressed: machine-normalised new {t_new:.3f} vs committed {t_old:.3f} (ratio "
            f"{t_new / t_old:.2f}), raw {raw_new * 1e3:.3f} ms vs {raw_old * 1e3:.3f} ms "
            f"(ratio {raw_new / raw_old:.2f}); both above the tolerance {time_tolerance:.2f}")
    return failures


def case_difference(old: dict, new: dict) -> float | None:
    """Mean seed-paired difference new - old of the primary metric, oriented so that negative is worse."""
    if new["status"] != "ok" or old["status"] != "ok":
        return None
    metric = old["primary_metric"]
    a, b = paired_values(new, old, metric)
    if not a:
        return None
    return float(np.mean(np.asarray(a) - np.asarray(b))) * (1 if higher_is_better(old, metric) else -1)


def aggregate(where: str, pairs: list[tuple[dict, dict]], alpha: float = AGGREGATE_ALPHA,
              min_effect: float = AGGREGATE_MIN_EFFECT, say: Callable[[str], None] = print) -> str | None:
    """The across-cases regression test of one method (see the module docstring); a failure message or None."""
    diffs = [d for d in (case_difference(old, new) for old, new in pairs) if d is not None]
    if len(diffs) < 2:
        return None
    d = np.asarray(diffs)
    mean = float(d.mean())
    p = float(sign_flip_p(d, alternative="less", n_resamples=20000))
    worse = int((d < 0).sum())
    summary = (f"{where}: primary metric across {len(d)} case(s) together: mean per-case Δ {mean:+.4f} "
               f"({worse} of {len(d)} worse), one-sided sign-flip test over cases p = {p:.4f}")
    if len(d) < 5:
        summary += f" (with {len(d)} cases the smallest possible p is {0.5 ** len(d):.3f}: per-case tolerance only)"
    if p < alpha and mean < -min_effect:
        return (f"{summary} < {alpha:g} and the mean is worse than {min_effect:g}: a regression across cases, "
                "even where each case alone is within the tolerance")
    say(f"  {summary}")
    return None


def check_target(target: Target, records: list[tuple[Path, dict]], device: torch.device,
                 tolerance: float = TOLERANCE, time_tolerance: float = TIME_TOLERANCE,
                 say: Callable[[str], None] = print, alpha: float = AGGREGATE_ALPHA,
                 min_effect: float = AGGREGATE_MIN_EFFECT) -> list[str]:
    """Re-run a target's committed smoke records and compare, case by case and across cases; the failures."""
    failures = []
    pairs: list[tuple[dict, dict]] = []
    for _, old in records:
        verdict = currency.judge(old)
        if verdict.spec is not None and verdict.spec.fingerprint != old["fingerprint"]:
            # a record of another case definition is no reference: it needs regenerating, not comparing
            say(f"  not compared {old['case']}: the committed smoke record is stale ({verdict.reason}); regenerate "
                "it with `python -m harness regenerate --stale --profile smoke`")
            continue
        try:
            new = verify.rerun(old, device)
        except (DataMissing, Unsupported) as err:
            say(f"  skipped {old['case']}: {err}")
            continue
        except HarnessError as err:
            failures.append(f"{target.suite}/{old['case']} {target.method}: cannot re-run: {err}")
            continue
        found = compare(old, new, tolerance, time_tolerance)
        failures += found
        pairs.append((old, new))
        metric = old["primary_metric"]
        say(f"  {old['case']}: {metric} {old['metrics'][metric]['mean']} -> {new['metrics'][metric]['mean']}"
            + (" REGRESSION" if found else ""))
    across = aggregate(f"{target.suite} {target.method}", pairs, alpha, min_effect, say)
    return failures + ([across] if across else [])


def run_gate(base: str, results_dir: Path, device: torch.device, tolerance: float = TOLERANCE,
             time_tolerance: float = TIME_TOLERANCE, all_methods: bool = False, repo: Path = REPO,
             say: Callable[[str], None] = print) -> list[str]:
    """The whole gate: resolve the base, pick targets, re-run, compare; returns the failure messages."""
    commit = resolve_base(base, repo)
    if commit is None:
        say("gate: no base commit to compare with (not a git checkout, or a single commit): nothing to do")
        return []
    changed = changed_files(commit, repo)
    committed = smoke_records(results_dir)
    found = targets(changed, committed, all_methods, repo)
    say(f"gate: {len(changed)} file(s) changed since {commit[:12]}; {len(found)} (suite, method) target(s)")
    failures = []
    for target in found:
        records = committed.get((target.suite, target.method), [])
        if not records:
            say(f"- {target.suite or 'any suite'} / {target.method} ({target.reason}): no committed smoke records, "
                "not compared; "
                f"add them with `pytest suites/ --method={target.method} --profile=smoke --seeds=2 "
                "--results-dir=results`")
            continue
        say(f"- {target.suite} / {target.method} ({target.reason}): {len(records)} smoke case(s)")
        failures += check_target(target, records, device, tolerance, time_tolerance, say)
    return failures


# -- a project's own CI: new records against the project's committed ones ---------------------------------------

_FOLDER_HASH = re.compile(r"-[0-9a-f]{6}(?=-|$)")  # the path hash in a user folder's case name (folder_slug)


def case_key(record: dict) -> tuple[str, str, str, str, str]:
    """What pairs a new record with a committed one: suite, case, method, hparam variant and profile. A user
    folder's case name carries a hash of the folder's path, which differs between a laptop and a CI runner: it is
    left out, and :func:`same_case` asks for the same data content instead."""
    case = record["case"]
    if "path" in record.get("task", {}).get("params", {}):
        case = _FOLDER_HASH.sub("", case, count=1)
    return record["suite"], case, record["method"], hparam_tag(record["hparam_overrides"]), record["profile"]


def same_case(old: dict, new: dict) -> str | None:
    """Why two records of one key are not the same case (None: they are): the same task fingerprint, or for a
    user folder the same case parameters apart from its path and file listing, and the same data content."""
    if old["fingerprint"] == new["fingerprint"]:
        return None
    told, tnew = old.get("task", {}), new.get("task", {})
    local = ("path", "listing")  # where the folder is and its files' modification times: machine-dependent
    pold = {k: v for k, v in told.get("params", {}).items() if k not in local}
    pnew = {k: v for k, v in tnew.get("params", {}).items() if k not in local}
    if "path" not in told.get("params", {}) or pold != pnew or told.get("budget") != tnew.get("budget") \
            or told.get("suite_version") != tnew.get("suite_version"):
        return "the case definition differs (another harness version?): regenerate the committed record"
    if old.get("data_fingerprint") != new.get("data_fingerprint"):
        return "the folder's images differ from those the committed record was made from"
    return None


def compare_folders(committed: Path, new: Path, tolerance: float = TOLERANCE,
                    time_tolerance: float = TIME_TOLERANCE, methods: list[str] | None = None,
                    say: Callable[[str], None] = print, alpha: float = AGGREGATE_ALPHA,
                    min_effect: float = AGGREGATE_MIN_EFFECT) -> list[str]:
    """``gate --new NEW --results-dir COMMITTED``: every record under ``new`` (a run of the project's own methods,
    e.g. in its CI) against the committed record of the same case, method, hparams and profile under
    ``committed`` (the project's own records), with the gate's per-case and across-cases rules; the failures.

    Nothing is re-run and no git history is read: the project's CI runs the suites first (``pytest ...
    --results-dir NEW``). A new record without a committed one is listed (commit it to compare from then on); a
    committed one without a new one is listed as not run (a skipped case, e.g. its data is not on the runner)."""
    olds = {case_key(r): (p, r) for p, r in iter_records(committed)}
    news = {case_key(r): (p, r) for p, r in iter_records(new)}
    if methods:
        olds = {k: v for k, v in olds.items() if k[2] in methods}
        news = {k: v for k, v in news.items() if k[2] in methods}
    say(f"gate: {len(news)} new record(s) under {new} against {len(olds)} committed under {committed}")
    failures: list[str] = []
    if not news:  # a run that skipped every case must not pass as "no regression"
        failures.append(f"no records under {new}" + (f" of {', '.join(methods)}" if methods else "")
                        + ": did the suites run (a skipped case writes none)?")
    groups: dict[tuple[str, str], list[tuple[dict, dict]]] = {}
    for key in sorted(news):
        _, rec = news[key]
        where = f"{rec['suite']}/{rec['case']} {rec['method']} ({rec['profile']})"
        if key not in olds:
            say(f"  new {where}: no committed record to compare with (commit it to compare from now on)")
            continue
        _, old = olds[key]
        why = same_case(old, rec)
        if why is not None:
            say(f"  not compared {where}: {why}")
            continue
        found = compare(old, rec, tolerance, time_tolerance)
        failures += found
        groups.setdefault((rec["suite"], rec["method"]), []).append((old, rec))
        metric = old["primary_metric"]
        say(f"  {where}: {metric} {old['metrics'].get(metric, {}).get('mean')} -> "
            f"{rec['metrics'].get(metric, {}).get('mean')}" + (" REGRESSION" if found else ""))
    for key in sorted(set(olds) - set(news)):
        _, old = olds[key]
        say(f"  not run {old['suite']}/{old['case']} {old['method']} ({old['profile']}): no new record (skipped?)")
    for (suite, method), pairs in sorted(groups.items()):
        across = aggregate(f"{suite} {method}", pairs, alpha, min_effect, say)
        failures += [across] if across else []
    return failures
