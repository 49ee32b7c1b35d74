"""Integrated Gradients (Sundararajan et al. 2017) and the shared baseline handling of path methods."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from ...core.checks import check_like, select_target
from ..base import (
    Attribution,
    Option,
    batch_size_or_none,
    chunks,
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
    """Shared handling of ``baselines`` and of Captum's ``return_convergence_delta``."""

    @staticmethod
    def _baselines(inputs: Tensor, baselines: Any) -> Tensor:
        if baselines is None:
            return torch.zeros_like(inputs)
        return check_like("baselines", baselines, inputs)

    def _convergence_delta(self, inputs: Tensor, target: Tensor, attributions: Tensor,
                           options: dict) -> Tensor:
        """sum(attributions) - (f_t(x) - f_t(x')), per sample (completeness error)."""
        base = self._baselines(inputs, options.get("baselines")).expand_as(inputs)
        with torch.no_grad():
            fx = select_target(self.forward(inputs), target)
            fb = select_target(self.forward(base), target)
        return attributions.flatten(1).sum(1) - (fx - fb)


INTEGRATION_METHODS = ("gausslegendre", "riemann_left", "riemann_right", "riemann_middle",
                       "riemann_trapezoid")


def integration_method(name: str, value: Any) -> str:
    """A check for IG's quadrature rule."""
    if value not in INTEGRATION_METHODS:
        raise ValueError(f"unknown integration method {value!r}; use "
                         f"{', '.join(INTEGRATION_METHODS[:-1])} or {INTEGRATION_METHODS[-1]}")
    return value


BASELINES = Option(None, None, "reference input x' (a number or anything broadcasting to the "
                   "inputs; default 0)")


@register
class IntegratedGradients(BaselineMixin, Attribution):
    """Integrated Gradients (Sundararajan et al. 2017, eq. 1):
    (x - x') * integral_0^1 df_t(x' + a (x - x'))/dx da, by a quadrature rule.

    All ``n_steps`` path points of the batch go through the model as one batch of
    N * n_steps rows (step-major), split into chunks of at most ``internal_batch_size`` rows.
    """

    name = "ig"
    reference = "Sundararajan et al. 2017, eq. 1"
    options = {
        "n_steps": Option(50, positive_int, "quadrature points"),
        "method": Option("gausslegendre", integration_method, "quadrature rule"),
        "internal_batch_size": Option(None, batch_size_or_none, "rows per forward pass"),
        "baselines": BASELINES,
    }

    def __init__(self, model: nn.Module, **options: Any) -> None:
        super().__init__(model, **options)
        riemann_or_gauss(self.defaults["method"], self.defaults["n_steps"])  # both together

    @classmethod
    def cost(cls, n_steps: int = 50, **options: Any) -> float:
        return float(n_steps)

    def _attribute(self, inputs: Tensor, target: Tensor, baselines: Any, n_steps: int,
                   method: str, internal_batch_size: int | None) -> Tensor:
        base = self._baselines(inputs, baselines).expand_as(inputs)
        alphas, weights = riemann_or_gauss(method, n_steps)
        alphas = alphas.to(inputs.device, inputs.dtype)
        weights = weights.to(inputs.device, inputs.dtype)
        n, diff = inputs.shape[0], inputs - base
        steps_per_chunk = None if internal_batch_size is None else max(1, internal_batch_size // n)
        total = torch.zeros_like(inputs)
        view = (-1, 1) + (1,) * (inputs.dim() - 1)
        for sl in chunks(len(alphas), steps_per_chunk):
            a, w = alphas[sl].view(view), weights[sl].view(view)
            path = (base.unsqueeze(0) + a * diff.unsqueeze(0)).flatten(0, 1)
            grad, _ = target_gradient(self.forward, path, target.repeat(len(a)))
            total += (grad.view((len(a),) + inputs.shape) * w).sum(0)
        return total * diff
