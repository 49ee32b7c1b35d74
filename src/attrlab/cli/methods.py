"""``attrlab methods``: list the registered attribution methods with their metadata (reference,
cost at the default options, random / needs data)."""

from __future__ import annotations

import argparse

from ..methods import available, layer, method_class


def cmd_methods(args: argparse.Namespace) -> int:
    for name in available():
        cls = method_class(name)
        tags = [t for t, on in (("random: generator=", cls.random),
                                ("needs data: fit()", cls.needs_data)) if on]
        extra = f"  [{'; '.join(tags)}]" if tags else ""
        print(f"{name:18s} {cls.reference}, {cls.cost():g} pass(es)/sample{extra}")
    print("\nlayer methods (attrlab.methods.layer.get(name, model, layer); layer-shaped maps):")
    for name in layer.available():
        cls = layer.method_class(name)
        print(f"{name:28s} {cls.reference}, {cls.cost():g} pass(es)/sample")
    return 0


def add_methods_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    m = sub.add_parser("methods", help="list the registered attribution methods")
    m.set_defaults(func=cmd_methods)
    return m
