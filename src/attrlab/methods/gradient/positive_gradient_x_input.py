"""Positive-Gradient x Input (paper 01, section 4.2)."""

from __future__ import annotations

from torch import Tensor

from ..base import Attribution, register, target_gradient


@register
class PositiveGradientXInput(Attribution):
    """Positive-Gradient x Input (paper 01, section 4.2): [d f_t / d x]^+ * x."""

    name = "pgxi"
    reference = "paper 01, section 4.2"

    def _attribute(self, inputs: Tensor, target: Tensor) -> Tensor:
        grad, _ = target_gradient(self.forward, inputs, target)
        return grad.clamp(min=0) * inputs
