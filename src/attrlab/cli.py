"""The ``attrlab`` command: ``methods``, ``train``, ``explain``.

Errors a user can cause (a wrong option value, an unreadable file, a missing data set) are
printed as one line ``attrlab: error: ...`` with exit status 2, not as a traceback.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from typing import Callable, Sequence

from . import __version__


class UserError(Exception):
    """An error caused by the command line or the files it names."""


def parse_kv(items: Sequence[str] | None, what: str) -> dict:
    """``["depth=16", "width=0.25"]`` -> {"depth": "16", "width": 0.25} (numbers converted,
    ``true``/``false`` to booleans, everything else kept as a string)."""
    out: dict = {}
    for item in items or ():
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise UserError(f"{what} must look like KEY=VALUE, got {item!r}")
        low = value.lower()
        if low in ("true", "false"):
            out[key] = low == "true"
            continue
        for cast in (int, float):
            try:
                out[key] = cast(value)
                break
            except ValueError:
                pass
        else:
            out[key] = value
    return out


# ----------------------------------------------------------------------------------- methods

def cmd_methods(args: argparse.Namespace) -> int:
    from .methods import available, method_class

    for name in available():
        cls = method_class(name)
        doc = (cls.__doc__ or "").strip().splitlines()[0]
        print(f"{name:12s} {doc}")
    return 0


# ------------------------------------------------------------------------------------- train

def cmd_train(args: argparse.Namespace) -> int:
    import torch

    from . import models
    from .data import dataset_info, load_dataset
    from .train import PRESETS, fit

    if args.preset not in PRESETS:
        raise UserError(f"unknown preset {args.preset!r}; available: {', '.join(PRESETS)}")
    if args.model not in models.BUILDERS:
        raise UserError(f"unknown model {args.model!r}; available: {', '.join(models.BUILDERS)}")
    info = dataset_info(args.dataset)
    recipe = PRESETS[args.preset]
    if args.epochs:
        recipe = recipe.with_epochs(args.epochs)
    if args.batch_size:
        from dataclasses import replace
        recipe = replace(recipe, batch_size=args.batch_size)
    if args.threads:
        torch.set_num_threads(args.threads)
    kwargs = {"num_classes": info.num_classes, "in_channels": info.in_channels,
              **parse_kv(args.model_arg, "--model-arg")}
    import inspect
    if "input_size" in inspect.signature(models.BUILDERS[args.model]).parameters:
        kwargs.setdefault("input_size", info.input_size)
    torch.manual_seed(args.seed)
    model = models.BUILDERS[args.model](**kwargs)
    train, test = (load_dataset(args.dataset, s, args.data_dir) for s in ("train", "test"))
    meta = fit(model, train, test, recipe, args.out, seed=args.seed, half=args.half,
               progress=not args.no_progress,
               meta={"command": "attrlab " + shlex.join(args.argv)},
               channels_last=args.channels_last, bf16=args.bf16, device=args.device)
    print(f"wrote {args.out}: test accuracy {meta['test_accuracy']:.4f}")
    return 0


# ----------------------------------------------------------------------------------- parser

def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="attrlab", description=__doc__.splitlines()[0])
    p.add_argument("--version", action="version", version=f"attrlab {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

    m = sub.add_parser("methods", help="list the registered attribution methods")
    m.set_defaults(func=cmd_methods)

    t = sub.add_parser("train", help="train a zoo model on a data set with a paper's recipe")
    t.add_argument("--model", required=True, help="zoo builder: nib_vgg, resnet8, cnn6c3l, "
                   "mnist_cnn, nib_cnn")
    t.add_argument("--model-arg", action="append", metavar="KEY=VALUE",
                   help="builder argument, repeatable (e.g. depth=16, width=0.25)")
    t.add_argument("--dataset", required=True, help="digits, mnist or cifar10")
    t.add_argument("--preset", default="paper01", help="recipe: paper01, resnet, mnist, digits")
    t.add_argument("--epochs", type=int, help="override the preset's epochs (milestones scale)")
    t.add_argument("--batch-size", type=int, help="override the preset's batch size")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--out", required=True, help="checkpoint file to write (resumes from "
                   "OUT.partial if present)")
    t.add_argument("--half", action="store_true", help="store weights as float16")
    t.add_argument("--threads", type=int, help="torch CPU threads")
    t.add_argument("--channels-last", action="store_true", help="channels-last memory format "
                   "(faster convolutions on CPU)")
    t.add_argument("--bf16", action="store_true", help="bfloat16 autocast for the training "
                   "forward pass (weights stay float32)")
    t.add_argument("--device", default="cpu", help="torch device to train on (cpu, cuda, ...)")
    t.add_argument("--data-dir", help="where real data lives (default $ATTRLAB_DATA_DIR)")
    t.add_argument("--no-progress", action="store_true", help="no progress bar")
    t.set_defaults(func=cmd_train)

    from .explain import add_explain_parser
    add_explain_parser(sub)
    from .bench.cli import add_bench_parser
    add_bench_parser(sub)
    from .roar_cli import add_roar_parser
    add_roar_parser(sub)
    from .reproduce.cli import add_reproduce_parser
    add_reproduce_parser(sub)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parser.parse_args(argv)
    args.argv = argv
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    func: Callable[[argparse.Namespace], int] = args.func
    try:
        return func(args)
    except (UserError, FileNotFoundError, ValueError, TypeError) as err:
        print(f"attrlab: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("attrlab: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
