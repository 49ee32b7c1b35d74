"""Rectified Gradient (Kim et al. 2019)."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from ...core.rules import NonlinearityRules, rectgrad_composite
from ..base import Attribution, Option, number_in, register
from .rule_gradient import rule_gradient


def percentile(name: str, value: Any) -> float:
    """A percentile in [0, 100]."""
    try:
        return number_in(0.0, 100.0)(name, value)
    except ValueError:
        raise ValueError(f"{name} is a percentile in [0, 100], got {value!r}") from None


@register
class RectGrad(Attribution):
    """Rectified Gradient (Kim et al. 2019, eq. 5): at every ReLU, the gradient passes only
    where the importance a * g exceeds tau, the ``q``-th percentile of a * g over the layer
    for that sample (default q = 98). The map is x * (modified gradient), as in the paper."""

    name = "rectgrad"
    reference = "Kim et al. 2019, eq. 5"
    low_precision = (torch.float16,)  # others: far off the float32 map (test_reliability)
    multi_input = True
    options = {"q": Option(98.0, percentile, "percentile threshold of a * g per layer")}

    def _attribute(self, inputs: tuple[Tensor, ...], target: Tensor, q: float,
                   additional_forward_args: tuple = ()) -> tuple[Tensor, ...]:
        rule = NonlinearityRules(rectgrad_composite(q))
        grads = rule_gradient(self, rule, inputs, target, additional_forward_args)[0]
        return tuple(g * x for g, x in zip(grads, inputs))
