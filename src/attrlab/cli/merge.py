"""The ``attrlab merge`` subcommand: combine result stores (e.g. the shards of a sweep)."""

from __future__ import annotations

import argparse
from pathlib import Path


def _store_path(p: str) -> Path:
    path = Path(p)
    return path / "results.sqlite" if path.is_dir() else path


def cmd_merge(args: argparse.Namespace) -> int:
    from ..experiments.report import format_leaderboard, write_report
    from ..experiments.store import ResultStore, merge
    from .common import UserError

    out = Path(args.out)
    target = out / "results.sqlite"
    if target.exists():
        raise UserError(f"{target} exists: merge writes a new store (choose another --out)")
    merge([_store_path(p) for p in args.stores], target)
    with ResultStore(target) as store:
        print(format_leaderboard(store))
        done, total = store.progress()
    print(f"merged {len(args.stores)} stores into {target}: {done} of {total} units of the "
          "plan stored")
    if not args.no_report:
        print(f"wrote {write_report(target)}")
    return 0


def add_merge_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    m = sub.add_parser(
        "merge", help="combine result stores (e.g. attrlab bench --shard runs) into one",
        description="Combine the result stores of several runs (output folders or "
        "results.sqlite files), e.g. the N shards of attrlab bench --shard I/N, into "
        "OUT/results.sqlite, print the leaderboard and write OUT/report.html. Results of the "
        "same unit must agree; a conflicting value is an error naming the unit.")
    m.add_argument("stores", nargs="+", metavar="STORE", help="output folder or .sqlite file")
    m.add_argument("--out", required=True, help="output folder of the merged store")
    m.add_argument("--no-report", action="store_true", help="do not write report.html")
    m.set_defaults(func=cmd_merge)
    return m
