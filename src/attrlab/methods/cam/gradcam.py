"""Grad-CAM (Selvaraju et al. 2017)."""

from __future__ import annotations

import math
from typing import Any, Callable

import torch.nn.functional as F
from torch import Tensor, nn

from ...core.checks import get_module
from ..base import Attribution, Option, as_args, boolean, register
from ..layer.base import (
    feature_block_layer,
    last_conv_name,
    layer_gradients,
    module_name,
)
from ..layer.gradcam import gradcam_map

__all__ = ["RESHAPE_TRANSFORMS", "GradCAM", "last_conv_name", "upsample_to"]


def tokens_to_map(t: Tensor) -> Tensor:
    """ViT tokens (N, T, C) -> (N, C, s, s): the last s*s tokens (s = floor(sqrt(T))) on their
    grid, the leading class/distillation/register tokens dropped (pytorch-grad-cam's
    ``reshape_transform`` for ViT)."""
    if t.dim() != 3:
        raise ValueError(f"reshape_transform='vit' expects (N, tokens, C), got {tuple(t.shape)}")
    side = math.isqrt(t.shape[1])
    extra = t.shape[1] - side * side
    if side < 1 or extra > 8:
        raise ValueError(f"{t.shape[1]} tokens do not form a square grid (+ up to 8 extra "
                         "tokens); pass reshape_transform as a function")
    return t[:, extra:].reshape(t.shape[0], side, side, t.shape[2]).permute(0, 3, 1, 2)


def channels_last_to_map(t: Tensor) -> Tensor:
    """Swin activations (N, h, w, C) -> (N, C, h, w)."""
    if t.dim() != 4:
        raise ValueError("reshape_transform='channels_last' expects (N, h, w, C), got "
                         f"{tuple(t.shape)}")
    return t.permute(0, 3, 1, 2)


#: Named reshape transforms for token models (``GradCAM(..., reshape_transform="vit")``).
RESHAPE_TRANSFORMS: dict[str, Callable[[Tensor], Tensor]] = {
    "vit": tokens_to_map, "channels_last": channels_last_to_map, "swin": channels_last_to_map}


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

    ``layer`` is a module or its dotted name (``"layer4"``). By default (``layer=None``) it is
    the output of the last feature block (:func:`~attrlab.methods.layer.base.
    feature_block_layer`, found on the first call and kept in ``layer_name``): ``layer4`` on a
    ResNet (after the residual add, as pytorch-grad-cam's ``model.layer4[-1]``), the last conv
    block's ReLU on a plain CNN. Vision transformers are refused unless ``reshape_transform``
    is given: ``"vit"`` ((N, 1 + h*w, C) tokens -> (N, C, h, w)), ``"channels_last"``/``"swin"``
    ((N, h, w, C) -> (N, C, h, w)) or any function; activations and gradients both pass
    through it (as pytorch-grad-cam), and the default layer is then the first norm of the last
    attention block. :meth:`layer_attribute` returns
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
                 reshape_transform: str | Callable[[Tensor], Tensor] | None = None,
                 **options: Any) -> None:
        super().__init__(model, **options)
        self.require_module()
        if isinstance(reshape_transform, str):
            if reshape_transform not in RESHAPE_TRANSFORMS:
                raise ValueError(f"reshape_transform must be a function or one of "
                                 f"{', '.join(RESHAPE_TRANSFORMS)}; got {reshape_transform!r}")
            reshape_transform = RESHAPE_TRANSFORMS[reshape_transform]
        elif reshape_transform is not None and not callable(reshape_transform):
            raise ValueError("reshape_transform must be a function, a name or None")
        self.reshape_transform = reshape_transform
        self.layer: nn.Module | None = None
        self.layer_name: str | None = None
        if layer is not None:
            self.layer = get_module(self.model, layer)
            self.layer_name = (layer if isinstance(layer, str)
                               else module_name(self.model, self.layer))
        self.signed = not self.defaults["relu_attributions"]

    def resolve_layer(self, inputs: Tensor, additional_forward_args: tuple = ()) -> str:
        """The layer's name; for ``layer=None`` found once, by one forward pass of
        ``inputs[:1]`` (see :func:`~attrlab.methods.layer.base.feature_block_layer`)."""
        if self.layer is None:
            x = inputs[:1]
            args = tuple(a[:1] if isinstance(a, Tensor) and a.dim() and
                         a.shape[0] == inputs.shape[0] else a for a in additional_forward_args)
            name = feature_block_layer(self.model, lambda: self.forward(x, *args),
                                       token_layout=self.reshape_transform is not None)
            self.layer, self.layer_name = get_module(self.model, name), name
        return self.layer_name

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
        self.resolve_layer(inputs, additional_forward_args)
        grad, acts = layer_gradients(self, self.layer, self.layer_name, inputs, target,
                                     attribute_to_layer_input, args=additional_forward_args)
        if not isinstance(acts, Tensor):
            where = "input" if attribute_to_layer_input else "output"
            raise ValueError(f"Grad-CAM: the {where} of layer {self.layer_name!r} is a "
                             f"{type(acts).__name__}, not one tensor; choose a submodule that "
                             "returns a tensor, or use attrlab.methods.layer.LayerGradCam "
                             "(one map per tensor)")
        if self.reshape_transform is not None:
            acts, grad = self.reshape_transform(acts), self.reshape_transform(grad)
        cam = gradcam_map(acts, grad, relu_attributions)
        if _layer:
            return cam
        if cam.dim() == 2:  # a (N, C) layer: one number per sample
            return cam.view(cam.shape + (1,) * (inputs.dim() - 2)).expand_as(inputs)
        return upsample_to(cam, inputs).expand_as(inputs)
