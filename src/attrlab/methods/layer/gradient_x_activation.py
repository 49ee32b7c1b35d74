"""Layer Gradient x Activation (Captum's ``LayerGradientXActivation``)."""

from __future__ import annotations

from typing import Any

from torch import Tensor

from .base import MULTIPLY, LayerAttribution, map_leaves, register


@register
class LayerGradientXActivation(LayerAttribution):
    """Gradient x Activation at a layer (Shrikumar et al. 2016's Gradient x Input with the
    layer's activations A as the input): A * d f_t / d A; with ``multiply_by_inputs=False``
    the layer gradient d f_t / d A itself (Captum's ``LayerGradientXActivation``)."""

    name = "layer_gradient_x_activation"
    reference = "Shrikumar et al. 2016 (at a layer); Captum LayerGradientXActivation"
    options = {"multiply_by_inputs": MULTIPLY}

    def _attribute(self, inputs: Tensor, target: Tensor, multiply_by_inputs: bool,
                   attribute_to_layer_input: bool) -> Any:
        grads, acts = self.gradients(inputs, target, attribute_to_layer_input)
        return map_leaves(lambda g, a: g * a, grads, acts) if multiply_by_inputs else grads
