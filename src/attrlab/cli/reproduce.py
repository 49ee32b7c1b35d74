"""The ``attrlab reproduce`` subcommand."""

from __future__ import annotations

import argparse
import inspect
from pathlib import Path

from ..core.options import parse_kv
from ..experiments.reproduce import EXPERIMENTS, get
from .common import UserError, device_arg


def cmd_reproduce(args: argparse.Namespace) -> int:
    if args.experiment not in EXPERIMENTS:
        raise UserError(f"unknown experiment {args.experiment!r}; available: "
                        f"{', '.join(EXPERIMENTS)}")
    func = get(args.experiment)
    options = parse_kv(args.option, "--option")
    accepted = set(inspect.signature(func).parameters) - {"out"}
    unknown = set(options) - accepted
    if unknown:
        raise UserError(f"unknown --option {', '.join(sorted(unknown))} for {args.experiment}; "
                        f"accepted: {', '.join(sorted(accepted))}")
    if args.limit is not None:
        if args.limit < 1:
            raise UserError(f"--limit must be positive, got {args.limit}")
        options["limit"] = args.limit
    out = Path(args.out or f"attrlab-reproduce-{args.experiment}")
    report = func(out, device=args.device, data_dir=args.data_dir, quick=args.quick,
                  progress=not args.no_progress, **options)
    print(report.read_text())
    print(f"wrote {report}")
    return 0


def add_reproduce_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    lines = "\n".join(f"  {k:18s} {v[1]}" for k, v in EXPERIMENTS.items())
    p = sub.add_parser("reproduce", help="reproduce a paper's experiments on real data",
                       formatter_class=argparse.RawDescriptionHelpFormatter,
                       description="Run a paper's experiments (resumable) and write REPORT.md "
                       "with our tables beside the paper's, results.json and plots.\n\n"
                       "experiments:\n" + lines)
    p.add_argument("experiment", help=", ".join(EXPERIMENTS))
    p.add_argument("--out", help="output folder (default attrlab-reproduce-EXPERIMENT)")
    p.add_argument("--limit", type=int, help="test images per evaluation (default 1000)")
    p.add_argument("--device", default="cpu", type=device_arg)
    p.add_argument("--data-dir", help="where real data lives (default $ATTRLAB_DATA_DIR)")
    p.add_argument("--quick", action="store_true", help="tiny settings to check the pipeline")
    p.add_argument("--option", action="append", metavar="KEY=VALUE",
                   help="experiment option, repeatable (e.g. zoo_dir=ck, student_epochs=5, "
                   "roar=false)")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=cmd_reproduce)
    return p
