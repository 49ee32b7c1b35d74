"""Effective Heat Ratios, EHR (paper 02, section 4.5)."""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor, nn

from ...core.hooks import model_guard
from ..base import CurveMetric, register


def box_masks(boxes: Tensor, size: tuple[int, int]) -> Tensor:
    """(N, H, W) bool masks of (N, 4) boxes (x0, y0, x1, y1), upper corner exclusive."""
    h, w = size
    ys = torch.arange(h, device=boxes.device).view(1, h, 1)
    xs = torch.arange(w, device=boxes.device).view(1, 1, w)
    x0, y0, x1, y1 = (boxes[:, i].view(-1, 1, 1) for i in range(4))
    return (ys >= y0) & (ys < y1) & (xs >= x0) & (xs < x1)


def scale_heat(attributions: Tensor) -> Tensor:
    """Heat (N, H, W): the map averaged over channels, min-max scaled to [0, 1] per sample
    (a constant map becomes zeros)."""
    heat = attributions.mean(1) if attributions.dim() == 4 else attributions
    flat = heat.flatten(1)
    lo, hi = flat.min(1).values, flat.max(1).values
    span = (hi - lo).view(-1, *([1] * (heat.dim() - 1)))
    return torch.where(span > 0, (heat - lo.view_as(span)) / torch.where(span > 0, span, 1.0),
                       torch.zeros_like(heat))


def effective_heat_ratios(heat: Tensor, roi: Tensor, quantiles: Tensor,
                          base_threshold: float = 0.1, weight_by_heat: bool = True) -> Tensor:
    """EHR curve (N, K) of heat maps in [0, 1] (N, H, W) and regions of interest (N, H, W):
    points of interest are pixels with heat >= ``base_threshold`` (the rest count as 0); for
    each quantile q, t = min(q-quantile of the points of interest, 0.99 max heat),
    B = {heat >= t} and the ratio is sum of heat in B and the ROI / |B| (with
    ``weight_by_heat``; else |B and ROI| / |B|). A map without points of interest gives 0.
    The input is not modified."""
    flat = heat.flatten(1)
    poi = flat >= base_threshold
    heat0 = torch.where(poi, flat, torch.zeros_like(flat))
    t = torch.nanquantile(torch.where(poi, flat, torch.full_like(flat, math.nan)),
                          quantiles.to(flat), dim=1)  # (K, N); NaN without points of interest
    t = torch.minimum(t, 0.99 * heat0.max(1).values)
    roi = roi.flatten(1)
    ratios = []
    for t_q in t:  # K thresholds: (N, P) masks one at a time
        above = heat0 >= t_q.unsqueeze(1)
        inside = above & roi
        num = (heat0 * inside).sum(1) if weight_by_heat else inside.sum(1).to(flat)
        ratios.append(num / (above.sum(1) + 1e-8))
    return torch.stack(ratios, 1)


