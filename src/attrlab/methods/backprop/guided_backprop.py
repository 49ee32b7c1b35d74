"""Guided Backpropagation (Springenberg et al. 2014)."""

from __future__ import annotations

from torch import Tensor, nn

from ...core.rules import Composite, NonlinearityRules, gbp_composite
from ..base import Attribution, register
from .rule_gradient import rule_gradient


@register
class GuidedBackprop(Attribution):
    """Guided Backpropagation (Springenberg et al. 2014, eq. in section 3.4): at every ReLU
    the backward signal is R_l = (x_l > 0) * (R_{l+1} > 0) * R_{l+1}.

    ``composite`` replaces the rules (default :func:`~attrlab.core.rules.gbp_composite`:
    :class:`~attrlab.core.rules.Guided` at every ReLU; fused RNNs and attention refused); the
    map is then the gradient under that composite."""

    name = "gbp"
    reference = "Springenberg et al. 2014, section 3.4"
    multi_input = True

    def __init__(self, model: nn.Module, composite: Composite | None = None) -> None:
        super().__init__(model)
        self.composite = gbp_composite() if composite is None else composite

    def _attribute(self, inputs: tuple[Tensor, ...], target: Tensor,
                   additional_forward_args: tuple = ()) -> tuple[Tensor, ...]:
        return rule_gradient(self, NonlinearityRules(self.composite), inputs, target,
                             additional_forward_args)[0]
