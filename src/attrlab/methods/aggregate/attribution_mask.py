"""The recursive attribution mask of paper 01 (Algorithm 1, eq. 11)."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from ..base import Attribution, Option, as_args, register


def _iterations(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}")
    return value


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
    reference = "paper 01, Algorithm 1, eq. 11"
    low_precision = (torch.float16,)  # others: far off the float32 map (test_reliability)
    wraps = "base"
    options = {"iterations": Option(10, _iterations, "I, the number of recursive masks")}

    def __init__(self, model: nn.Module, base: str | Attribution = "gxsi", **options: Any) -> None:
        own = self._wrap(model, base, options)
        super().__init__(model, **own)

    @staticmethod
    def _check_iterations(iterations: Any) -> int:
        return _iterations("iterations", iterations)

    @classmethod
    def cost(cls, iterations: int = 10, **options: Any) -> float:
        return float(iterations)  # times the base method's cost

    def masks(self, inputs: Tensor, target=None, *, additional_forward_args: Any = None,
              **options: Any) -> Tensor:
        """All accumulated masks m*_0 .. m*_I, shape (I + 1, N, ...)."""
        opts = self.resolve_options(options)
        args = as_args(additional_forward_args)
        return self.guarded(inputs, target, lambda x, t: self._masks(
            x, t, additional_forward_args=args, **opts), additional_forward_args=args)

    def _masks(self, inputs: Tensor, target: Tensor, iterations: int,
               forwarded: dict[str, Any], additional_forward_args: tuple = ()) -> Tensor:
        mask = torch.ones_like(inputs)
        out = [mask]
        for _ in range(iterations):
            a = self.base.attribute(inputs * mask, target,
                                    additional_forward_args=additional_forward_args, **forwarded)
            mask = mask * minmax(a)
            out.append(mask)
        return torch.stack(out)

    def _attribute(self, inputs: Tensor, target: Tensor, iterations: int,
                   forwarded: dict[str, Any], additional_forward_args: tuple = ()) -> Tensor:
        return self._masks(inputs, target, iterations, forwarded, additional_forward_args)[-1]