@register
class EffectiveHeatRatio(CurveMetric):
    """Effective Heat Ratios, EHR (paper 02, section 4.5, and the authors' evaluation code):
    heat = the map averaged over channels, min-max scaled to [0, 1] per sample (the authors
    read maps saved as 8-bit images in [0, 1]; the scaling is our choice); points of interest
    at heat >= ``base_threshold`` (0.1); for the quantiles q = 0, 0.1, ..., 1 the threshold
    t = min(q-quantile of the points of interest, 0.99 max heat) and the ratio of the heat
    inside the boxes among the pixels above t to their number. The score is the trapezoidal
    AUC of that curve over q. Ground truth: ``{"boxes": (N, 4) long (x0, y0, x1, y1)}``,
    upper corner exclusive. Nothing is written into the given map (the authors' version
    zeroes the pixels below the base threshold in its input array).
    """

    name = "ehr"
    higher_is_better = True
    category = "localisation"
    needs_ground_truth = True
    ground_truth_keys = ("boxes",)
    fast = False  # needs boxes: not in bench's default metric set (data sets without them)
    cost_formula = "no model passes: the map and the boxes only"

    def __init__(self, base_threshold: float = 0.1, n_quantiles: int = 11,
                 weight_by_heat: bool = True, batch_size: int = 256) -> None:
        super().__init__(batch_size)
        if not isinstance(base_threshold, (int, float)) or not 0 <= base_threshold < 1:
            raise ValueError(f"base_threshold must be a number in [0, 1), got {base_threshold!r}")
        if isinstance(n_quantiles, bool) or not isinstance(n_quantiles, int) or n_quantiles < 2:
            raise ValueError(f"n_quantiles must be an int >= 2, got {n_quantiles!r}")
        if not isinstance(weight_by_heat, bool):
            raise ValueError(f"weight_by_heat must be True or False, got {weight_by_heat!r}")
        self.base_threshold = float(base_threshold)
        # as NumPy's linspace (the authors' quantiles): i * step, the last one exactly 1
        q = torch.arange(n_quantiles, dtype=torch.float64) * (1.0 / (n_quantiles - 1))
        q[-1] = 1.0
        self.quantiles = q
        self.weight_by_heat = weight_by_heat

    def forward_passes(self, **info: Any) -> float:
        self._cost_info(info)
        return 0.0

    def _check_ground_truth_values(self, ground_truth: dict[str, Tensor],
                                   inputs: Tensor) -> None:
        boxes = ground_truth["boxes"]
        if inputs.dim() != 4:
            raise ValueError(f"ehr needs image inputs (N, C, H, W), got {tuple(inputs.shape)}")
        if boxes.shape != (inputs.shape[0], 4) or boxes.is_floating_point():
            raise ValueError(f"ground_truth['boxes'] must be (N, 4) integers (x0, y0, x1, y1), "
                             f"got {tuple(boxes.shape)} {boxes.dtype}")
        h, w = inputs.shape[2:]
        x0, y0, x1, y1 = boxes.unbind(1)
        if not bool(((0 <= x0) & (x0 <= x1) & (x1 <= w) & (0 <= y0) & (y0 <= y1)
                     & (y1 <= h)).all()):
            raise ValueError(f"ground_truth['boxes'] must satisfy 0 <= x0 <= x1 <= W = {w} and "
                             f"0 <= y0 <= y1 <= H = {h}")

    def summarize(self, x: Tensor, y: Tensor) -> Tensor:
        """The trapezoidal AUC of the ratios over the quantiles."""
        return torch.trapezoid(y, x.to(y), dim=1)

    def _curve(self, model: nn.Module, inputs: Tensor, targets: Tensor, attributions: Tensor,
               *, ground_truth: dict[str, Tensor] | None = None, **_: Any
               ) -> tuple[Tensor, Tensor]:
        heat = scale_heat(attributions)
        roi = box_masks(ground_truth["boxes"], tuple(inputs.shape[2:]))
        curves = [effective_heat_ratios(heat[i:i + self.batch_size], roi[i:i + self.batch_size],
                                        self.quantiles, self.base_threshold,
                                        self.weight_by_heat)
                  for i in range(0, heat.shape[0], self.batch_size)]
        return self.quantiles.to(heat), torch.cat(curves)


def ehr_selection(model: nn.Module, inputs: Tensor, targets: Tensor, boxes: Tensor,
                  max_box_fraction: float = 0.33, min_probability: float = 0.6) -> Tensor:
    """The samples paper 02 evaluates EHR on (section 4.5 and the authors' script): box area
    at most ``max_box_fraction`` of the image and softmax probability of the target at least
    ``min_probability``; (N,) bool. One forward pass without gradients (eval mode, restored)."""
    h, w = inputs.shape[2:]
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    with model_guard(model), torch.no_grad():
        prob = torch.softmax(model(inputs), 1).gather(1, targets.view(-1, 1)).squeeze(1)
    return (area <= max_box_fraction * h * w) & (prob >= min_probability)
