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
    multi_input = True

    def _attribute(self, inputs: tuple[Tensor, ...], target: Tensor,
                   additional_forward_args: tuple = ()) -> tuple[Tensor, ...]:
        grads, _ = target_gradient(self.forward, inputs, target, additional_forward_args)
        return tuple(g * x for g, x in zip(grads, inputs))
