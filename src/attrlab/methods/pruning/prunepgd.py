"""PrunePGD (paper 03): L2 projected gradient ascent on the target logit of the pruned network."""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from ...core.activation_masks import pruned_forward
from ...core.checks import select_target
from ..base import Option, number_in, positive_int, register
from .pruned import PrunedNetworkAttribution, reduce_channels


def size_or_none(name: str, value: Any) -> int | None:
    return None if value is None else positive_int(name, value)


@register
class PrunePGD(PrunedNetworkAttribution):
    """PrunePGD (Khakzar et al., paper 03, eq. 3 and section 4.1): in the pruned network (as
    PruneGrad's), the perturbation delta maximising the target logit f_p(x + delta) subject to
    ||delta||_2 <= ``eps``, found by ``iterations`` steps of L2 projected gradient ascent from
    delta = 0: delta <- Proj(delta + ``step`` * g / ||g||_2), g = grad f_p(x + delta), per
    sample. The perturbation is the map (channel-reduced as PruneGrad's).

    The paper gives 20 iterations, step 0.01 and bound 0.1 without an image size. They apply
    as given, in the model's input scale (normalised inputs), over each sample's whole input;
    ``scale_to=S`` reads them as given for S x S images instead and multiplies eps and step by
    sqrt(H * W) / S, which keeps the per-pixel root-mean-square of the bound (for 32 px inputs
    and S = 224: a factor 1/7). The masks are those of x (the pruned network is fixed).
    """

    name = "prunepgd"
    default_set = False  # its pruning percentage is calibrated on data first
    options = {
        "iterations": Option(20, positive_int, "PGD steps"),
        "step": Option(0.01, number_in(0.0, math.inf, lo_open=True), "L2 step length"),
        "eps": Option(0.1, number_in(0.0, math.inf, lo_open=True), "L2 bound of delta"),
        "scale_to": Option(None, size_or_none, "image side the step and bound are given for"),
        "prune_step": Option(1.0, number_in(0.0, 100.0, lo_open=True),
                             "iterative calibration step in %"),
    }

    @classmethod
    def cost(cls, iterations: int = 20, calibration: str = "fit", prune_step: float = 1.0,
             percentage: Any = None, **options: Any) -> float:
        return 1.0 + iterations + cls._calibration_rows(calibration, prune_step, percentage)

    def _attribute(self, inputs: Tensor, target: Tensor, additional_forward_args: tuple = (),
                   **opts: Any) -> Tensor:
        args = additional_forward_args
        masks = self.masks(inputs, target, args, {**opts, "step": opts["prune_step"]})
        eps, step = opts["eps"], opts["step"]
        if opts["scale_to"] is not None and inputs.dim() >= 3:
            factor = math.sqrt(math.prod(inputs.shape[2:])) / opts["scale_to"]
            eps, step = eps * factor, step * factor
        x = inputs.detach()
        n = x.shape[0]
        delta = torch.zeros_like(x)
        tiny = torch.finfo(x.dtype).tiny
        for _ in range(opts["iterations"]):
            d = delta.requires_grad_(True)
            with torch.enable_grad():
                out = pruned_forward(self.forward, x + d, masks, args, self.name)
                (g,) = torch.autograd.grad(select_target(out, target).sum(), d,
                                           allow_unused=True)
            if g is None:
                break
            with torch.no_grad():
                norm = g.flatten(1).norm(dim=1).clamp(min=tiny).view((n,) + (1,) * (x.dim() - 1))
                delta = delta.detach() + step * g / norm
                size = delta.flatten(1).norm(dim=1).view_as(norm)
                delta = delta * (eps / size.clamp(min=tiny)).clamp(max=1.0)
        return reduce_channels(delta.detach(), opts["channel_reduction"], opts["abs"])
