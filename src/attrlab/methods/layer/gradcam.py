"""Layer Grad-CAM (Captum's ``LayerGradCam``) and the Grad-CAM map shared with
:class:`~attrlab.methods.GradCAM`."""

from __future__ import annotations

from typing import Any

from torch import Tensor, nn

from ..base import Option, boolean
from .base import LayerAttribution, last_conv_name, map_leaves, register


def gradcam_map(acts: Tensor, grads: Tensor, relu_attributions: bool,
                attr_dim_summation: bool = True) -> Tensor:
    """Grad-CAM (Selvaraju et al. 2017, eqs. 1-2) of activations A (N, C, ...) and their
    gradients: alpha_k = mean over the dimensions after the channel (dim 1) of d f_t / d A^k,
    L = sum_k alpha_k A^k (keepdim: (N, 1, ...)); ReLU of it with ``relu_attributions``.

    As Captum's ``LayerGradCam``: for a 2-D (N, C) layer alpha is the gradient itself (no
    dimension to average), so L = sum_k (d f_t / d A^k) A^k has shape (N, 1);
    ``attr_dim_summation=False`` keeps the per-channel terms alpha_k A^k (shape of A).
    """
    if acts.dim() < 2:
        raise ValueError(f"Grad-CAM needs a layer value with a channel dimension (N, C, ...); "
                         f"got shape {tuple(acts.shape)}")
    if acts.dim() > 2:
        weights = grads.flatten(2).mean(2).view(acts.shape[:2] + (1,) * (acts.dim() - 2))
    else:
        weights = grads
    cam = (weights * acts).sum(1, keepdim=True) if attr_dim_summation else weights * acts
    return cam.clamp(min=0) if relu_attributions else cam


@register
class LayerGradCam(LayerAttribution):
    """Grad-CAM at a layer (Selvaraju et al. 2017, eqs. 1-2), layer-shaped: (N, 1, h, w) for
    a conv layer, (N, 1) for a (N, C) layer (Captum's ``LayerGradCam``; see
    :func:`gradcam_map`), one map per tensor for a layer returning a tuple.

    ``relu_attributions=True`` by default, as attrlab's ``gradcam`` (Captum's default is
    False). ``layer`` defaults to the model's last convolution.
    """

    name = "layer_gradcam"
    signed = False
    reference = "Selvaraju et al. 2017, eqs. 1-2; Captum LayerGradCam"
    options = {
        "relu_attributions": Option(True, boolean, "ReLU of the weighted sum (eq. 2)"),
        "attr_dim_summation": Option(True, boolean, "sum over the channel dimension 1 "
                                                    "(False: per-channel terms)"),
    }

    def __init__(self, model: nn.Module, layer: str | nn.Module | None = None,
                 **options: Any) -> None:
        if layer is None:
            layer = last_conv_name(model)
        super().__init__(model, layer, **options)
        self.signed = not self.defaults["relu_attributions"]

    def _attribute(self, inputs: Tensor, target: Tensor, relu_attributions: bool,
                   attr_dim_summation: bool, attribute_to_layer_input: bool) -> Any:
        grads, acts = self.gradients(inputs, target, attribute_to_layer_input)
        return map_leaves(lambda a, g: gradcam_map(a, g, relu_attributions, attr_dim_summation),
                          acts, grads)
