"""Occlusion (Zeiler & Fergus 2014): a sliding window of baseline values."""

from __future__ import annotations

import math
import numbers
from typing import Any, Sequence

import torch
from torch import Tensor

from ...core.perturbation import perturbed_outputs, window_grid, window_masks
from ..base import Attribution, Option, register
from .feature_ablation import (
    BASELINES,
    BATCH,
    REFERENCE_SHAPE,
    baselines_like,
    logits,
    row_forward,
    target_outputs,
)


def int_or_tuple(name: str, value: Any) -> int | tuple[int, ...] | None:
    """None, a positive int or a tuple of positive ints."""
    if value is None:
        return None
    vals = value if isinstance(value, tuple) else (value,)
    if not vals or any(isinstance(v, bool) or not isinstance(v, numbers.Integral) or v < 1
                       for v in vals):
        raise ValueError(f"{name} must be a positive int or a tuple of positive ints, "
                         f"got {value!r}")
    return tuple(int(v) for v in vals) if isinstance(value, tuple) else int(value)


def window_shape(sample_shape: Sequence[int], window: int | tuple[int, ...] | None,
                 strides: int | tuple[int, ...] | None
                 ) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """Window and strides over every non-batch dimension.

    An int window k is (C, k, k) for (C, H, W) images (all channels at once), (k, E) for
    (L, E) sequences, (k,) for flat inputs; None is k = max(1, side // 8) for the shorter image
    side (sequence length, flat size). An int stride applies to every dimension (as Captum);
    None is half the window, at least 1, per dimension.
    """
    shape = tuple(sample_shape)
    if window is None:
        sides = shape[1:] if len(shape) == 3 else shape[:1]
        window = max(1, min(sides) // 8)
    if isinstance(window, int):
        window = (shape[0], window, window) if len(shape) == 3 else \
            (window, *shape[1:]) if len(shape) >= 2 else (window,)
    if strides is None:
        strides = tuple(max(1, w // 2) for w in window)
    if isinstance(strides, int):
        strides = (strides,) * len(shape)
    if len(window) != len(shape) or len(strides) != len(shape):
        raise ValueError(f"sliding_window_shapes {window} and strides {strides} must have one "
                         f"entry per input dimension {shape}")
    return window, strides


@register
class Occlusion(Attribution):
    """Occlusion (Zeiler & Fergus 2014, sec. 4.2), Captum's ``Occlusion`` exactly: every
    window position w replaces the window by the baseline; each entry gets the mean of
    f_t(x) - f_t(x with window w occluded) over the windows covering it.

    Windows start at 0, s, 2s, ... along each dimension, ``ceil((d - k) / s) + 1`` of them (the
    last one cut at the border, so every entry is covered), as Captum. Defaults: a k x k
    window over all channels, k = max(1, side // 8) for the shorter image side (28 px at
    224 px, 4 px at 32 px), stride half the window (Captum has no default window and stride 1).
    Outputs are raw model outputs (logits), as Captum.
    """

    name = "occlusion"
    reference = "Zeiler & Fergus 2014, sec. 4.2; Captum Occlusion"
    options = {
        "sliding_window_shapes": Option(None, int_or_tuple, "window (int k: k x k over all "
                                        "channels; one size per input dimension; None: an "
                                        "eighth of the image side)"),
        "strides": Option(None, int_or_tuple, "step of the window (int: every dimension; "
                          "None: half the window)"),
        "baselines": BASELINES,
        "internal_batch_size": BATCH,
    }

    @classmethod
    def cost(cls, sliding_window_shapes: Any = None, strides: Any = None,
             sample_shape: Sequence[int] = REFERENCE_SHAPE, **options: Any) -> float:
        """1 + the number of window positions, at ``sample_shape``."""
        window, step = window_shape(sample_shape, sliding_window_shapes, strides)
        return 1.0 + math.prod(len(s) for s in window_grid(sample_shape, window, step))

    def _attribute(self, inputs: Tensor, target: Tensor, sliding_window_shapes: Any,
                   strides: Any, baselines: Any, internal_batch_size: int,
                   additional_forward_args: tuple = ()) -> Tensor:
        n, shape = inputs.shape[0], tuple(inputs.shape[1:])
        window, step = window_shape(shape, sliding_window_shapes, strides)
        starts = window_grid(shape, window, step)
        n_windows = math.prod(len(s) for s in starts)
        base = baselines_like(inputs, baselines)
        dev = inputs.device
        sample_of_row = torch.arange(n, device=dev).repeat_interleave(n_windows)

        def keep(r: Tensor) -> Tensor:
            return ~window_masks(shape, window, starts, r % n_windows)

        out = perturbed_outputs(row_forward(self, additional_forward_args, n), inputs, base,
                                sample_of_row, keep, target, internal_batch_size, logits)
        diffs = (target_outputs(self, inputs, target, additional_forward_args).repeat_interleave(
            n_windows) - out).to(inputs.dtype).view(n, n_windows)
        total = torch.zeros_like(inputs)
        # accumulate diff_w * window_w, a chunk of windows at a time
        step_w = max(1, internal_batch_size // n)
        for lo in range(0, n_windows, step_w):
            w = torch.arange(lo, min(lo + step_w, n_windows), device=dev)
            masks = window_masks(shape, window, starts, w).to(inputs.dtype)  # (w, *shape)
            total += torch.tensordot(diffs[:, lo:lo + len(w)], masks, dims=1)
        # windows covering each entry: a product over dimensions
        count = torch.ones((), dtype=inputs.dtype, device=dev)
        for dim, (d, k, s) in enumerate(zip(shape, window, starts)):
            c = torch.arange(d, device=dev).view(-1, 1)
            lo_ = s.to(dev).view(1, -1)
            per = ((c >= lo_) & (c < lo_ + k)).sum(1).to(inputs.dtype)
            count = count * per.view([d if i == dim else 1 for i in range(len(shape))])
        return total / count
