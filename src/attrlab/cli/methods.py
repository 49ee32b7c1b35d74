"""``attrlab methods [NAME]`` and ``attrlab metrics [NAME]``: the registered attribution
methods and evaluation metrics, listed with their metadata, or one of them described in full
(reference, docstring, options with defaults)."""

from __future__ import annotations

import argparse
import inspect
import textwrap

from .common import UserError, did_you_mean


def _summary(doc: str | None) -> str:
    """The first paragraph of a docstring, on one line (never cut mid-sentence)."""
    head = inspect.cleandoc(doc or "").partition("\n\n")[0]
    return " ".join(head.split())


def _resolve(name: str, available: list[str], kind: str) -> str:
    if name in available:
        return name
    lower = {a.lower(): a for a in available}
    if name.lower() in lower:
        return lower[name.lower()]
    raise UserError(f"unknown {kind} {name!r}{did_you_mean(name, available)}; available: "
                    f"{', '.join(available)}")


def cmd_methods(args: argparse.Namespace) -> int:
    from ..methods import available, layer, method_class
    from ..methods.options import structural_params

    if args.name:
        name = _resolve(args.name, available() + layer.available(), "method")
        cls = method_class(name) if name in available() else layer.method_class(name)
        print(f"{name}: {cls.reference}")
        flags = [f"signed={cls.signed}", f"random={cls.random}", f"needs_data={cls.needs_data}",
                 f"inputs={', '.join(cls.input_kinds)}", f"cost={cls.cost():g} pass(es)/sample"]
        print("  " + "; ".join(flags))
        print()
        print(textwrap.indent(inspect.cleandoc(cls.__doc__ or ""), "  "))
        struct = structural_params(cls)
        specs = cls.option_specs()
        if struct or specs:
            print("\noptions (--method-arg NAME.KEY=VALUE, or keyword arguments):")
            for k, p in struct.items():
                d = "required" if p.default is inspect.Parameter.empty else repr(p.default)
                print(f"  {k} = {d}  (constructor)")
            for k, o in specs.items():
                print(f"  {k} = {o.default!r}" + (f"  {o.doc}" if o.doc else ""))
        return 0
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
    print("\n'attrlab methods NAME' describes one method and its options.")
    return 0


def cmd_metrics(args: argparse.Namespace) -> int:
    from .. import metrics as M

    if args.name:
        name = _resolve(args.name, M.available(), "metric")
        cls = M.metric_class(name)
        d = cls.describe()
        print(f"{name}: {d['category']}, {'higher' if d['higher_is_better'] else 'lower'} is "
              f"better; {'in' if d['fast'] else 'not in'} bench's default set")
        print(f"  cost: {d['cost']}")
        print()
        print(textwrap.indent(inspect.cleandoc(cls.__doc__ or ""), "  "))
        params = [(k, p) for k, p in inspect.signature(cls.__init__).parameters.items()
                  if k != "self" and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
        if params:
            print("\noptions (--metric-arg NAME.KEY=VALUE, or keyword arguments):")
            for k, p in params:
                dflt = "required" if p.default is inspect.Parameter.empty else repr(p.default)
                print(f"  {k} = {dflt}")
        return 0
    for name in M.available():
        cls = M.metric_class(name)
        arrow = "↑" if cls.higher_is_better else "↓"
        fast = "" if cls.fast else "  [not in the default set]"
        print(f"{name:20s} {arrow} {cls.category:14s} {_summary(cls.__doc__)}{fast}")
    print("\n↑ higher is better, ↓ lower is better; 'attrlab metrics NAME' describes one.")
    return 0


def add_methods_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    m = sub.add_parser("methods", help="list the attribution methods, or describe one",
                       description="List the registered attribution methods (reference, cost "
                       "at the default options, random / needs data), or with NAME describe "
                       "one: its docstring and every option with its default.")
    m.add_argument("name", nargs="?", metavar="NAME", help="a method (case-insensitive)")
    m.set_defaults(func=cmd_methods)
    return m


def add_metrics_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    m = sub.add_parser("metrics", help="list the evaluation metrics, or describe one",
                       description="List the registered evaluation metrics (direction, "
                       "category, definition), or with NAME describe one: its definition, "
                       "cost and options.")
    m.add_argument("name", nargs="?", metavar="NAME", help="a metric (case-insensitive)")
    m.set_defaults(func=cmd_metrics)
    return m
