"""Guided Backpropagation (Springenberg et al. 2014)."""

from __future__ import annotations

from torch import Tensor

from ...core.rules import NonlinearityRules
from ..base import Attribution, register
from .rule_gradient import rule_gradient


@register
class GuidedBackprop(Attribution):
    """Guided Backpropagation (Springenberg et al. 2014, eq. in section 3.4): at every ReLU
    the backward signal is R_l = (x_l > 0) * (R_{l+1} > 0) * R_{l+1}."""

    name = "gbp"
    reference = "Springenberg et al. 2014, section 3.4"
    multi_input = True

    def _attribute(self, inputs: tuple[Tensor, ...], target: Tensor,
                   additional_forward_args: tuple = ()) -> tuple[Tensor, ...]:
        return rule_gradient(self, NonlinearityRules("guided"), inputs, target,
                             additional_forward_args)[0]
