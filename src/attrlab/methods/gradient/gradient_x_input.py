"""Gradient x Input (Shrikumar et al. 2016)."""

from __future__ import annotations

from torch import Tensor

from ..base import Attribution, register, target_gradient


@register
class GradientXInput(Attribution):
    """Gradient x Input (Shrikumar et al. 2016): x * d f_t / d x.

    On a no-implicit-bias (NIB) net, sum_i x_i df_t/dx_i = f_t(x) (paper 01, eq. 8).
    """

    name = "gxi"
    reference = "Shrikumar et al. 2016"

    def _attribute(self, inputs: Tensor, target: Tensor) -> Tensor:
        grad, _ = target_gradient(self.forward, inputs, target)
        return grad * inputs
