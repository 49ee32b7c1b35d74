"""Which options of a registered method go to its constructor and which to ``attribute``,
found from their signatures, with values parsed from ``KEY=VALUE`` text fitted to the
parameter they are for."""

from __future__ import annotations

import inspect
from typing import Any, Mapping

from torch import Tensor

from .base import method_class

_NOT_OPTIONS = {"self", "model", "options", "base_options"}


def structural_params(cls: type) -> dict[str, inspect.Parameter]:
    """The constructor parameters of ``cls`` that are not declared options (a wrapped ``base``
    method, Grad-CAM's ``layer``, DGA's ``local``): fixed at construction."""
    params = inspect.signature(cls.__init__).parameters
    return {k: p for k, p in params.items() if k not in _NOT_OPTIONS
            and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}


def _coerce(param: inspect.Parameter | None, value: Any) -> Any:
    """A value parsed by ``parse_kv`` fitted to its parameter: ``none`` -> None, and numbers
    for string-only structural parameters (``layer=4``) back to strings."""
    if isinstance(value, str) and value.lower() == "none":
        return None
    if param is None:
        return value
    ann = param.annotation if isinstance(param.annotation, str) else str(param.annotation)
    if (isinstance(value, (int, float)) and not isinstance(value, bool) and "str" in ann
            and not any(t in ann for t in ("int", "float", "bool", "Any"))):
        return str(value)
    return value


def check_options(name: str, options: Mapping[str, Any]) -> dict[str, Any]:
    """The options of method ``name`` (text values already parsed by ``parse_kv``) fitted to
    what the method takes: its structural constructor parameters and its declared options
    (:attr:`~attrlab.methods.base.Attribution.options`); for a wrapper (``smoothgrad``,
    ``attribution_mask``) also those of its ``base`` method. All of them go to the constructor
    (declared options become the method's defaults). Unknown keys raise ``ValueError``; a
    ``baselines`` given as text must be a number."""
    cls = method_class(name)
    structural = structural_params(cls)
    declared = cls.option_specs()
    out: dict[str, Any] = {}
    base_cls = None
    for key, value in options.items():
        if key in structural or key in declared:
            out[key] = _coerce(structural.get(key), value)
            continue
        if cls.wraps and cls.wraps in structural:
            if base_cls is None:
                base = options.get(cls.wraps, structural[cls.wraps].default)
                base_cls = method_class(base) if isinstance(base, str) else type(base)
            b_structural = structural_params(base_cls)
            if key in b_structural or key in base_cls.option_specs():
                out[key] = _coerce(b_structural.get(key), value)
                continue
            raise ValueError(_unknown_key(name, key, cls, base_cls.name))
        raise ValueError(_unknown_key(name, key, cls))
    v = out.get("baselines")
    if "baselines" in out and (isinstance(v, bool) or not isinstance(v, (int, float, Tensor))):
        raise ValueError(f"{name}.baselines must be a number (a constant baseline in "
                         f"normalised input units), got {v!r}")
    return out


def _unknown_key(name: str, key: str, cls: type, base: str | None = None) -> str:
    known = sorted(set(structural_params(cls)) | set(cls.option_specs()))
    extra = f" and the options of its base method {base}" if base else ""
    return (f"unknown option {key!r} for method {name}; its options are: "
            f"{', '.join(known) or '(none)'}{extra}")
