"""Gradient x Sign-of-Input, GxSI (paper 01, eq. 13)."""

from __future__ import annotations

from torch import Tensor

from ..base import Attribution, register, target_gradient


@register
class GradientXSignOfInput(Attribution):
    """Gradient x Sign-of-Input, GxSI (paper 01, eq. 13): sign(x) * d f_t / d x.

    The gradient is the signed gradient of the target logit (not its absolute value).
    """

    name = "gxsi"
    reference = "paper 01, eq. 13"
    multi_input = True

    def _attribute(self, inputs: tuple[Tensor, ...], target: Tensor,
                   additional_forward_args: tuple = ()) -> tuple[Tensor, ...]:
        grads, _ = target_gradient(self.forward, inputs, target, additional_forward_args)
        return tuple(g * x.sign() for g, x in zip(grads, inputs))
