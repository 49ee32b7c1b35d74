"""Layer saliency: the gradient of the target output with respect to a layer's activations."""

from __future__ import annotations

from typing import Any

from torch import Tensor, nn

from ..base import Option, boolean
from .base import LayerAttribution, map_leaves, register


@register
class LayerSaliency(LayerAttribution):
    """Saliency at a layer (Simonyan et al. 2014, at the layer's activations A instead of the
    input): |d f_t / d A| (``abs=False``: the signed gradient, which is Captum's
    ``LayerGradientXActivation(multiply_by_inputs=False)``)."""

    name = "layer_saliency"
    signed = False
    reference = "Simonyan et al. 2014 (at a layer)"
    options = {"abs": Option(True, boolean, "absolute value of the gradient")}

    def __init__(self, model: nn.Module, layer: str | nn.Module, **options: Any) -> None:
        super().__init__(model, layer, **options)
        self.signed = not self.defaults["abs"]

    def _attribute(self, inputs: Tensor, target: Tensor, abs: bool,
                   attribute_to_layer_input: bool) -> Any:
        grads, _ = self.gradients(inputs, target, attribute_to_layer_input)
        return map_leaves(lambda g: g.abs(), grads) if abs else grads
