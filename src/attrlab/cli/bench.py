"""The ``attrlab bench`` subcommand."""

from __future__ import annotations

import argparse
import sys
from dataclasses import asdict
from pathlib import Path

from .common import device_arg, positive_int_arg


def _split_dotted(items, what: str) -> dict[str, dict]:
    """``["ig.n_steps=16"]`` -> {"ig": {"n_steps": 16}}."""
    from ..core.options import parse_kv
    from .common import UserError

    out: dict[str, dict] = {}
    for item in items or ():
        name, dot, rest = item.partition(".")
        if not dot or not name:
            raise UserError(f"{what} must look like NAME.KEY=VALUE, got {item!r}")
        out.setdefault(name, {}).update(parse_kv([rest], what))
    return out


def config_from_args(args: argparse.Namespace):
    """The config file (if any) with the command-line options that were given on top."""
    from ..experiments.bench import BenchConfig
    from .common import UserError

    cfg = BenchConfig.from_file(args.config) if args.config else BenchConfig()
    data = asdict(cfg)
    if args.model:
        if not args.model.startswith("torchvision:"):
            raise UserError("--model must look like torchvision:NAME (use --checkpoint for "
                            "attrlab checkpoints)")
        data.update(torchvision=args.model.split(":", 1)[1], checkpoint=None)
    for key in ("checkpoint", "weights", "num_classes", "input_size", "dataset", "split",
                "limit", "batch_size", "seed", "device", "data_dir", "out", "target",
                "report_samples"):
        value = getattr(args, key)
        if value is not None:
            data[key] = value
    if args.all:
        data["limit"] = None
    for key in ("methods", "metrics"):
        value = getattr(args, key)
        if value is not None:  # "" is an empty list, refused by resolve, not "all"
            data[key] = [v.strip() for v in value.split(",") if v.strip()]
    for key, items in (("method_options", args.method_arg), ("metric_options", args.metric_arg)):
        for name, opts in _split_dotted(items, f"--{key.split('_')[0]}-arg").items():
            data[key] = {**data[key], name: {**data[key].get(name, {}), **opts}}
    return BenchConfig.from_dict(data)


def cmd_bench(args: argparse.Namespace) -> int:
    from ..experiments.bench import run
    from ..experiments.planner import parse_shard
    from ..experiments.report import format_leaderboard, write_report
    from ..experiments.store import ResultStore

    cfg = config_from_args(args)
    store_path = Path(cfg.out) / "results.sqlite"
    shard = parse_shard(args.shard) if args.shard else None
    if args.report_only:
        if not store_path.exists():
            raise FileNotFoundError(f"no results to report in {store_path}")
    else:
        import warnings

        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", UserWarning)
            run(cfg, progress=not args.no_progress, fresh=args.fresh, shard=shard)
        for w in caught:
            if issubclass(w.category, UserWarning):
                print(f"attrlab: warning: {w.message}", file=sys.stderr)
    with ResultStore(store_path) as store:
        print(format_leaderboard(store))
        done, total = store.progress()
    if done < total:
        print(f"{done} of {total} units of the plan are stored"
              + (f" (shard {args.shard}: merge the shards with attrlab merge)" if shard else ""))
    path = write_report(store_path)
    print(f"wrote {path}")
    return 0


def add_bench_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    b = sub.add_parser(
        "bench", help="run methods x metrics, store every score, print a leaderboard and "
        "write an HTML report",
        description="Run attribution methods x evaluation metrics on a model and data set. "
        "With no argument: the embedded default (digits_nib_cnn on scikit-learn digits, 64 "
        "test images, every method, every fast metric). Scores are stored in OUT/results.sqlite "
        "as they are computed, so an interrupted run resumes; OUT/report.html is the report. "
        "Every result is keyed by the content of its work unit (model weights, data, samples, "
        "method and metric options, seed), so changed settings compute new units and the "
        "report shows the current settings' units.")
    b.add_argument("--config", help="TOML or YAML file with any of the options below "
                   "(command-line options override it)")
    b.add_argument("--checkpoint", help="shipped checkpoint name or checkpoint file "
                   "(default digits_nib_cnn)")
    b.add_argument("--model", help="torchvision:NAME instead of a checkpoint (with --weights, "
                   "--num-classes, --input-size)")
    b.add_argument("--weights", help="state_dict file for --model")
    b.add_argument("--num-classes", type=int, help="classes of --model")
    b.add_argument("--input-size", type=int, help="input size of --model")
    b.add_argument("--dataset", metavar="NAME|DIR|FILE.npz",
                   help="a registered data set (digits, mnist, cifar10; default: the "
                   "checkpoint's), an ImageFolder tree DIR/<class>/<image> (or "
                   "DIR/<split>/<class>/...; resized and centre-cropped for the model, "
                   "normalised with its mean/std) or an .npz with inputs and labels (uint8 "
                   "images, or float inputs already normalised); a model/data mismatch "
                   "(classes, input size, normalisation) is warned about")
    b.add_argument("--split", choices=("train", "test"), help="split (default test)")
    b.add_argument("--methods", help="comma-separated method names (default: every registered "
                   "method costing at most 200 passes per sample at its defaults)")
    b.add_argument("--metrics", help="comma-separated metric names (default: all fast metrics)")
    b.add_argument("--method-arg", action="append", metavar="METHOD.KEY=VALUE",
                   help="method option, repeatable (e.g. ig.n_steps=16)")
    b.add_argument("--metric-arg", action="append", metavar="METRIC.KEY=VALUE",
                   help="metric option, repeatable (e.g. morf.baseline=mean)")
    b.add_argument("--target", choices=("label", "pred"),
                   help="explain the true label (default) or the predicted class")
    b.add_argument("--limit", type=int, help="use the first N samples (default 64)")
    b.add_argument("--all", action="store_true", help="use every sample of the split")
    b.add_argument("--batch-size", type=positive_int_arg, help="samples per batch (default 32)")
    b.add_argument("--seed", type=int, help="seed for random methods and metrics (default 0)")
    b.add_argument("--device", type=device_arg, help="torch device (default cpu)")
    b.add_argument("--data-dir", help="where real data lives (default $ATTRLAB_DATA_DIR)")
    b.add_argument("--out", help="output directory (default attrlab-bench)")
    b.add_argument("--report-samples", type=int, help="images in the report's map grid "
                   "(default 4; 0 for none)")
    b.add_argument("--shard", metavar="I/N", help="run only shard I of N (whole batches, "
                   "deterministic; 0 <= I < N); combine the N output folders with attrlab merge")
    b.add_argument("--fresh", action="store_true", help="discard stored results and start over")
    b.add_argument("--report-only", action="store_true", help="only re-report stored results")
    b.add_argument("--no-progress", action="store_true", help="no progress bar")
    b.set_defaults(func=cmd_bench)
    return b
