"""Layer DeepLIFT (Captum's ``LayerDeepLift``)."""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor, nn

from ...core.rules import Composite, NonlinearityRules, deeplift_composite
from ..base import Option, number_in
from .base import (
    BASELINES,
    MULTIPLY,
    LayerAttribution,
    LayerBaselineMixin,
    batch_first,
    layer_baselines,
    map_leaves,
    register,
)


@register
class LayerDeepLift(LayerBaselineMixin, LayerAttribution):
    """DeepLIFT with the rescale rule (Shrikumar et al. 2017) at a layer: with a = A(x) and
    a' = A(x') the layer's values for the inputs and the baselines (given in input space),
    (a - a') * m, m the chain of DeepLIFT multipliers from the output back to the layer
    (``multiply_by_inputs=False``: m itself), as Captum's ``LayerDeepLift``.

    Inputs and baselines go through the model as one batch [x; x'] with the rules of
    :class:`~attrlab.methods.DeepLift` (``composite``, default
    :func:`~attrlab.core.rules.deeplift_composite`: every elementwise nonlinearity, max-pooling
    with the cross-maximum rule, softmax, products; reused and in-place ReLUs are fine). The
    rules act only after the layer (only there do tensors depend on the swapped activations),
    so a fused ``nn.LSTM`` before the layer is fine and one after it is refused, as by
    ``deeplift``. Summation-to-delta, sum(attributions) = f_t(x) - f_t(x'), holds when
    everything from the inputs to the output passes through the layer.
    """

    name = "layer_deeplift"
    reference = "Shrikumar et al. 2017 (at a layer); Captum LayerDeepLift"
    options = {
        "eps": Option(1e-10, number_in(0.0, math.inf), "|a - a'| below which the ordinary "
                      "gradient is used"),
        "baselines": BASELINES,
        "multiply_by_inputs": MULTIPLY,
    }

    def __init__(self, model: nn.Module, layer: str | nn.Module,
                 composite: Composite | None = None, **options: Any) -> None:
        super().__init__(model, layer, **options)
        self.composite = composite

    @classmethod
    def cost(cls, **options: Any) -> float:
        return 2.0  # inputs and baselines in one batch

    def _attribute(self, inputs: Tensor, target: Tensor, baselines: Any, eps: float,
                   multiply_by_inputs: bool, attribute_to_layer_input: bool) -> Any:
        n = inputs.shape[0]
        base = layer_baselines(self.model, inputs, baselines)
        composite = (deeplift_composite(eps, who=self.name) if self.composite is None
                     else self.composite)
        grads, acts = self.gradients(torch.cat([inputs, base]), target.repeat(2),
                                     attribute_to_layer_input,
                                     mode=NonlinearityRules(composite))
        batch_first(acts, 2 * n, self.layer_name,
                    "input" if attribute_to_layer_input else "output", self.name)
        if multiply_by_inputs:
            return map_leaves(lambda g, a: (a[:n] - a[n:]) * g[:n], grads, acts)
        return map_leaves(lambda g: g[:n], grads)
