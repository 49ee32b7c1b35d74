"""Guided Integrated Gradients (Kapishnikov et al. 2021, "Guided Integrated Gradients: an
adaptive path method for removing noise", Algorithm 1): the strongest baseline of paper 04 (DGA).

Instead of IG's straight line, the path from the baseline x' to the input x is chosen on the fly:
at every step the features whose partial derivative has the smallest magnitude move first, so the
path avoids regions of large (noisy) gradients. Attribution accumulates, as for any path method,
``(x_new - x_old) * grad f_t(x_old)`` along that path.

Per sample, with ``alpha = (k + 1) / n_steps`` at step k = 0 .. n_steps - 1:

1. g = grad f_t(x) at the current point (one batched pass for the whole batch);
2. the L1 distance to the input must come down to ``(1 - alpha) * ||x - x'||_1``;
3. **band** (``max_dist``): every feature i stays within ``[alpha - max_dist, alpha + max_dist]``
   (clipped to [0, 1]) of its own straight-line coordinate
   ``a_i = (x_i - x'_i) / (x^input_i - x'_i)``. So ``max_dist`` is *relative*, in units of the path
   parameter alpha (a fraction of each feature's own baseline-to-input distance), not an L1 or
   absolute distance: 0.02 keeps every feature within 2 % of |x_i - x'_i| of where IG's straight
   line would have it. Features that fell behind the lower edge are first pulled up to it;
4. repeat until the step's L1 target is reached: the features that can still move (not yet at the
   band's upper edge) get their |g_i| compared with the lower ``fraction``-quantile of |g| taken
   over *all* features of the sample, the ones that cannot move counting as +inf (Algorithm 1
   sets their gradient to infinity before the percentile). The selected ones (|g_i| <= quantile)
   move toward the upper edge: all the way if that still leaves the L1 target unreached (then
   the loop goes on with the others), else by the common fraction gamma of their remaining way
   that lands exactly on the target (the step ends).

``max_dist = 0`` (the band is the straight-line point) or ``fraction = 1`` (every feature moves
together) gives back IG with the left Riemann sum over n_steps points (gradient at alpha = k/n,
weight 1/n), i.e. attrlab's ``ig`` with ``method="riemann_left"``.

Completeness holds up to that left-Riemann discretisation only (the gradient is taken at the old
point of every move), as in the paper: exact for a model linear along the path, O(1/n_steps)
otherwise (for ReLU nets, only the moves that cross a linear-region boundary contribute).

Numerics: the path and the bookkeeping are float64 (as the reference); the model is evaluated at
the path points cast to the inputs' dtype and the result is cast back to it. A step is finished
when its L1 distance is within ``1e-9 * ||x - x'||_1`` of the target (scale-free form of the
reference's ``isclose(.., 1e-9)``) or below it (only reachable through rounding; the reference
would assert). Each iteration of the inner loop either finishes a sample's step or brings at
least one of its features to the band's upper edge, so it needs at most D + 1 iterations for D
features per sample (in practice about 1 / fraction + 1); exceeding that is reported as a
RuntimeError rather than looping forever.

Batching: every sample has its own path, band and bookkeeping; each gradient evaluation is one
pass over the whole batch, and a sample whose step is finished simply does not move while the
others keep iterating. There is no Python loop over samples or features.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from ..base import Attribution, Option, register, target_gradient
from .integrated_gradients import BASELINES, BaselineMixin

_EPS = 1e-9


def check_guided_ig_options(n_steps: Any, fraction: Any, max_dist: Any) -> tuple[int, float, float]:
    """Validate Guided IG's options; ``ValueError`` with the offending value otherwise."""
    if isinstance(n_steps, bool) or not isinstance(n_steps, numbers.Integral) or n_steps < 1:
        raise ValueError(f"n_steps must be a positive int, got {n_steps!r}")
    if isinstance(fraction, bool) or not isinstance(fraction, numbers.Real) or not (
            0.0 < float(fraction) <= 1.0):
        raise ValueError(f"fraction must be a number in (0, 1], got {fraction!r}")
    if isinstance(max_dist, bool) or not isinstance(max_dist, numbers.Real) or not (
            0.0 <= float(max_dist) < math.inf):
        raise ValueError(f"max_dist must be a finite number >= 0, got {max_dist!r}")
    return int(n_steps), float(fraction), float(max_dist)


