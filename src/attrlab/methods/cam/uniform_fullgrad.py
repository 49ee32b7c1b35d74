"""Uniform FullGrad, UFG (paper 04, eq. 4)."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from ..base import Attribution, register
from .fullgrad import _bias_gradients


@register
class UniformFullGrad(Attribution):
    """Uniform FullGrad, UFG (paper 04, eq. 4): x * grad_x f + (sum_l 1^T v_l / dim(x)) 1,
    i.e. each layer's bias-gradient total (every affine layer with a bias, including Linear
    layers and BatchNorm's implied bias) is spread uniformly over all dim(x) input entries.
    The map is signed and sums exactly to f_t(x) for piecewise-linear networks."""

    name = "ufg"
    reference = "paper 04, eq. 4"

    def __init__(self, model: nn.Module, **options: Any) -> None:
        super().__init__(model, **options)
        self.require_module()

    def _attribute(self, inputs: Tensor, target: Tensor,
                   additional_forward_args: tuple = ()) -> Tensor:
        grad_x, pairs, _ = _bias_gradients(self, inputs, target, additional_forward_args)
        # 1^T (g_l * b_l) per sample = sum_c b_c sum_positions g_l[c]: no full-size product
        total = torch.zeros(inputs.shape[0], dtype=inputs.dtype, device=inputs.device)
        for g, b in pairs:
            total = total + (g.flatten(2).sum(2) if g.dim() > 2 else g) @ b
        per_entry = (total / inputs[0].numel()).view((-1,) + (1,) * (inputs.dim() - 1))
        return grad_x * inputs + per_entry
