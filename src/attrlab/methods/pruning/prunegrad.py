"""PruneGrad (paper 03): the input gradient of the target logit in the pruned network."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from ...core.activation_masks import pruned_forward
from ...core.checks import select_target
from ..base import register
from .pruned import PrunedNetworkAttribution, reduce_channels


@register
class PruneGrad(PrunedNetworkAttribution):
    """PruneGrad (Khakzar et al., paper 03, section 3, eq. 3 linearised): prune the ReLU
    activations of least importance |a * dy/da| (one global threshold per sample over all
    layers, percentage calibrated by :meth:`fit`), then the map is grad_x f_p(x), the input
    gradient of the target logit of the pruned network (not times x). With
    ``channel_reduction="absmax"`` (the authors') each pixel gets the channel value of largest
    magnitude, broadcast over the channels. Costs two forward+backward passes."""

    name = "prunegrad"
    default_set = False  # its pruning percentage is calibrated on data first

    @classmethod
    def cost(cls, calibration: str = "fit", step: float = 1.0, percentage: Any = None,
             **options: Any) -> float:
        return 2.0 + cls._calibration_rows(calibration, step, percentage)

    def _attribute(self, inputs: Tensor, target: Tensor, additional_forward_args: tuple = (),
                   **opts: Any) -> Tensor:
        args = additional_forward_args
        masks = self.masks(inputs, target, args, opts)
        x = inputs.detach().requires_grad_(True)
        with torch.enable_grad():
            out = pruned_forward(self.forward, x, masks, args, self.name)
            (grad,) = torch.autograd.grad(select_target(out, target).sum(), x, allow_unused=True)
        grad = torch.zeros_like(x) if grad is None else grad
        return reduce_channels(grad, opts["channel_reduction"], opts["abs"])
