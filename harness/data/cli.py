"""``python -m harness data list`` and ``python -m harness data fetch NAME [--dest DIR]``."""

from __future__ import annotations

import argparse
import sys

from harness.data.fetch import fetch
from harness.data.registry import DatasetInfo, dataset_info
from harness.errors import HarnessError


def format_table(rows: list[DatasetInfo]) -> str:
    from tabulate import tabulate

    table = [
        [
            r.name,
            r.tier,
            "found" if r.found else "missing",
            r.path,
            "" if r.count is None else r.count,
            "SYNTHETIC" if r.synthetic else "",
            r.description,
        ]
        for r in rows
    ]
    return tabulate(table, headers=["name", "tier", "status", "path", "count", "synthetic", "description"])


def main(argv: list[str] | None = None) -> int:
    """Entry point; ``argv`` is what follows ``data`` (a leading ``"data"`` is accepted too)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["data"]:
        argv = argv[1:]
    parser = argparse.ArgumentParser(prog="harness data", description="List and fetch datasets.")
    sub = parser.add_subparsers(dest="command", required=True)
    ls = sub.add_parser("list", help="datasets, where they are looked for and whether they are present")
    ls.add_argument("--no-count", action="store_true", help="only test existence; don't count files")
    fe = sub.add_parser("fetch", help="download, verify and unpack a dataset")
    fe.add_argument("name")
    fe.add_argument("--dest", help="folder to unpack into (default: $HARNESS_DATA)")
    fe.add_argument("--allow-unverified", action="store_true", help="accept files that have no published checksum")
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:  # argparse exits on --help and on errors; return its code instead
        return int(e.code or 0)
    try:
        if args.command == "list":
            print(format_table(dataset_info(check=not args.no_count)))
            return 0
        fetch(args.name, args.dest, allow_unverified=args.allow_unverified, log=lambda m: print(m, file=sys.stderr))
        return 0
    except HarnessError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
