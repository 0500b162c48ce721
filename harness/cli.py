"""``python -m harness``: list, leaderboard, data."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from tabulate import tabulate

from harness.errors import HarnessError

REPO = Path(__file__).resolve().parent.parent


def cmd_list(args: argparse.Namespace) -> int:
    from harness.registry import load_method_module, method_entries
    from harness.suites import all_suites

    for path in args.method_module or []:
        load_method_module(path)
    rows = [[e.name, e.family, ",".join(e.protocols), e.source] for e in method_entries(args.pattern)]
    print("Methods")
    print(tabulate(rows, headers=["name", "family", "protocols", "source"]))
    print("\nSuites")
    srows = []
    for s in all_suites():
        counts = "/".join(str(len(s.case_specs(p))) for p in ("smoke", "standard", "full"))
        srows.append([s.NAME, s.PROTOCOL, counts, s.BASELINE, s.DESCRIPTION])
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
    from harness import leaderboard

    results, out = Path(args.results_dir), Path(args.output)
    if args.check:
        if leaderboard.check(results, out):
            print(f"{out} is up to date with {results}/")
            return 0
        print(f"{out} is stale: run `python -m harness leaderboard` and commit the result", file=sys.stderr)
        return 1
    leaderboard.write(results, out)
    print(f"wrote {out}")
    return 0


def cmd_data(args: argparse.Namespace) -> int:
    from harness.data.cli import main as data_main

    return data_main(args.rest)


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
    p.add_argument("--check", action="store_true", help="exit 1 when leaderboard.md is stale")
    p.set_defaults(func=cmd_leaderboard)
    p = sub.add_parser("data", help="dataset listing and download (see `data --help`)", add_help=False)
    p.add_argument("rest", nargs=argparse.REMAINDER)
    p.set_defaults(func=cmd_data)
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
