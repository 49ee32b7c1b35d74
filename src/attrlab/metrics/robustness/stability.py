"""Stability to input perturbations (paper 05, section 4.2.2, after Alvarez-Melis & Jaakkola
2018): the local Lipschitz estimate

    L(x) = max_{x' in B_r(x)} ||g(x) - g(x')||_2 / ||x - x'||_2,

with g the explanation (lower is better). The paper solves the maximisation by Bayesian
optimisation in a random embedding (Wang et al. 2016); here it is a documented random search
on the same kind of budget: ``n_samples`` points drawn uniformly in the L2 ball of radius
``radius`` around x (direction z / ||z||, z ~ N(0, I); radius r U^(1/D), D the input size),
from a generator seeded with ``seed``; the estimate is the largest ratio among them (a lower
bound of the true maximum, tightening with ``n_samples``). Every perturbed input is explained
for the same target as x, all N * n_samples rows in ``batch_size`` chunks. Maps are summed over
channels and min-max normalised to [0, 1] per sample first (``normalise="minmax"``, default,
so methods on different scales compare) or used as they are (``"none"``).
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor, nn

from ...methods.base import Attribution
from ..base import Metric, MetricResult, register


def _prepare(maps: Tensor, normalise: str) -> Tensor:
    a = maps.detach()
    if a.dim() == 4:
        a = a.sum(1)
    a = a.flatten(1)
    if normalise == "none":
        return a
    lo, hi = a.amin(1, keepdim=True), a.amax(1, keepdim=True)
    span = hi - lo
    return (a - lo) / torch.where(span > 0, span, torch.ones_like(span))


def ball_samples(inputs: Tensor, n_samples: int, radius: float,
                 generator: torch.Generator) -> Tensor:
    """``n_samples`` points per input drawn uniformly in its L2 ball of ``radius``:
    (N * n_samples, ...) with row ``i * n_samples + j`` around sample i."""
    n = inputs.shape[0]
    d = inputs[0].numel()
    z = torch.randn((n * n_samples, d), generator=generator, dtype=torch.float64)
    u = torch.rand((n * n_samples, 1), generator=generator, dtype=torch.float64)
    step = z / z.norm(dim=1, keepdim=True) * radius * u ** (1.0 / d)
    step = step.to(device=inputs.device, dtype=inputs.dtype).view(n * n_samples,
                                                                  *inputs.shape[1:])
    return inputs.repeat_interleave(n_samples, 0) + step


@register
class LocalLipschitz(Metric):
    """Local Lipschitz estimate of the explanation (paper 05, section 4.2.2, Table 2; lower is
    better) by random search in an L2 ball (module docstring)."""

    name = "stability"
    category = "robustness"
    higher_is_better = False
    needs_method = True
    fast = False
    cost_formula = "1 + n_samples method calls per sample, no own forward passes"

    def __init__(self, n_samples: int = 32, radius: float = 0.1, normalise: str = "minmax",
                 seed: int = 0, batch_size: int = 256) -> None:
        super().__init__(batch_size=batch_size)
        if isinstance(n_samples, bool) or not isinstance(n_samples, int) or n_samples < 1:
            raise ValueError(f"n_samples must be a positive int, got {n_samples!r}")
        if isinstance(radius, bool) or not isinstance(radius, (int, float)) \
                or not radius > 0 or not math.isfinite(radius):
            raise ValueError(f"radius must be a positive number, got {radius!r}")
        if normalise not in ("minmax", "none"):
            raise ValueError(f"normalise must be 'minmax' or 'none', got {normalise!r}")
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise ValueError(f"seed must be an int, got {seed!r}")
        self.n_samples, self.radius, self.normalise, self.seed = n_samples, float(radius), \
            normalise, seed

    def forward_passes(self, **info: Any) -> float:
        self._cost_info(info)
        return 0.0

    def method_calls(self, **info: Any) -> float:
        self._cost_info(info)
        return float(1 + self.n_samples)

    def _explain(self, method: Attribution, x: Tensor, t: Tensor) -> Tensor:
        return torch.cat([_prepare(method.attribute(x[i:i + self.batch_size],
                                                    target=t[i:i + self.batch_size]),
                                   self.normalise)
                          for i in range(0, x.shape[0], self.batch_size)])

    def _compute(self, model: nn.Module, inputs: Tensor, targets: Tensor, attributions: Tensor,
                 *, method: Attribution | None = None, ground_truth=None) -> MetricResult:
        n, s = inputs.shape[0], self.n_samples
        gen = torch.Generator().manual_seed(self.seed)
        near = ball_samples(inputs, s, self.radius, gen)
        g0 = self._explain(method, inputs, targets)
        g1 = self._explain(method, near, targets.repeat_interleave(s))
        num = (g1 - g0.repeat_interleave(s, 0)).norm(dim=1)
        den = (near - inputs.repeat_interleave(s, 0)).flatten(1).norm(dim=1)
        ratio = num / den.clamp_min(torch.finfo(den.dtype).tiny)
        return MetricResult(ratio.view(n, s).amax(1))
