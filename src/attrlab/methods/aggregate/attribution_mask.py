"""The recursive attribution mask of paper 01 (Algorithm 1, eq. 11)."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from ..base import Attribution, get, register


def minmax(a: Tensor) -> Tensor:
    """Paper 01 eq. 11, per sample and per channel over the spatial positions:
    (A - min A) / (max A - min A); where max == min the denominator is 1 (authors' code)."""
    flat = a.flatten(2) if a.dim() > 2 else a.unsqueeze(1)
    lo = flat.amin(-1, keepdim=True)
    span = flat.amax(-1, keepdim=True) - lo
    out = (flat - lo) / torch.where(span > 0, span, torch.ones_like(span))
    return out.view_as(a)


@register
class AttributionMask(Attribution):
    """Attribution mask (paper 01, Algorithm 1): m*_0 = 1; for i = 1..I:
    A_i = Expl(f, z0 * m*_{i-1}, k), m_i = MinMax(A_i) (eq. 11, per channel),
    m*_i = m*_{i-1} * m_i. ``attribute`` returns m*_I; :meth:`masks` returns every m*_i.

    ``base`` is any registered method (default GxSI, eq. 13) with its options; the target k is
    the given target (the true label for MIA, eq. 12). All samples of a batch go through each
    iteration together, so I iterations cost I times the base method.
    """

    name = "attribution_mask"
    signed = False

    def __init__(self, model: nn.Module, base: str | Attribution = "gxsi", iterations: int = 10,
                 **base_options: Any) -> None:
        super().__init__(model)
        self.base = base if isinstance(base, Attribution) else get(base, model, **base_options)
        if self.base.model is not model:
            raise ValueError("the base method must be built on the same model")
        self.iterations = self._check_iterations(iterations)

    @staticmethod
    def _check_iterations(iterations: Any) -> int:
        if isinstance(iterations, bool) or not isinstance(iterations, int) or iterations < 1:
            raise ValueError(f"iterations must be a positive int, got {iterations!r}")
        return iterations

    def masks(self, inputs: Tensor, target=None, iterations: int | None = None) -> Tensor:
        """All accumulated masks m*_0 .. m*_I, shape (I + 1, N, ...)."""
        n = self._check_iterations(self.iterations if iterations is None else iterations)
        return self.guarded(inputs, target, lambda x, t: self._masks(x, t, n))

    def _masks(self, inputs: Tensor, target: Tensor, iterations: int) -> Tensor:
        mask = torch.ones_like(inputs)
        out = [mask]
        for _ in range(iterations):
            a = self.base._attribute(inputs * mask, target, **self.base.bound_options)
            mask = mask * minmax(a.expand_as(inputs))
            out.append(mask)
        return torch.stack(out)

    def _attribute(self, inputs: Tensor, target: Tensor, iterations: int | None = None) -> Tensor:
        n = self._check_iterations(self.iterations if iterations is None else iterations)
        return self._masks(inputs, target, n)[-1]
