"""DeepLIFT with the rescale rule (Shrikumar et al. 2017)."""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor, nn

from ...core.rules import Composite, NonlinearityRules, deeplift_composite
from ..base import Attribution, Option, expand_args, number_in, register
from ..gradient.integrated_gradients import BASELINES, MULTIPLY_BY_INPUTS, BaselineMixin
from .rule_gradient import rule_gradient


@register
class DeepLift(BaselineMixin, Attribution):
    """DeepLIFT with the rescale rule (Shrikumar et al. 2017, eqs. 1-3 and section 3.5.1):
    attributions (x - x') * m, m the chain of multipliers (f(x) - f(x'))/(x - x') through every
    elementwise nonlinearity; max-pooling uses the cross-maximum rule that Captum uses.

    Inputs and baselines go through the model as one batch [x; x'] (the model must keep the
    batch in dimension 0 and not mix samples, e.g. eval-mode BatchNorm). Summation-to-delta
    holds, sum(attributions) = f_t(x) - f_t(x'), when every nonlinearity has an exact rule.
    Tuple inputs (with a tuple of baselines) go through as one [x_k; x'_k] batch each, and
    per-sample ``additional_forward_args`` are repeated to match. ``multiply_by_inputs=False``
    returns the multipliers m themselves (Captum's flag).

    ``composite`` replaces the rules (default :func:`~attrlab.core.rules.deeplift_composite`:
    rescale for elementwise functions, the max-pool rule, a path-averaged Jacobian for softmax
    and the Shapley split for products of two activations; fused RNNs/attention and
    per-sample normalisations are refused with a ``ValueError``).
    """

    name = "deeplift"
    reference = "Shrikumar et al. 2017"
    multi_input = True

    options = {
        "eps": Option(1e-10, number_in(0.0, math.inf), "|x - x'| below which the ordinary "
                      "gradient is used"),
        "baselines": BASELINES,
        "multiply_by_inputs": MULTIPLY_BY_INPUTS,
    }

    def __init__(self, model: nn.Module, composite: Composite | None = None,
                 **options: Any) -> None:
        super().__init__(model, **options)
        self.composite = composite
        self.who = self.name

    @classmethod
    def cost(cls, **options: Any) -> float:
        return 2.0  # inputs and baselines in one batch

    def _attribute(self, inputs: tuple[Tensor, ...], target: Tensor, baselines: Any, eps: float,
                   multiply_by_inputs: bool, additional_forward_args: tuple = ()
                   ) -> tuple[Tensor, ...]:
        bases = tuple(b.expand_as(x) for b, x in zip(self._baselines(inputs, baselines), inputs))
        n = inputs[0].shape[0]
        both = tuple(torch.cat([x, b]) for x, b in zip(inputs, bases))
        args = expand_args(additional_forward_args, n, 2, interleave=False)
        composite = deeplift_composite(eps, who=self.who) if self.composite is None else self.composite
        grads, _ = rule_gradient(self, NonlinearityRules(composite), both,
                                 target.repeat(2), args)
        if not multiply_by_inputs:  # the multipliers m (Captum's multiply_by_inputs=False)
            return tuple(g[:n] for g in grads)
        return tuple((x - b) * g[:n] for x, b, g in zip(inputs, bases, grads))
