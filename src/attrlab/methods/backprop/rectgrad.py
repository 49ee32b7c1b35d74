"""Rectified Gradient (Kim et al. 2019)."""

from __future__ import annotations

from torch import Tensor, nn

from ...core.rules import NonlinearityRules, rectgrad_composite
from ..base import Attribution, register
from .rule_gradient import rule_gradient


@register
class RectGrad(Attribution):
    """Rectified Gradient (Kim et al. 2019, eq. 5): at every ReLU, the gradient passes only
    where the importance a * g exceeds tau, the ``q``-th percentile of a * g over the layer
    for that sample (default q = 98). The map is x * (modified gradient), as in the paper."""

    name = "rectgrad"

    def __init__(self, model: nn.Module, q: float = 98.0) -> None:
        super().__init__(model)
        if not 0 <= q <= 100:
            raise ValueError(f"q is a percentile in [0, 100], got {q}")
        self.q = q

    def _attribute(self, inputs: Tensor, target: Tensor, q: float | None = None) -> Tensor:
        rule = NonlinearityRules(rectgrad_composite(self.q if q is None else q))
        return rule_gradient(self, rule, inputs, target)[0] * inputs
