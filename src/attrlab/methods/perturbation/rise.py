"""RISE (Petsiuk et al. 2018): randomised input sampling for explanation."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from ...core.perturbation import perturbed_outputs, rise_grids, rise_masks
from ..base import (
    Attribution,
    Option,
    generator_or_none,
    number_in,
    positive_int,
    register,
)
from .feature_ablation import BATCH, row_forward


@register
class Rise(Attribution):
    """RISE (Petsiuk et al. 2018, eq. 6): S_c = 1 / (N p) sum_i P_c(x * M_i) M_i, P_c the
    softmax probability of the target class and M_i random smooth masks
    (:func:`~attrlab.core.perturbation.rise_masks`: binary ``cells`` x ``cells`` grids kept with
    probability ``p``, bilinearly upsampled with a random shift).

    Defaults as TorchRay: 8,000 masks, 7 cells, p = 0.5 (the authors' notebook: 6,000, 8,
    0.1). The masks are drawn from ``generator`` in chunks of ``internal_batch_size // N``
    masks and never stored beyond a chunk (the authors' code keeps every mask as float64);
    the same masks serve every sample of the batch (and every class), so a sample's map does
    not depend on the batch it is in. Upsampling is torch's bilinear (``align_corners=False``,
    border clamped) where the authors use scikit-image's ``resize`` with reflect padding.
    The 1/(N p) normalisation is the authors' single-image class (their batched class omits it).
    """

    name = "rise"
    reference = "Petsiuk et al. 2018, eq. 6"
    signed = False
    random = True
    input_kinds = ("image",)
    options = {
        "n_masks": Option(8000, positive_int, "number of random masks N"),
        "cells": Option(7, positive_int, "grid size s of the binary masks"),
        "p": Option(0.5, number_in(0.0, 1.0, lo_open=True), "probability that a cell is kept"),
        "internal_batch_size": BATCH,
        "generator": Option(None, generator_or_none, "torch.Generator of the masks (None: a "
                            "fresh one seeded with 0)"),
    }

    @classmethod
    def cost(cls, n_masks: int = 8000, **options: Any) -> float:
        return float(n_masks)

    def _attribute(self, inputs: Tensor, target: Tensor, n_masks: int, cells: int, p: float,
                   internal_batch_size: int, generator: Any,
                   additional_forward_args: tuple = ()) -> Tensor:
        if inputs.dim() != 4:
            raise ValueError(f"rise needs image inputs (N, C, H, W); got shape "
                             f"{tuple(inputs.shape)}")
        n, dev = inputs.shape[0], inputs.device
        size = tuple(inputs.shape[2:])
        if cells > min(size):
            raise ValueError(f"cells={cells} is larger than the image ({size[0]}x{size[1]})")
        forward = row_forward(self, additional_forward_args, n)
        zero = torch.zeros_like(inputs)
        per_chunk = max(1, internal_batch_size // n)
        saliency = torch.zeros(n, *size, dtype=inputs.dtype, device=dev)
        grids, shifts = rise_grids(n_masks, size, cells, p, generator)
        for lo in range(0, n_masks, per_chunk):
            k = min(per_chunk, n_masks - lo)
            masks = rise_masks(grids[lo:lo + k], shifts[lo:lo + k], size, dev,
                               inputs.dtype)  # (k, 1, H, W)
            sample_of_row = torch.arange(n, device=dev).repeat(k)  # row j * n + i
            probs = perturbed_outputs(forward, inputs, zero, sample_of_row,
                                      lambda r, m=masks: m[r // n], target, k * n)
            saliency += torch.einsum("kn,khw->nhw", probs.view(k, n).to(inputs.dtype),
                                     masks[:, 0])
        return (saliency / (n_masks * p)).unsqueeze(1).expand_as(inputs).clone()
