"""A name -> class registry, shared by methods and metrics."""

from __future__ import annotations

from typing import Generic, Sequence, TypeVar

T = TypeVar("T", bound=type)


def closest(name: str, choices: Sequence[str]) -> str | None:
    """The registered name ``name`` most likely meant: a case-insensitive match, else the
    closest by :func:`difflib.get_close_matches` (None if nothing is close)."""
    import difflib

    lower = {c.lower(): c for c in choices}
    if name.lower() in lower:
        return lower[name.lower()]
    hit = difflib.get_close_matches(name.lower(), list(lower), n=1, cutoff=0.6)
    return lower[hit[0]] if hit else None


class Registry(Generic[T]):
    """Classes registered under their ``name`` attribute."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.items: dict[str, T] = {}

    def register(self, cls: T) -> T:
        """Class decorator adding ``cls`` under ``cls.name`` (unique, non-empty)."""
        if not cls.name or cls.name in self.items:
            raise ValueError(f"bad or duplicate {self.kind} name {cls.name!r}")
        self.items[cls.name] = cls
        return cls

    def available(self) -> list[str]:
        """Registered names, sorted."""
        return sorted(self.items)

    def get_class(self, name: str) -> T:
        """The class registered under ``name``; a ValueError listing the names otherwise."""
        if name not in self.items:
            best = closest(str(name), self.available())
            hint = f" (did you mean {best!r}?)" if best else ""
            raise ValueError(f"unknown {self.kind} {name!r}{hint}; available: "
                             f"{', '.join(self.available())}")
        return self.items[name]
