"""Positive-Gradient x Input (paper 01, section 4.2)."""

from __future__ import annotations

from torch import Tensor

from ..base import Attribution, register, target_gradient


@register
class PositiveGradientXInput(Attribution):
    """Positive-Gradient x Input (paper 01, section 4.2): [d f_t / d x]^+ * x."""

    name = "pgxi"
    reference = "paper 01, section 4.2"
    multi_input = True

    def _attribute(self, inputs: tuple[Tensor, ...], target: Tensor,
                   additional_forward_args: tuple = ()) -> tuple[Tensor, ...]:
        grads, _ = target_gradient(self.forward, inputs, target, additional_forward_args)
        return tuple(g.clamp(min=0) * x for g, x in zip(grads, inputs))
