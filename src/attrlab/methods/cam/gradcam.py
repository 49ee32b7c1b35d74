"""Grad-CAM (Selvaraju et al. 2017)."""

from __future__ import annotations

from typing import Any

import torch.nn.functional as F
from torch import Tensor, nn

from ...core.checks import get_module
from ..base import Attribution, Option, as_args, boolean, register
from ..layer.base import last_conv_name, layer_gradients, module_name
from ..layer.gradcam import gradcam_map

__all__ = ["GradCAM", "last_conv_name", "upsample_to"]


def upsample_to(maps: Tensor, inputs: Tensor, align_corners: bool = False) -> Tensor:
    """Bilinearly (linearly for 1-D) resize (N, 1, h, w) maps to the input's spatial size."""
    size = inputs.shape[2:]
    if maps.shape[2:] == size:
        return maps
    mode = {1: "linear", 2: "bilinear", 3: "trilinear"}[len(size)]
    return F.interpolate(maps, size=size, mode=mode, align_corners=align_corners)


@register
class GradCAM(Attribution):
    """Grad-CAM (Selvaraju et al. 2017, eqs. 1-2): with A^k the maps of ``layer``,
    alpha_k = mean_{ij} d f_t / d A^k_ij and L = ReLU(sum_k alpha_k A^k).

    ``layer`` is a module or its dotted name (``"layer4"``). :meth:`layer_attribute` returns
    the layer-shaped map (N, 1, h, w) (Captum's ``LayerGradCam``); :meth:`attribute` upsamples
    it bilinearly to the input size and broadcasts it over the input channels.
    ``relu_attributions=False`` keeps the signed map (Captum's default).
    ``attribute_to_layer_input=True`` uses the layer's input instead of its output.

    A 2-D (N, C) layer (after pooling) has no spatial dimension to average: as Captum, alpha
    is the gradient itself and the map is sum_k (d f_t / d A^k) A^k, shape (N, 1); the input
    map is that number per sample, broadcast. A layer returning a tuple is refused (use
    ``attrlab.methods.layer.LayerGradCam``, which gives one map per tensor).
    """

    name = "gradcam"
    signed = False
    reference = "Selvaraju et al. 2017, eqs. 1-2"
    input_kinds = ("image", "sequence")
    options = {"relu_attributions": Option(True, boolean, "ReLU of the weighted sum (eq. 2)"),
               "attribute_to_layer_input": Option(False, boolean, "Grad-CAM of the layer's "
                                                  "input instead of its output")}

    def __init__(self, model: nn.Module, layer: str | nn.Module | None = None,
                 **options: Any) -> None:
        super().__init__(model, **options)
        self.require_module()
        if layer is None:
            layer = last_conv_name(self.model)
        self.layer = get_module(self.model, layer)
        self.layer_name = layer if isinstance(layer, str) else module_name(self.model, self.layer)
        self.signed = not self.defaults["relu_attributions"]

    def layer_attribute(self, inputs: Tensor, target=None, *, additional_forward_args: Any = None,
                        **options: Any) -> Tensor:
        """The Grad-CAM map at the layer's resolution, shape (N, 1, h, w) ((N, 1) for a 2-D
        layer)."""
        opts = self.resolve_options(options)
        args = as_args(additional_forward_args)
        return self.guarded(inputs, target, lambda x, t: self._attribute(
            x, t, additional_forward_args=args, _layer=True, **opts), additional_forward_args=args)

    def _attribute(self, inputs: Tensor, target: Tensor, relu_attributions: bool,
                   attribute_to_layer_input: bool, additional_forward_args: tuple = (),
                   _layer: bool = False) -> Tensor:
        grad, acts = layer_gradients(self, self.layer, self.layer_name, inputs, target,
                                     attribute_to_layer_input, args=additional_forward_args)
        if not isinstance(acts, Tensor):
            where = "input" if attribute_to_layer_input else "output"
            raise ValueError(f"Grad-CAM: the {where} of layer {self.layer_name!r} is a "
                             f"{type(acts).__name__}, not one tensor; choose a submodule that "
                             "returns a tensor, or use attrlab.methods.layer.LayerGradCam "
                             "(one map per tensor)")
        cam = gradcam_map(acts, grad, relu_attributions)
        if _layer:
            return cam
        if cam.dim() == 2:  # a (N, C) layer: one number per sample
            return cam.view(cam.shape + (1,) * (inputs.dim() - 2)).expand_as(inputs)
        return upsample_to(cam, inputs).expand_as(inputs)
