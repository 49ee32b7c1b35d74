"""Integrated Gradients (Sundararajan et al. 2017) and the shared baseline handling of path methods."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from ..base import (
    Attribution,
    Option,
    batch_size_or_none,
    boolean,
    chunks,
    completeness_delta,
    expand_args,
    format_baselines,
    map_batched,
    positive_int,
    register,
    target_gradient,
)


def riemann_or_gauss(method: str, n_steps: int) -> tuple[Tensor, Tensor]:
    """Path positions alpha_k in [0, 1] and quadrature weights w_k for IG's integral.

    ``riemann_left/right/middle/trapezoid`` are the Riemann sums; ``gausslegendre`` maps the
    Gauss-Legendre nodes of [-1, 1] to [0, 1] (Captum's default rule).
    """
    if not isinstance(n_steps, int) or n_steps < 1:
        raise ValueError(f"n_steps must be a positive int, got {n_steps!r}")
    n = n_steps
    if method == "gausslegendre":
        nodes, weights = np.polynomial.legendre.leggauss(n)
        return torch.tensor(0.5 * (nodes + 1)), torch.tensor(0.5 * weights)
    if method == "riemann_trapezoid":
        if n < 2:
            raise ValueError("riemann_trapezoid needs n_steps >= 2")
        w = torch.full((n,), 1.0 / (n - 1), dtype=torch.float64)
        w[0] = w[-1] = 0.5 / (n - 1)
        return torch.linspace(0, 1, n, dtype=torch.float64), w
    offsets = {"riemann_left": 0.0, "riemann_right": 1.0, "riemann_middle": 0.5}
    if method not in offsets:
        raise ValueError(
            f"unknown integration method {method!r}; use gausslegendre, riemann_left, "
            "riemann_right, riemann_middle or riemann_trapezoid"
        )
    alphas = (torch.arange(n, dtype=torch.float64) + offsets[method]) / n
    return alphas, torch.full((n,), 1.0 / n, dtype=torch.float64)


class BaselineMixin:
    """Shared handling of ``baselines`` (a number or a tensor broadcasting to the inputs, or
    a tuple of such for a tuple of inputs) and of Captum's ``return_convergence_delta``."""

    @staticmethod
    def _baselines(inputs: Tensor | tuple[Tensor, ...], baselines: Any
                   ) -> Tensor | tuple[Tensor, ...]:
        if isinstance(inputs, tuple):
            return format_baselines(inputs, baselines)
        return format_baselines((inputs,), baselines)[0]

    def _convergence_delta(self, inputs: Tensor | tuple[Tensor, ...], target: Tensor,
                           attributions: Tensor | tuple[Tensor, ...], options: dict,
                           args: tuple = ()) -> Tensor:
        """sum(attributions) - (f_t(x) - f_t(x')), per sample (completeness error)."""
        xs = inputs if isinstance(inputs, tuple) else (inputs,)
        attrs = attributions if isinstance(attributions, tuple) else (attributions,)
        return completeness_delta(self.forward, attrs, format_baselines(xs, options.get(
            "baselines")), xs, target, args)


INTEGRATION_METHODS = ("gausslegendre", "riemann_left", "riemann_right", "riemann_middle",
                       "riemann_trapezoid")


def integration_method(name: str, value: Any) -> str:
    """A check for IG's quadrature rule."""
    if value not in INTEGRATION_METHODS:
        raise ValueError(f"unknown integration method {value!r}; use "
                         f"{', '.join(INTEGRATION_METHODS[:-1])} or {INTEGRATION_METHODS[-1]}")
    return value


BASELINES = Option(None, None, "reference input x' (a number or anything broadcasting to the "
                   "inputs, a tuple of such for a tuple of inputs; default 0)")
MULTIPLY_BY_INPUTS = Option(True, boolean, "Captum's multiply_by_inputs: False gives the "
                            "'global' attribution, without the (x - x') factor")


@register
class IntegratedGradients(BaselineMixin, Attribution):
    """Integrated Gradients (Sundararajan et al. 2017, eq. 1):
    (x - x') * integral_0^1 df_t(x' + a (x - x'))/dx da, by a quadrature rule.

    All ``n_steps`` path points of the batch go through the model as one batch of
    N * n_steps rows (step-major), split into chunks of at most ``internal_batch_size`` rows;
    per-sample ``additional_forward_args`` are repeated the same way. A tuple of inputs gets
    one path per input (baselines: one number for all, or a tuple). ``multiply_by_inputs=False``
    returns the integral of the gradient without the (x - x') factor (Captum's flag).
    """

    name = "ig"
    reference = "Sundararajan et al. 2017, eq. 1"
    multi_input = True
    options = {
        "n_steps": Option(50, positive_int, "quadrature points"),
        "method": Option("gausslegendre", integration_method, "quadrature rule"),
        "internal_batch_size": Option(None, batch_size_or_none, "rows per forward pass"),
        "baselines": BASELINES,
        "multiply_by_inputs": MULTIPLY_BY_INPUTS,
    }

    def __init__(self, model: nn.Module, **options: Any) -> None:
        super().__init__(model, **options)
        riemann_or_gauss(self.defaults["method"], self.defaults["n_steps"])  # both together

    @classmethod
    def cost(cls, n_steps: int = 50, **options: Any) -> float:
        return float(n_steps)

    def _attribute(self, inputs: tuple[Tensor, ...], target: Tensor, baselines: Any,
                   n_steps: int, method: str, internal_batch_size: int | None,
                   multiply_by_inputs: bool, additional_forward_args: tuple = ()
                   ) -> tuple[Tensor, ...]:
        bases = tuple(b.expand_as(x) for b, x in zip(self._baselines(inputs, baselines), inputs))
        x0 = inputs[0]
        n = x0.shape[0]
        if internal_batch_size is not None and internal_batch_size < n:
            # fewer rows per pass than samples: the samples are chunked too (one step a pass)
            parts = [self._attribute(tuple(x[sl] for x in inputs), target[sl],
                                     tuple(b[sl] for b in bases), n_steps, method,
                                     internal_batch_size, multiply_by_inputs,
                                     map_batched(additional_forward_args, n,
                                                 lambda a, sl=sl: a[sl]))
                     for sl in chunks(n, internal_batch_size)]
            return tuple(torch.cat(p) for p in zip(*parts))
        alphas, weights = riemann_or_gauss(method, n_steps)
        alphas = alphas.to(x0.device, x0.dtype)
        weights = weights.to(x0.device, x0.dtype)
        diffs = tuple(x - b for x, b in zip(inputs, bases))
        steps_per_chunk = None if internal_batch_size is None else max(1, internal_batch_size // n)
        totals = [torch.zeros_like(x) for x in inputs]
        for sl in chunks(len(alphas), steps_per_chunk):
            k = len(alphas[sl])
            paths = []
            for base, diff in zip(bases, diffs):
                view = (-1, 1) + (1,) * (diff.dim() - 1)
                a = alphas[sl].view(view)
                paths.append((base.unsqueeze(0) + a * diff.unsqueeze(0)).flatten(0, 1))
            args = expand_args(additional_forward_args, n, k, interleave=False)
            grads, _ = target_gradient(self.forward, tuple(paths), target.repeat(k), args)
            for total, grad, x in zip(totals, grads, inputs):
                w = weights[sl].view((-1, 1) + (1,) * (x.dim() - 1))
                total += (grad.view((k,) + x.shape) * w).sum(0)
        if not multiply_by_inputs:
            return tuple(totals)
        return tuple(total * diff for total, diff in zip(totals, diffs))
