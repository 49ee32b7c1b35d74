"""The ``attrlab roar`` subcommand: remove-and-retrain from the command line."""

from __future__ import annotations

import argparse
from collections import defaultdict

import numpy as np

from ..data import load_dataset
from ..experiments.roar import roar
from ..experiments.train import PRESETS
from ..methods.options import check_options
from ..models import load_checkpoint
from .common import UserError, parse_method_args, parse_methods, positive_int_arg


def cmd_roar(args: argparse.Namespace) -> int:
    model, meta = load_checkpoint(args.checkpoint)
    name = args.dataset or meta["dataset"]
    train, test = (load_dataset(name, s, args.data_dir) for s in ("train", "test"))
    if args.preset not in PRESETS:
        raise UserError(f"unknown preset {args.preset!r}; available: {', '.join(PRESETS)}")
    recipe = PRESETS[args.preset]
    if args.epochs:
        recipe = recipe.with_epochs(args.epochs)
    options = parse_method_args(args.method_arg)
    specs = {}
    for m in parse_methods(args.methods):
        # unknown options fail here, before any work; roar() builds and fits the methods
        specs[m] = {"name": m, "options": check_options(m, options.get(m, {}))}
    try:
        fractions = [float(f) for f in args.fractions.split(",")]
        seeds = [int(s) for s in args.seeds.split(",")]
    except ValueError as err:
        raise UserError(f"--fractions/--seeds must be comma-separated numbers: {err}") from err
    rows = roar(model, train, test, specs, fractions=fractions, recipe=recipe, seeds=seeds,
                out_dir=args.out, subset=args.subset, progress=not args.no_progress)
    acc: dict[tuple[str, float], list[float]] = defaultdict(list)
    for r in rows:
        acc[(r["method"], r["fraction"])].append(r["accuracy"])
    fr = sorted({f for _, f in acc})
    methods = sorted({m for m, _ in acc})
    print("test accuracy after retraining (mean over seeds) by fraction removed")
    print("method".ljust(18) + "".join(f"{f:>8.0%}" for f in fr))
    for m in methods:
        print(m.ljust(18) + "".join(f"{np.mean(acc[(m, f)]):8.3f}" if (m, f) in acc else
                                    " " * 8 for f in fr))
    b = rows[0]
    print(f"budget: {b['n_train']} train / {b['n_test']} test images, {b['epochs']} epochs, "
          f"{len(seeds)} seed(s); results in {args.out}/results.sqlite")
    return 0


def add_roar_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    r = sub.add_parser("roar", help="remove-and-retrain (ROAR) for some methods",
                       description="For each method and fraction, replace the top pixels of "
                       "every training and test image by the image's channel mean, retrain a "
                       "fresh model of the same architecture and report its test accuracy "
                       "(lower = the method found more important pixels). A random-ranking "
                       "control and a no-removal baseline are added. Each run's accuracy is stored "
                       "in OUT/results.sqlite as computed, keyed by model, data, method "
                       "options, fraction, seed and recipe; an interrupted run resumes.")
    r.add_argument("--checkpoint", default="digits_nib_cnn", help="shipped name or file")
    r.add_argument("--dataset", help="data set (default: the checkpoint's)")
    r.add_argument("--methods", default="gxsi,ig,saliency", help="comma-separated methods")
    r.add_argument("--method-arg", action="append", metavar="METHOD.KEY=VALUE",
                   help="a method option, repeatable (e.g. ig.n_steps=16)")
    r.add_argument("--fractions", default="0.1,0.3,0.5,0.7,0.9",
                   help="comma-separated fractions of pixels removed (default 0.1,...,0.9)")
    r.add_argument("--seeds", default="0", help="comma-separated seeds")
    r.add_argument("--preset", default="digits", help="training recipe of the retrained models")
    r.add_argument("--epochs", type=positive_int_arg, help="reduced budget: epochs of each retraining")
    r.add_argument("--subset", type=int, help="reduced budget: first N train/test images")
    r.add_argument("--data-dir", help="where real data lives (default $ATTRLAB_DATA_DIR)")
    r.add_argument("--out", default="attrlab-roar", help="output directory with the result "
                   "store (default attrlab-roar)")
    r.add_argument("--no-progress", action="store_true", help="no progress bar")
    r.set_defaults(func=cmd_roar)
    return r
