"""``attrlab methods``: list the registered attribution methods."""

from __future__ import annotations

import argparse

from ..methods import available, method_class


def cmd_methods(args: argparse.Namespace) -> int:
    for name in available():
        cls = method_class(name)
        doc = (cls.__doc__ or "").strip().splitlines()[0]
        print(f"{name:12s} {doc}")
    return 0


def add_methods_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    m = sub.add_parser("methods", help="list the registered attribution methods")
    m.set_defaults(func=cmd_methods)
    return m
