"""What every subcommand shares: the error a user caused, and parsing of method lists and
``METHOD.KEY=VALUE`` options."""

from __future__ import annotations

import argparse
from typing import Any, Sequence


class UserError(ValueError):
    """An error caused by the command line or the files it names (printed as one line)."""


def did_you_mean(name: str, choices: Sequence[str]) -> str:
    """``" (did you mean 'x'?)"`` for the closest of ``choices`` (case-insensitive), else ``""``."""
    from ..core.registry import closest

    best = closest(name, choices)
    return f" (did you mean {best!r}?)" if best else ""


def positive_int_arg(text: str) -> int:
    """argparse type: a positive int (``--threads 0``, ``--epochs -1`` are refused)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a positive int, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive int, got {value}")
    return value


def device_arg(text: str) -> str:
    """argparse type: a torch device this machine has (checked before any work)."""
    from ..core.checks import check_device

    try:
        check_device(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None
    return text


def parse_method_args(items: Sequence[str] | None) -> dict[str, dict[str, Any]]:
    """``["ig.n_steps=16", "gradcam.layer=features.10"]`` ->
    {"ig": {"n_steps": 16}, "gradcam": {"layer": "features.10"}}; method names and keys are
    validated against the registry."""
    from ..core.options import parse_kv
    from ..methods import available
    from ..methods.options import check_options

    out: dict[str, dict[str, Any]] = {}
    for item in items or ():
        lhs, sep, _ = item.partition("=")
        method, dot, key = lhs.partition(".")
        if not sep or not dot or not method or not key:
            raise UserError(f"--method-arg must look like METHOD.KEY=VALUE "
                            f"(e.g. ig.n_steps=16), got {item!r}")
        if method not in available():
            raise UserError(f"--method-arg {item!r}: unknown method {method!r}"
                            f"{did_you_mean(method, available())}; available: "
                            f"{', '.join(available())}")
        out.setdefault(method, {}).update(parse_kv([f"{key}={item.partition('=')[2]}"],
                                                   "--method-arg"))
    for method, opts in out.items():
        check_options(method, opts)
    return out


def parse_methods(text: str | None) -> list[str]:
    """``"saliency,ig"`` -> ["saliency", "ig"]; ``"all"`` -> every registered method; None ->
    the default set (methods up to the bench's cost cap, see
    :func:`~attrlab.experiments.bench.default_methods`)."""
    from ..experiments.bench import default_methods
    from ..methods import available

    if text is None:
        return default_methods()
    if text.strip() == "all":
        return available()
    names = [s.strip() for s in text.split(",") if s.strip()]
    if not names:
        raise UserError("--methods is empty")
    unknown = [s for s in names if s not in available()]
    if unknown:
        raise UserError(f"unknown method {unknown[0]!r}{did_you_mean(unknown[0], available())}; "
                        f"available: {', '.join(available())} (or all)")
    return list(dict.fromkeys(names))
