"""Option values given as ``KEY=VALUE`` text (command line, ``--option``, config overrides)."""

from __future__ import annotations

from typing import Sequence


def parse_kv(items: Sequence[str] | None, what: str) -> dict:
    """``["depth=16", "width=0.25"]`` -> {"depth": "16", "width": 0.25} (numbers converted,
    ``true``/``false`` to booleans, everything else kept as a string)."""
    out: dict = {}
    for item in items or ():
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"{what} must look like KEY=VALUE, got {item!r}")
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
