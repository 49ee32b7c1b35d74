"""A name -> class registry, shared by methods and metrics."""

from __future__ import annotations

from typing import Generic, TypeVar

T = TypeVar("T", bound=type)


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
            raise ValueError(f"unknown {self.kind} {name!r}; available: "
                             f"{', '.join(self.available())}")
        return self.items[name]