def guided_path_integral(grad_fn: Callable[[Tensor], Tensor], inputs: Tensor, baselines: Tensor,
                         n_steps: int, fraction: float, max_dist: float) -> Tensor:
    """Guided IG on flattened float64 (N, D) ``inputs``/``baselines``.

    ``grad_fn`` maps an (N, D) float64 batch of path points to the (N, D) float64 gradients of
    each sample's target output. Returns the (N, D) float64 attributions.
    """
    n, d = inputs.shape
    x0, x1 = baselines, inputs
    sign = torch.sign(x1 - x0)               # direction of travel; 0: feature already at input
    l1_total = (x1 - x0).abs().sum(1)
    tol = _EPS * l1_total
    rank = math.floor(fraction * (d - 1)) + 1   # kthvalue rank of the 'lower' quantile
    inf = torch.tensor(math.inf, dtype=x1.dtype, device=x1.device)
    max_inner = d + 1
    x = x0.clone()
    attr = torch.zeros_like(x1)
    for step in range(n_steps):
        grad = grad_fn(x)
        x_start = x
        alpha = (step + 1) / n_steps
        x_lo = torch.lerp(x0, x1, max(alpha - max_dist, 0.0))
        x_hi = torch.lerp(x0, x1, min(alpha + max_dist, 1.0))   # lerp(x0, x1, 1) == x1 exactly
        l1_target = l1_total * (1.0 - alpha)
        active = torch.ones(n, dtype=torch.bool, device=x1.device)
        for it in range(max_inner + 1):
            if it == max_inner:
                raise RuntimeError(
                    f"guided_ig: step {step} did not reach its L1 target within {max_inner} "
                    "inner iterations (should be impossible; inputs with NaN gradients?)")
            # Features behind the band's lower edge are pulled up to it.
            behind = (sign * (x_lo - x) > 0) & active[:, None]
            x = torch.where(behind, x_lo, x)
            l1_cur = (x1 - x).abs().sum(1)
            active = active & (l1_cur > l1_target + tol)
            movable = (sign * (x_hi - x) > 0) & active[:, None]
            active = active & movable.any(1)  # nothing left to move: at the upper edge everywhere
            if not bool(active.any()):
                break
            score = torch.where(movable, grad.abs(), inf)
            threshold = score.kthvalue(rank, dim=1).values
            selected = movable & (score <= threshold[:, None]) & active[:, None]
            room = (x_hi - x).abs()
            l1_sel = (room * selected).sum(1)
            gamma = (l1_cur - l1_target) / torch.where(l1_sel > 0, l1_sel, torch.ones_like(l1_sel))
            full = gamma > 1            # selected features go all the way, target still ahead
            g = gamma.clamp(max=1.0)[:, None]
            moved = torch.where(full[:, None], x_hi, x + g * (x_hi - x))
            x = torch.where(selected, moved, x)
            active = active & full
        attr += (x - x_start) * grad
    return attr


def _guided_ig_check(name: str, value: Any) -> Any:
    """One option of Guided IG, checked by :func:`check_guided_ig_options` with the others at
    their defaults."""
    values = {"n_steps": 200, "fraction": 0.25, "max_dist": 0.02, name: value}
    n_steps, fraction, max_dist = check_guided_ig_options(values["n_steps"], values["fraction"],
                                                          values["max_dist"])
    return {"n_steps": n_steps, "fraction": fraction, "max_dist": max_dist}[name]


@register
class GuidedIntegratedGradients(BaselineMixin, Attribution):
    """Guided Integrated Gradients (Kapishnikov et al. 2021, Algorithm 1).

    Options (constructor defaults, overridable per ``attribute`` call): ``n_steps=200`` (the
    paper's "steps"), ``fraction=0.25`` (share of features with the smallest |gradient| moved at
    a time), ``max_dist=0.02`` (half-width of the band around the straight line, relative: in
    units of the path parameter alpha, see the module docstring) and ``baselines`` (default 0,
    anything broadcasting to the inputs). Supports ``return_convergence_delta=True``.
    ``max_dist=0`` or ``fraction=1`` equals ``ig`` with ``method="riemann_left"``.
    """

    name = "guided_ig"
    reference = "Kapishnikov et al. 2021, Algorithm 1"
    low_precision = ()  # others: far off the float32 map (test_reliability)
    options = {
        "n_steps": Option(200, _guided_ig_check, "path steps"),
        "fraction": Option(0.25, _guided_ig_check, "share of features moved at a time"),
        "max_dist": Option(0.02, _guided_ig_check, "half-width of the band (relative)"),
        "baselines": BASELINES,
    }

    @classmethod
    def cost(cls, n_steps: int = 200, **options: Any) -> float:
        return float(n_steps)

    def _attribute(self, inputs: Tensor, target: Tensor, baselines: Any, n_steps: int,
                   fraction: float, max_dist: float, additional_forward_args: tuple = ()
                   ) -> Tensor:
        base = self._baselines(inputs, baselines).expand_as(inputs)
        shape, dtype = inputs.shape, inputs.dtype

        def grad_fn(x: Tensor) -> Tensor:
            grad, _ = target_gradient(self.forward, x.view(shape).to(dtype), target,
                                      additional_forward_args)
            return grad.reshape(shape[0], -1).to(torch.float64)

        attr = guided_path_integral(grad_fn, inputs.reshape(shape[0], -1).to(torch.float64),
                                    base.reshape(shape[0], -1).to(torch.float64),
                                    n_steps, fraction, max_dist)
        return attr.view(shape).to(dtype)
