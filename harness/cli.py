"""``python -m harness``: list, leaderboard, report, history, power, validate, regenerate, gate, verify, tune, sweep,
data, launch.

Each subcommand imports the package it runs when it runs, so ``harness list`` and ``--help`` load no torch model
code, plotting or re-execution machinery they do not use (lm-evaluation-harness's lazy registries, for the same
reason). These are the only imports inside functions that name harness modules.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from tabulate import tabulate

from harness.core.digest import REPO
from harness.errors import HarnessError, UsageError


def existing_results_dir(value: str) -> Path:
    """``--results-dir`` of a command that reads records: a missing folder is a usage error, never "0 records"."""
    path = Path(value)
    if not path.is_dir():
        raise UsageError(f"--results-dir {value}: no such folder (pass the folder that holds the records, e.g. "
                         "--results-dir results)")
    return path


def cmd_list(args: argparse.Namespace) -> int:
    from harness.core.registry import get_method_class, load_method_module, method_entries
    from harness.reporting.suites import description
    from harness.suites import all_suites

    for path in args.method_module or []:
        load_method_module(path)
    rows = [[e.name, e.family, ",".join(e.protocols), e.source] for e in method_entries(args.pattern)]
    for row in rows:  # a subclass inherits family and protocols, which the file scan cannot see: ask the class
        if row[1] == "?":
            cls = get_method_class(row[0])
            row[1], row[2] = cls.family, ",".join(sorted(cls.protocols))
    print("Methods")
    print(tabulate(rows, headers=["name", "family", "protocols", "source"]))
    print("\nSuites")
    srows = []
    for s in all_suites():
        counts = "/".join(str(len(s.case_specs(p))) for p in ("smoke", "standard", "full"))
        srows.append([s.NAME, s.PROTOCOL, counts, s.BASELINE, description(s)])
    print(tabulate(srows, headers=["suite", "protocol", "cases smoke/standard/full", "baseline", "description"]))
    print("\nDatasets")
    from harness.data import data_root, dataset_info
    from harness.data.paths import check_data_root

    root = data_root()
    if root is not None:
        try:
            check_data_root(root, from_env=True)
        except HarnessError as err:
            print(f"warning: {err}")

    drows = [[d.name, d.tier, "found" if d.found else "missing", d.path, "" if d.count is None else d.count,
              "SYNTHETIC" if d.synthetic else ""] for d in dataset_info()]
    print(tabulate(drows, headers=["dataset", "tier", "status", "path", "count", "synthetic"]))
    return 0


def cmd_leaderboard(args: argparse.Namespace) -> int:
    from harness.records import currency, iter_records
    from harness.reporting import site

    results, out = existing_results_dir(args.results_dir), Path(args.output)
    if not args.check and not iter_records(results):  # an empty board would silently replace a full one
        raise UsageError(f"no records under {results}: refusing to write an empty leaderboard over {out}; pass "
                         "--results-dir to the folder that holds the records")
    figures = Path(args.figures_dir) if args.figures_dir else None
    if args.check:
        stale = currency.collect(results).stale
        for path, why in stale:
            print(f"stale: {path}: {why}", file=sys.stderr)
        if stale:
            print(f"{len(stale)} stale record(s) are not ranked; re-run them with `python -m harness regenerate "
                  "--stale`", file=sys.stderr)
        problems = site.markdown_problems(results, out, figures) + site.informative_problems(results)
        if not problems:
            print(f"{out} is up to date with {results}/")
            return 0
        for problem in problems:
            print(problem, file=sys.stderr)
        if any(" measures nothing: " not in p for p in problems):
            print(f"{out} is stale: run `python -m harness leaderboard` and commit the result", file=sys.stderr)
        return 1
    if args.html:
        index = site.write_html(site.build(results), results, Path(args.html))
        print(f"wrote {index}")
        return 0
    site.write_markdown(results, out, figures)
    print(f"wrote {out} and its per-suite pages")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from harness.core.registry import load_method_module
    from harness.records.currency import load_recorded_methods
    from harness.reporting import site

    for path in args.method_module:  # the user's methods: their records' code versions can then be checked
        load_method_module(path)
    results = Path(args.results_dir)
    if not args.no_recorded_modules and results.is_dir():  # the --method-module files its records name
        load_recorded_methods(results, say=lambda line: print(line, file=sys.stderr))
    report = site.build(results, profiles=None, include_stale=True)
    if report.stale:
        print(f"note: {len(report.stale)} of the records are stale against the code here (other code, or a method "
              "not loaded here); they are included and listed at the end of the report", file=sys.stderr)
    if args.html:
        print(f"wrote {site.write_html(report, results, Path(args.html), title=f'Report: {results}')}")
    if args.output:
        out = Path(args.output)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(site.report_markdown(report, results, out.parent), encoding="utf-8")
        print(f"wrote {out}")
    elif not args.html:
        print(site.report_markdown(report, results, None), end="")
    return 0


def _report(outcomes, verb: str) -> int:
    """Failures one per line; successes counted by message."""
    from collections import Counter

    bad = [o for o in outcomes if not o.ok]
    for o in bad:
        print("FAIL " + (o.message if str(o.path) in o.message else f"{o.path}: {o.message}"), file=sys.stderr)
    for message, count in sorted(Counter(o.message for o in outcomes if o.ok).items()):
        print(f"ok   {count} record(s): {message}")
    print(f"{verb}: {len(outcomes) - len(bad)} ok, {len(bad)} failed")
    return 1 if bad else 0


def cmd_history(args: argparse.Namespace) -> int:
    from harness.reporting.history import history_figure, method_history, steps
    from harness.suites import suite_names

    shown = 0
    for suite in args.suite or suite_names():
        frame = method_history(suite, args.method, args.profile)
        if frame.empty:
            continue
        shown += 1
        print(f"\n{suite} / {args.method} / {args.profile}: one row per commit that changed these records")
        print(tabulate(frame, headers="keys", showindex=False, floatfmt=".4f"))
        for line in steps(frame):
            print(f"  {line}")
        if args.plot:
            path = Path(args.plot) / f"{suite}-{args.method}-{args.profile}.png"
            if history_figure({args.method: frame}, path, f"{suite} / {args.method} ({args.profile}) across commits"):
                print(f"  plot: {path}")
    if not shown:
        raise UsageError(f"no committed {args.profile} records of method {args.method!r} in the git history of "
                         "results/ (check the name with `python -m harness list`, or pass --profile smoke)")
    return 0


def cmd_power(args: argparse.Namespace) -> int:
    from harness.records import iter_records
    from harness.reporting.power import power_table
    from harness.suites import suite_names

    results = existing_results_dir(args.results_dir)
    records = [rec for _, rec in iter_records(results)]  # stale ones too: a pilot measures spread only
    for suite in args.suite or suite_names():
        frame, summary = power_table(suite, args.profile, records, args.effect, args.power)
        if frame.empty:
            continue
        print(f"\n{suite} ({args.profile}): sd of seed-paired differences with the baseline, per case")
        print(tabulate(frame, headers="keys", showindex=False, floatfmt=".4f"))
        for key, value in summary.items():
            print(f"  {key}: {value:.4g}" if isinstance(value, float) else f"  {key}: {value}")
    return 0


def cmd_validate(args: argparse.Namespace) -> int:
    from harness.checks import verify
    from harness.core.environment import resolve_device
    from harness.records import record_files

    results = existing_results_dir(args.results_dir)
    paths = [Path(p) for p in args.paths]
    files = paths or record_files(results)
    if not files:
        raise UsageError(f"no records under {results}: nothing to validate (pass the folder that holds them)")
    if args.recompute_sample is not None and (not args.recompute or args.recompute_sample < 1):
        raise UsageError(f"--recompute-sample {args.recompute_sample}: give --recompute too, and K >= 1 (records per "
                         "suite and profile)")
    code = _report(verify.check_files(results, paths), "schema, consistency and evidence")
    if args.recompute:
        chosen = paths
        if args.recompute_sample is not None:
            chosen = verify.recompute_sample(files, args.recompute_sample, args.sample_seed)
            print(f"validate: recomputing {len(chosen)} record(s), {args.recompute_sample} per suite and profile "
                  f"drawn with seed {args.sample_seed}")
        code = max(code, _report(verify.recompute_records(results, chosen), "recomputed from evidence"))
    if args.rerun:
        outcomes = verify.rerun_sample(results, args.rerun, resolve_device(args.device), args.sample_seed,
                                       paths=paths)
        code = max(code, _report(outcomes, f"re-ran {args.rerun} sampled record(s)"))
    return code


def cmd_regenerate(args: argparse.Namespace) -> int:
    from harness.checks import verify
    from harness.core.environment import resolve_device

    if not args.stale and not args.missing:
        raise UsageError("regenerate re-runs stale records (--stale, see `leaderboard --check`) and runs the declared "
                         "cases without a record (--missing): pass one or both")
    if args.missing and not args.stale:
        raise UsageError("--missing runs after the stale records are brought up to date: pass --stale too")
    outcomes = verify.regenerate(existing_results_dir(args.results_dir), resolve_device(args.device), args.suite,
                                 args.profile, args.method, args.dry_run, restamp_only=args.restamp_only,
                                 missing=args.missing, progress=lambda p: print(p.line(), file=sys.stderr, flush=True))
    code = _report(outcomes, "regenerate")
    if outcomes and not args.dry_run:
        print("now rebuild the leaderboard: python -m harness leaderboard")
    return code


def cmd_tune(args: argparse.Namespace) -> int:
    import ast

    from harness.core.environment import resolve_device
    from harness.core.registry import create_method
    from harness.running import tuning
    from harness.suites import case_specs, get_suite

    specs = {s.case: s for s in case_specs(get_suite(args.suite), args.profile)}
    if args.case not in specs:
        raise UsageError(f"tune: no case {args.case!r} in {args.suite} at {args.profile}; cases: {', '.join(specs)}")
    grid: dict[str, list] = {}
    for item in args.grid:
        key, _, values = item.partition("=")
        if not values or key in grid:
            raise UsageError(f"--grid {item!r}: give each key once, as key=v1,v2")
        grid[key] = [ast.literal_eval(v) for v in values.split(",")]
    seeds = list(range(tuning.TUNING_SEED_START, tuning.TUNING_SEED_START + args.seeds))
    result = tuning.tune(specs[args.case], create_method(args.method), grid, args.metric, seeds,
                         resolve_device(args.device))
    for row in result["rows"]:
        print(f"{row['setting']}: {args.metric} = {row['mean']:.4f}  (seeds {seeds})")
    print(f"chosen: {result['chosen']}  ->  {tuning.write_tuning(result)}")
    return 0


def cmd_sweep(args: argparse.Namespace) -> int:
    from harness.reporting import sweeps as sweep_report
    from harness.running import sweep
    from harness.suites import case_specs, get_suite

    root = Path(args.root)
    if not args.report_only:
        if not args.case or not args.method:
            raise UsageError("sweep: pass --case and --method (or --report to print the tables of finished sweeps)")
        specs = {s.case: s for s in case_specs(get_suite(args.suite), args.profile)}
        if args.case not in specs:
            raise UsageError(f"sweep: no case {args.case!r} in {args.suite} at {args.profile}; cases: "
                             f"{', '.join(specs)}")
        extra = {} if args.executor == "inline" else dict(
            gpus=args.gpus, cpus=args.cpus, timeout_min=args.timeout_min, partition=args.partition)
        done = sweep.sweep(specs[args.case], args.method, args.draws, args.trials, loo=args.loo, root=root,
                           device=args.device, workers=args.workers, executor=args.executor,
                           progress=lambda line: print(line, flush=True), **extra)
        print(f"sweep: {done['ran']} run(s) in {done['wall_s']:.0f}s, {done['failed']} failed -> {done['folder']}")
    text, path = sweep_report.write_report(root / args.suite / args.profile)
    print(text)
    print(f"written: {path}")
    return 0


def cmd_gate(args: argparse.Namespace) -> int:
    from harness.checks import gate
    from harness.core.environment import resolve_device
    from harness.core.registry import load_method_module

    for path in args.method_module:
        load_method_module(path)
    if args.new:  # a project's own CI: its new records against its committed ones, nothing re-run
        methods = [m.strip() for m in (args.method or "").split(",") if m.strip()] or None
        failures = gate.compare_folders(existing_results_dir(args.results_dir), existing_results_dir(args.new),
                                        args.tolerance, args.time_tolerance, methods)
    else:
        failures = gate.run_gate(args.base, existing_results_dir(args.results_dir), resolve_device(args.device),
                                 args.tolerance, args.time_tolerance, args.all_methods)
    for failure in failures:
        print(f"REGRESSION {failure}", file=sys.stderr)
    print("gate: " + (f"{len(failures)} regression(s)" if failures else "passed"))
    return 1 if failures else 0


def cmd_verify(args: argparse.Namespace) -> int:
    from harness.checks import verify
    from harness.core.environment import resolve_device

    results = existing_results_dir(args.results_dir)
    device = resolve_device(args.device)
    if args.changed == bool(args.paths):
        raise UsageError("verify: pass --changed (the records a change adds or modifies) or record paths, not both")
    with_changed = {"--base": args.base is not None, "--update-manifest": args.update_manifest,
                    "--reason": args.reason is not None, "--repo": args.repo is not None,
                    "--max-records": args.max_records is not None, "--max-seconds": args.max_seconds is not None}
    if args.paths and any(with_changed.values()):  # they would be silently ignored
        raise UsageError(f"verify: {', '.join(k for k, v in with_changed.items() if v)} only go with --changed; "
                         "named records are each re-executed in full, and the manifest is left as it is")
    if args.changed:
        outcomes = verify.verify_changed(
            results, device, Path(args.repo) if args.repo else None, args.base or "auto",
            verify.MAX_RECORDS if args.max_records is None else args.max_records,
            verify.MAX_SECONDS if args.max_seconds is None else args.max_seconds,
            update_manifest=args.update_manifest, reason=args.reason)
    else:
        outcomes = verify.verify_paths([Path(p) for p in args.paths], results, device)
    return _report(outcomes, "re-executed")


def cmd_data(args: argparse.Namespace) -> int:
    from harness.data.cli import main as data_main

    return data_main(args.rest)


def cmd_launch(args: argparse.Namespace) -> int:
    from harness.running.launch import main as launch_main

    return launch_main(args)


def _add_launch(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("launch", help="run suite cases as a SLURM (or local) job array through submitit",
                       description="One array task per (case, method); records land in --results-dir by path. "
                                   "Requeued tasks resume. Example: python -m harness launch --suite shift "
                                   "--method erm,sam --seeds 3 --profile standard --executor slurm --partition gpu")
    p.add_argument("--suite", required=True, help="comma-separated suite names")
    p.add_argument("--method", default=None, help="comma-separated method names (default: erm)")
    p.add_argument("--profile", default="smoke", choices=("smoke", "standard", "full"))
    p.add_argument("--seeds", type=int, default=None, help="number of seeds (default: 1 smoke, 3 standard, 5 full)")
    p.add_argument("--case", action="append", default=[], metavar="PATTERN",
                   help="only cases matching this fnmatch pattern (repeatable)")
    p.add_argument("--hparam", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--method-module", action="append", default=[], metavar="PATH")
    p.add_argument("--dataset", action="append", default=[], metavar="KIND:PATH")
    p.add_argument("--data-path", default="auto", choices=("auto", "memory", "stream"))
    p.add_argument("--device", default="auto", help="device inside each task (default auto: the task's GPU)")
    p.add_argument("--results-dir", default="results", help="shared folder the records go to (default results)")
    p.add_argument("--resume", action="store_true", help="skip (case, method) pairs whose record is done")
    p.add_argument("--strict-data", action="store_true", help="a missing dataset fails its task instead of skipping")
    p.add_argument("--compile", nargs="?", const="inductor", default=None, metavar="BACKEND")
    p.add_argument("--precision", default="fp32", choices=("fp32", "bf16", "fp16"))
    p.add_argument("--profile-kernels", nargs="?", const=10, default=0, type=int, metavar="K")
    p.add_argument("--executor", default="slurm", choices=("slurm", "local"))
    p.add_argument("--folder", default="launch-logs", help="submitit's folder for pickles and logs")
    p.add_argument("--partition", default=None, help="SLURM partition")
    p.add_argument("--gpus", type=int, default=None, help="GPUs per task (default: 1 on slurm, 0 local)")
    p.add_argument("--cpus", type=int, default=4, help="CPU cores per task (default 4)")
    p.add_argument("--mem-gb", type=float, default=None)
    p.add_argument("--timeout-min", type=int, default=120, help="per task; a task past it is requeued and resumes")
    p.add_argument("--array-parallelism", type=int, default=None, help="most tasks running at once (SLURM)")
    p.add_argument("--slurm-arg", action="append", default=[], metavar="KEY=VALUE",
                   help="extra sbatch parameter, e.g. account=myproj or constraint=a100 (repeatable)")
    p.add_argument("--no-wait", action="store_true", help="submit and return; records appear as tasks finish")
    p.set_defaults(func=cmd_launch)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m harness", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("list", help="methods, suites and datasets found")
    p.add_argument("pattern", nargs="?", default="*", help="fnmatch pattern for method names")
    p.add_argument("--method-module", action="append", default=[], help="also load methods from this file")
    p.set_defaults(func=cmd_list)
    p = sub.add_parser("leaderboard", help="rebuild leaderboard.md from results/")
    p.add_argument("--results-dir", default=str(REPO / "results"))
    p.add_argument("--output", default=str(REPO / "leaderboard.md"))
    p.add_argument("--figures-dir", default=None, help="where the PNGs go (default: docs/figures beside --output)")
    p.add_argument("--check", action="store_true",
                   help="exit 1 when leaderboard.md (or a linked figure) is out of date; lists stale records")
    p.add_argument("--html", default=None, metavar="DIR",
                   help="write the leaderboard as a static site (DIR/index.html, a page per suite) instead")
    p.set_defaults(func=cmd_leaderboard)
    p = sub.add_parser("report", help="the leaderboard's tables for your own results folder (any profile, stale "
                       "records and unregistered methods included and flagged)")
    p.add_argument("results_dir", metavar="RESULTS_DIR")
    p.add_argument("--html", default=None, metavar="DIR", help="also write a static site to DIR")
    p.add_argument("--output", default=None, metavar="FILE", help="write the Markdown report here (default: stdout "
                   "when --html is not given)")
    p.add_argument("--method-module", action="append", default=[], metavar="PATH",
                   help="load methods from this file, so records of them are checked against their code (records "
                        "made with --method-module name their file and it is loaded without this)")
    p.add_argument("--no-recorded-modules", action="store_true",
                   help="do not load the --method-module files the records name (their methods are then listed "
                        "as not registered here)")
    p.set_defaults(func=cmd_report)
    p = sub.add_parser("history", help="a method's primary metric and step time across the commits that changed "
                                       "its records, with the commit where it stepped (change-point test)")
    p.add_argument("method")
    p.add_argument("--suite", action="append", help="only this suite (repeatable; default: every suite)")
    p.add_argument("--profile", default="standard")
    p.add_argument("--plot", metavar="DIR", help="also draw each history into DIR")
    p.set_defaults(func=cmd_history)

    p = sub.add_parser("power", help="seeds per case the on-these-cases claim needs to find a one-point difference "
                                     "with 80%% power, from the seed spread of the records at hand (a pilot)")
    p.add_argument("--suite", action="append", help="only this suite (repeatable; default: every suite)")
    p.add_argument("--profile", default="standard")
    p.add_argument("--results-dir", default=str(REPO / "results"))
    p.add_argument("--effect", type=float, default=0.01)
    p.add_argument("--power", type=float, default=0.8)
    p.set_defaults(func=cmd_power)

    p = sub.add_parser("validate", help="check records: schema, consistency, evidence; optionally recompute or rerun")
    p.add_argument("paths", nargs="*", help="record files (default: every record under --results-dir); "
                   "--rerun draws from them")
    p.add_argument("--results-dir", default=str(REPO / "results"))
    p.add_argument("--recompute", action="store_true", help="recompute every seed's metrics from the evidence npz")
    p.add_argument("--rerun", type=int, default=0, metavar="N",
                   help="re-run N randomly drawn records and report agreement (exact on the same machine)")
    p.add_argument("--recompute-sample", type=int, default=None, metavar="K",
                   help="with --recompute: only K records of each suite and profile, drawn with --sample-seed "
                   "(CI: its commit; `verify --changed` recomputes every changed record)")
    p.add_argument("--sample-seed", type=int, default=0, help="seed of the --rerun and --recompute-sample draws")
    p.add_argument("--device", default="cpu")
    p.set_defaults(func=cmd_validate)
    p = sub.add_parser("regenerate", help="bring stale records up to date in place: re-stamp those whose seed 0 "
                       "re-executes bit-identically, re-run the others with their seeds, profile and hparams")
    p.add_argument("--stale", action="store_true", help="regenerate the records `leaderboard --check` lists as stale")
    p.add_argument("--missing", action="store_true",
                   help="then run every declared case x method without a record at the profile (default standard), "
                        "so the matrix is whole; --plan estimates it first")
    p.add_argument("--results-dir", default=str(REPO / "results"))
    p.add_argument("--suite", action="append", help="only this suite (repeatable)")
    p.add_argument("--profile", action="append", help="only this profile (repeatable)")
    p.add_argument("--method", action="append", help="only this method (repeatable)")
    p.add_argument("--dry-run", "--plan", action="store_true",
                   help="list what would be re-stamped or re-run, with the estimated time")
    p.add_argument("--restamp-only", action="store_true",
                   help="re-stamp the records whose seed 0 re-executes bit-identically; leave the others stale")
    p.add_argument("--device", default="cpu")
    p.set_defaults(func=cmd_regenerate)
    p = sub.add_parser("gate", help="CI regression gate: re-run changed methods at smoke, compare with results/; "
                       "or, with --new, compare a run's records with your own committed ones",
                       description="Here: re-run the methods a change touches at smoke and compare with results/. "
                                   "In your project's CI: run the suites into a folder, then `gate --new THAT "
                                   "--results-dir YOUR_COMMITTED_RECORDS` (docs/ci-example.yml).")
    p.add_argument("--base", default="auto", help="git ref to diff against (auto: merge-base with origin/main, "
                   "else HEAD~1, else nothing to do)")
    p.add_argument("--results-dir", default=str(REPO / "results"),
                   help="the committed records to compare with (default: this harness's results/)")
    p.add_argument("--new", default=None, metavar="DIR",
                   help="compare the records under DIR (a run you just made) with those under --results-dir, case "
                        "by case and across cases; nothing is re-run and git is not read")
    p.add_argument("--method", default=None, help="with --new: only these methods (comma-separated)")
    p.add_argument("--method-module", action="append", default=[], metavar="PATH",
                   help="load methods from this file first")
    p.add_argument("--tolerance", type=float, default=0.05, help="allowed drop of the primary metric (absolute)")
    p.add_argument("--time-tolerance", type=float, default=2.0,
                   help="allowed step-time ratio new / committed (fails when normalised and raw ratios both exceed it)")
    p.add_argument("--all-methods", action="store_true",
                   help="a suite or protocol change re-runs every method with smoke records, not only the baseline")
    p.add_argument("--device", default="cpu")
    p.set_defaults(func=cmd_gate)
    p = sub.add_parser("tune", help="choose a case setting on its selection metric, on tuning seeds never reported")
    p.add_argument("--suite", required=True)
    p.add_argument("--case", required=True)
    p.add_argument("--profile", default="standard")
    p.add_argument("--method", default="erm")
    p.add_argument("--grid", action="append", default=[], required=True, metavar="KEY=V1,V2",
                   help="a budget field or case parameter and its values (repeatable)")
    p.add_argument("--metric", default="val_acc", help="the selection metric (default: training-domain validation)")
    p.add_argument("--seeds", type=int, default=1, help="how many tuning seeds (from 1000)")
    p.add_argument("--device", default="cpu")
    p.set_defaults(func=cmd_tune)
    p = sub.add_parser("sweep", help="DomainBed's protocol: a random hparam sweep of a method on a case, and its "
                       "tables under three model-selection rules",
                       description="Draws N hparam sets from the method's search space (draw 0: the defaults), "
                                   "trains each T times (and, with --loo, once per training domain left out), "
                                   "stores each run under --root, skips finished runs, then prints and writes the "
                                   "tables (training-domain validation, leave-one-domain-out, oracle). Example: "
                                   "python -m harness sweep --suite shift --case pacs-sketch --method coral "
                                   "--draws 20 --trials 3 --loo --profile smoke")
    p.add_argument("--suite", default="shift")
    p.add_argument("--case", default=None)
    p.add_argument("--method", default=None)
    p.add_argument("--profile", default="smoke", choices=("smoke", "standard", "full"))
    p.add_argument("--draws", type=int, default=20, help="hparam draws (default 20, as DomainBed)")
    p.add_argument("--trials", type=int, default=3, help="trials (seeds) per draw (default 3, as DomainBed)")
    p.add_argument("--loo", action="store_true",
                   help="also train each draw once per training domain left out (k extra runs per draw and "
                        "trial), for leave-one-domain-out selection")
    p.add_argument("--root", default=str(REPO / "out" / "sweeps"), help="where runs and report.md go "
                   "(default out/sweeps; never results/)")
    p.add_argument("--report", dest="report_only", action="store_true",
                   help="run nothing: print and write the tables of the runs under --root/<suite>/<profile>")
    p.add_argument("--workers", type=int, default=1, help="local worker processes (default 1)")
    p.add_argument("--executor", default="inline", choices=("inline", "local", "slurm"),
                   help="inline (this machine, --workers processes) or a submitit job array")
    p.add_argument("--partition", default=None, help="SLURM partition (with --executor slurm)")
    p.add_argument("--gpus", type=int, default=0, help="GPUs per submitit task")
    p.add_argument("--cpus", type=int, default=1, help="CPU cores per submitit task")
    p.add_argument("--timeout-min", type=int, default=60, help="per submitit task")
    p.add_argument("--device", default="cpu")
    p.set_defaults(func=cmd_sweep)
    p = sub.add_parser("verify", help="CI: verify every record that differs from results/.verified.json: checks, "
                       "then seed 0 and a random seed re-executed bit for bit",
                       description="Checks each record's identity, seeds, labels and metrics, then re-runs seed 0 and "
                                   "a randomly drawn seed on CPU with its thread count and requires bit-identical "
                                   "metrics and consistent times (harness/checks/verify.py)")
    p.add_argument("paths", nargs="*", help="record files to verify (instead of --changed)")
    p.add_argument("--changed", action="store_true",
                   help="the records under --results-dir that differ from the manifest (results/.verified.json)")
    p.add_argument("--base", default=None, help="the commit whose manifest is trusted (default auto: merge-base "
                   "with origin/main, else HEAD~1): manifest entries added since are verified too")
    p.add_argument("--update-manifest", action="store_true",
                   help="after every check passed, rewrite the manifest (commit it with the records)")
    p.add_argument("--reason", default=None, help="why the deleted records were deleted (with --update-manifest)")
    p.add_argument("--results-dir", default=str(REPO / "results"))
    p.add_argument("--repo", default=None, help="the git checkout to diff (default: this harness's)")
    p.add_argument("--max-records", type=int, default=None,
                   help="re-execute at most this many records; more changed: a random sample (default 40)")
    p.add_argument("--max-seconds", type=float, default=None,
                   help="estimated re-execution budget in seconds (estimated per suite and profile; default 240)")
    p.add_argument("--device", default="cpu")
    p.set_defaults(func=cmd_verify)
    p = sub.add_parser("data", help="dataset listing and download (see `data --help`)", add_help=False)
    p.add_argument("rest", nargs=argparse.REMAINDER)
    p.set_defaults(func=cmd_data)
    _add_launch(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except HarnessError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
