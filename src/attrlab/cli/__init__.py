"""The ``attrlab`` command, one module per subcommand: ``methods``, ``train``, ``explain``,
``bench``, ``merge``, ``roar``, ``reproduce``.

Errors a user can cause (a wrong option value, an unreadable file, a missing data set) are
printed as one line ``attrlab: error: ...`` with exit status 2, not as a traceback.
"""

from __future__ import annotations

import argparse
import sys
from typing import Callable, Sequence

from .. import __version__
from .common import UserError

__all__ = ["UserError", "build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    from .bench import add_bench_parser
    from .explain import add_explain_parser
    from .merge import add_merge_parser
    from .methods import add_methods_parser
    from .reproduce import add_reproduce_parser
    from .roar import add_roar_parser
    from .train import add_train_parser

    p = argparse.ArgumentParser(prog="attrlab", description=__doc__.splitlines()[0])
    p.add_argument("--version", action="version", version=f"attrlab {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    for add in (add_methods_parser, add_train_parser, add_explain_parser, add_bench_parser,
                add_merge_parser, add_roar_parser, add_reproduce_parser):
        add(sub)
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
    except OSError as err:  # an --out that is a file, a folder without write permission
        where = f": {err.filename}" if getattr(err, "filename", None) else ""
        print(f"attrlab: error: {err.strerror or err}{where}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("attrlab: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
