"""DeepLIFT with the rescale rule (Shrikumar et al. 2017)."""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor, nn

from ...core.rules import Composite, NonlinearityRules, deeplift_composite
from ..base import Attribution, Option, number_in, register
from ..gradient.integrated_gradients import BASELINES, BaselineMixin
from .rule_gradient import rule_gradient


@register
class DeepLift(BaselineMixin, Attribution):
    """DeepLIFT with the rescale rule (Shrikumar et al. 2017, eqs. 1-3 and section 3.5.1):
    attributions (x - x') * m, m the chain of multipliers (f(x) - f(x'))/(x - x') through every
    elementwise nonlinearity; max-pooling uses the cross-maximum rule that Captum uses.

    Inputs and baselines go through the model as one batch [x; x'] (the model must keep the
    batch in dimension 0 and not mix samples, e.g. eval-mode BatchNorm). Summation-to-delta
    holds, sum(attributions) = f_t(x) - f_t(x'), when every nonlinearity has an exact rule.

    ``composite`` replaces the rules (default :func:`~attrlab.core.rules.deeplift_composite`:
    rescale for elementwise functions, the max-pool rule, a path-averaged Jacobian for softmax
    and the Shapley split for products of two activations; fused RNNs/attention and
    per-sample normalisations are refused with a ``ValueError``).
    """

    name = "deeplift"
    reference = "Shrikumar et al. 2017"

    options = {
        "eps": Option(1e-10, number_in(0.0, math.inf), "|x - x'| below which the ordinary "
                      "gradient is used"),
        "baselines": BASELINES,
    }

    def __init__(self, model: nn.Module, composite: Composite | None = None,
                 **options: Any) -> None:
        super().__init__(model, **options)
        self.composite = composite
        self.who = self.name

    @classmethod
    def cost(cls, **options: Any) -> float:
        return 2.0  # inputs and baselines in one batch

    def _attribute(self, inputs: Tensor, target: Tensor, baselines: Any, eps: float) -> Tensor:
        base = self._baselines(inputs, baselines).expand_as(inputs)
        both = torch.cat([inputs, base])
        composite = deeplift_composite(eps, who=self.who) if self.composite is None else self.composite
        grad, _ = rule_gradient(self, NonlinearityRules(composite), both,
                                target.repeat(2))
        return (inputs - base) * grad[: inputs.shape[0]]
