"""The attrlab command line: explain a model's predictions, benchmark attribution methods,
reproduce papers.

Each subcommand lives in its own module (``methods``, ``metrics``, ``train``, ``explain``,
``bench``, ``merge``, ``roar``, ``reproduce``). ``attrlab``, ``attrlab --help`` and
``attrlab --version`` answer without importing torch. Errors a user can cause (a wrong option
value, an unreadable file, a missing data set) are printed as one line
``attrlab: error: ...`` with exit status 2, not as a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from typing import Callable, Sequence

from .. import __version__
from .common import UserError

__all__ = ["UserError", "build_parser", "main"]

DESCRIPTION = ("attrlab: compute, compare and evaluate input feature attributions of PyTorch "
               "classifiers. Run 'attrlab COMMAND --help' for a command's options.")
EPILOG = """examples:
  attrlab explain --model torchvision:resnet18 --weights DEFAULT --images cat.jpg
  attrlab bench                      # the embedded default: every method x fast metric
  attrlab bench --checkpoint mnist_cnn --methods saliency,ig --metrics morf,lerf
  attrlab methods ig                 # one method: reference, options, defaults
  attrlab metrics                    # the metrics and what they measure
  attrlab reproduce dga --quick
"""

#: name -> (module, adder, one-line help); modules are imported only when needed.
COMMANDS: dict[str, tuple[str, str, str]] = {
    "explain": ("explain", "add_explain_parser",
                "attribution maps of a model for some inputs (figure + arrays)"),
    "bench": ("bench", "add_bench_parser",
              "run methods x metrics on a model and data, print a leaderboard, write a report"),
    "methods": ("methods", "add_methods_parser",
                "list the attribution methods, or describe one (attrlab methods NAME)"),
    "metrics": ("methods", "add_metrics_parser",
                "list the evaluation metrics, or describe one (attrlab metrics NAME)"),
    "train": ("train", "add_train_parser", "train a zoo model on a data set with a paper's "
              "recipe"),
    "merge": ("merge", "add_merge_parser", "combine result stores (e.g. sharded bench runs)"),
    "roar": ("roar", "add_roar_parser", "remove-and-retrain (ROAR) for some methods"),
    "reproduce": ("reproduce", "add_reproduce_parser",
                  "reproduce a paper's experiments on real data"),
}


def _light_parser() -> argparse.ArgumentParser:
    """The top-level parser with the command list only (no subcommand module imported)."""
    p = argparse.ArgumentParser(prog="attrlab", description=DESCRIPTION, epilog=EPILOG,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--version", action="version", version=f"attrlab {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    for name, (_, _, text) in COMMANDS.items():
        sub.add_parser(name, help=text)
    return p


def build_parser() -> argparse.ArgumentParser:
    """The full parser, every subcommand with its options."""
    p = argparse.ArgumentParser(prog="attrlab", description=DESCRIPTION, epilog=EPILOG,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--version", action="version", version=f"attrlab {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    for module, adder, _ in COMMANDS.values():
        getattr(importlib.import_module(f".{module}", __name__), adder)(sub)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "--version"):
        parser = _light_parser()
        parser.parse_args(argv)  # prints help or version and exits
        parser.print_help()
        return 0
    if not argv[0].startswith("-") and argv[0] not in COMMANDS:
        from .common import did_you_mean

        print(f"attrlab: error: unknown command {argv[0]!r}"
              f"{did_you_mean(argv[0], list(COMMANDS))}; commands: {', '.join(COMMANDS)}",
              file=sys.stderr)
        return 2
    parser = build_parser()
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
    except OSError as err:  # an --out that is a file, a folder without write permission
        where = f": {err.filename}" if getattr(err, "filename", None) else ""
        print(f"attrlab: error: {err.strerror or err}{where}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("attrlab: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
