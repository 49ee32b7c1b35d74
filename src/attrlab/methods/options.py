"""Which options of a registered method go to its constructor and which to ``attribute``,
found from their signatures, with values parsed from ``KEY=VALUE`` text fitted to the
parameter they are for."""

from __future__ import annotations

import inspect
from typing import Any, Mapping

from torch import Tensor

from .base import method_class

_NOT_OPTIONS = {"self", "model", "inputs", "target"}


def _named_params(fn) -> tuple[dict[str, inspect.Parameter], bool]:
    params = inspect.signature(fn).parameters
    named = {k: p for k, p in params.items()
             if k not in _NOT_OPTIONS and not k.startswith("_")
             and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
    varkw = any(p.kind is p.VAR_KEYWORD for p in params.values())
    return named, varkw


def _coerce(param: inspect.Parameter, value: Any) -> Any:
    """A value parsed by ``parse_kv`` fitted to the parameter: ``none`` -> None, and numbers
    for string-only parameters (``layer=4``) back to strings."""
    if isinstance(value, str) and value.lower() == "none":
        return None
    ann = param.annotation if isinstance(param.annotation, str) else str(param.annotation)
    if (isinstance(value, (int, float)) and not isinstance(value, bool) and "str" in ann
            and not any(t in ann for t in ("int", "float", "bool", "Any"))):
        return str(value)
    return value


def split_options(name: str, options: Mapping[str, Any]) -> tuple[dict, dict]:
    """Split ``options`` of method ``name`` into constructor and ``attribute`` options by
    inspecting the class's ``__init__`` and ``_attribute`` signatures (a key accepted by both
    goes to the constructor). Keys a wrapper (``smoothgrad``) forwards with ``**options`` are
    checked against its ``base`` method. Unknown keys raise ``ValueError``."""
    cls = method_class(name)
    init, init_varkw = _named_params(cls.__init__)
    call, call_varkw = _named_params(cls._attribute)
    ctor_opts: dict = {}
    call_opts: dict = {}
    base_cls = None
    for key, value in options.items():
        if key in init:
            ctor_opts[key] = _coerce(init[key], value)
        elif key in call:
            call_opts[key] = _coerce(call[key], value)
        elif init_varkw and "base" in init:
            if base_cls is None:
                base = options.get("base", init["base"].default)
                base_cls = method_class(base) if isinstance(base, str) else type(base)
            b_init, _ = _named_params(base_cls.__init__)
            b_call, _ = _named_params(base_cls._attribute)
            if key in b_init:
                ctor_opts[key] = _coerce(b_init[key], value)
            elif key in b_call and call_varkw:
                call_opts[key] = _coerce(b_call[key], value)
            else:
                raise ValueError(_unknown_key(name, key, init, call, base_cls.name))
        else:
            raise ValueError(_unknown_key(name, key, init, call))
    if "baselines" in call_opts:
        v = call_opts["baselines"]
        if isinstance(v, bool) or not isinstance(v, (int, float, Tensor)):
            raise ValueError(f"{name}.baselines must be a number (a constant baseline in "
                            f"normalised input units), got {v!r}")
    return ctor_opts, call_opts


def _unknown_key(name: str, key: str, init: Mapping, call: Mapping, base: str | None = None) -> str:
    known = sorted(set(init) | set(call))
    extra = f" and the options of its base method {base}" if base else ""
    return (f"unknown option {key!r} for method {name}; its options are: "
            f"{', '.join(known) or '(none)'}{extra}")
