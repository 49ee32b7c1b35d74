"""Grad-CAM (Selvaraju et al. 2017)."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ...core.checks import get_module, select_target
from ...core.hooks import capture_outputs
from ..base import Attribution, Option, as_args, boolean, register


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
    """

    name = "gradcam"
    signed = False
    reference = "Selvaraju et al. 2017, eqs. 1-2"
    input_kinds = ("image", "sequence")
    options = {"relu_attributions": Option(True, boolean, "ReLU of the weighted sum (eq. 2)")}

    def __init__(self, model: nn.Module, layer: str | nn.Module | None = None,
                 **options: Any) -> None:
        super().__init__(model, **options)
        self.require_module()
        if layer is None:
            layer = last_conv_name(self.model)
        self.layer = get_module(self.model, layer)
        self.signed = not self.defaults["relu_attributions"]

    def layer_attribute(self, inputs: Tensor, target=None, *, additional_forward_args: Any = None,
                        **options: Any) -> Tensor:
        """The Grad-CAM map at the layer's resolution, shape (N, 1, h, w)."""
        opts = self.resolve_options(options)
        args = as_args(additional_forward_args)
        return self.guarded(inputs, target, lambda x, t: self._attribute(
            x, t, additional_forward_args=args, _layer=True, **opts), additional_forward_args=args)

    def _attribute(self, inputs: Tensor, target: Tensor, relu_attributions: bool,
                   additional_forward_args: tuple = (), _layer: bool = False) -> Tensor:
        with torch.enable_grad(), capture_outputs({"layer": self.layer}) as rec:
            # inputs must require grad: the parameters do not, inside model_guard
            out = self.forward(inputs.detach().requires_grad_(True), *additional_forward_args)
            acts = rec["layer"]
            if len(acts) != 1:
                raise ValueError(f"Grad-CAM layer was called {len(acts)} times in one forward "
                                 "pass; choose a layer that runs once")
            sel = select_target(out, target)
            (grad,) = torch.autograd.grad(sel.sum(), acts[0])
        a = acts[0].detach()
        if a.dim() < 3:
            raise ValueError(f"Grad-CAM needs a layer with spatial maps (N, C, ...); "
                             f"got output shape {tuple(a.shape)}")
        weights = grad.flatten(2).mean(2).view(a.shape[:2] + (1,) * (a.dim() - 2))
        cam = (weights * a).sum(1, keepdim=True)
        if relu_attributions:
            cam = cam.clamp(min=0)
        if _layer:
            return cam
        return upsample_to(cam, inputs).expand_as(inputs)


def last_conv_name(model: nn.Module) -> str:
    """Name of the last Conv module, Grad-CAM's usual layer."""
    names = [n for n, m in model.named_modules() if isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Conv3d))]
    if not names:
        raise ValueError("the model has no convolution; pass layer= explicitly")
    return names[-1]
