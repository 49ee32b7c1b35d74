"""Randomness from an explicit ``torch.Generator``: nothing in attrlab draws from (or reseeds)
the caller's global RNG. A random method or metric takes ``generator=``; without one it uses a
fresh generator seeded with 0, so the same call gives the same result."""

from __future__ import annotations

import torch
from torch import Tensor


def generator_for(device: torch.device | str, generator: torch.Generator | None = None,
                  seed: int = 0) -> torch.Generator:
    """``generator`` itself, or a new one on ``device`` seeded with ``seed``."""
    if generator is not None:
        if not isinstance(generator, torch.Generator):
            raise TypeError(f"generator must be a torch.Generator, got {type(generator).__name__}")
        return generator
    return torch.Generator(device=device).manual_seed(seed)


def normal(std: Tensor, generator: torch.Generator) -> Tensor:
    """N(0, std^2) noise of ``std``'s shape, dtype and device, drawn from ``generator`` (on the
    generator's device, then moved, when the two differ). With a CPU generator seeded s this
    is what ``torch.manual_seed(s); torch.normal(0.0, std)`` draws."""
    if generator.device == std.device:
        return torch.normal(0.0, std, generator=generator)
    return torch.normal(0.0, std.to(generator.device), generator=generator).to(std.device)
