"""Plain-gradient methods: Saliency, Gradient x Input, PGxI, GxSI, Integrated Gradients and the
SmoothGrad noise tunnel around any registered method."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from .base import Attribution, chunks, get, register, target_gradient
from .checks import check_batch_size, check_like, select_target


@register
class Saliency(Attribution):
    """Saliency map of Simonyan et al. (2014): |d f_t / d x| (``abs=False``: signed gradient).

    Like Captum's ``Saliency``, the absolute value is taken by default.
    """

    name = "saliency"
    signed = False

    def __init__(self, model: nn.Module, abs: bool = True) -> None:
        super().__init__(model)
        self.abs = abs
        self.signed = not abs

    def _attribute(self, inputs: Tensor, target: Tensor, abs: bool | None = None) -> Tensor:
        grad, _ = target_gradient(self.forward, inputs, target)
        return grad.abs() if (self.abs if abs is None else abs) else grad


@register
class GradientXInput(Attribution):
    """Gradient x Input (Shrikumar et al. 2016): x * d f_t / d x.

    On a no-implicit-bias (NIB) net, sum_i x_i df_t/dx_i = f_t(x) (paper 01, eq. 8).
    """

    name = "gxi"

    def _attribute(self, inputs: Tensor, target: Tensor) -> Tensor:
        grad, _ = target_gradient(self.forward, inputs, target)
        return grad * inputs


@register
class PositiveGradientXInput(Attribution):
    """Positive-Gradient x Input (paper 01, section 4.2): [d f_t / d x]^+ * x."""

    name = "pgxi"

    def _attribute(self, inputs: Tensor, target: Tensor) -> Tensor:
        grad, _ = target_gradient(self.forward, inputs, target)
        return grad.clamp(min=0) * inputs


@register
class GradientXSignOfInput(Attribution):
    """Gradient x Sign-of-Input, GxSI (paper 01, eq. 13): sign(x) * d f_t / d x.

    The gradient is the signed gradient of the target logit (not its absolute value).
    """

    name = "gxsi"

    def _attribute(self, inputs: Tensor, target: Tensor) -> Tensor:
        grad, _ = target_gradient(self.forward, inputs, target)
        return grad * inputs.sign()


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


@register
class IntegratedGradients(BaselineMixin, Attribution):
    """Integrated Gradients (Sundararajan et al. 2017, eq. 1):
    (x - x') * integral_0^1 df_t(x' + a (x - x'))/dx da, by a quadrature rule.

    All ``n_steps`` path points of the batch go through the model as one batch of
    N * n_steps rows (step-major), split into chunks of at most ``internal_batch_size`` rows.
    """

    name = "ig"

    def __init__(self, model: nn.Module, n_steps: int = 50, method: str = "gausslegendre",
                 internal_batch_size: int | None = None) -> None:
        super().__init__(model)
        riemann_or_gauss(method, n_steps)  # validates both early
        self.n_steps, self.method = n_steps, method
        self.internal_batch_size = check_batch_size("internal_batch_size", internal_batch_size)

    def _attribute(self, inputs: Tensor, target: Tensor, baselines: Any = None,
                   n_steps: int | None = None, method: str | None = None,
                   internal_batch_size: int | None = None) -> Tensor:
        base = self._baselines(inputs, baselines).expand_as(inputs)
        alphas, weights = riemann_or_gauss(method or self.method, n_steps or self.n_steps)
        alphas = alphas.to(inputs.device, inputs.dtype)
        weights = weights.to(inputs.device, inputs.dtype)
        n, diff = inputs.shape[0], inputs - base
        size = self.internal_batch_size if internal_batch_size is None else internal_batch_size
        check_batch_size("internal_batch_size", size)
        steps_per_chunk = None if size is None else max(1, size // n)
        total = torch.zeros_like(inputs)
        view = (-1, 1) + (1,) * (inputs.dim() - 1)
        for sl in chunks(len(alphas), steps_per_chunk):
            a, w = alphas[sl].view(view), weights[sl].view(view)
            path = (base.unsqueeze(0) + a * diff.unsqueeze(0)).flatten(0, 1)
            grad, _ = target_gradient(self.forward, path, target.repeat(len(a)))
            total += (grad.view((len(a),) + inputs.shape) * w).sum(0)
        return total * diff


@register
class NoiseTunnel(Attribution):
    """SmoothGrad (Smilkov et al. 2017, eq. 2) around any registered method:
    mean over samples of A(x + N(0, sigma^2)); ``nt_type="smoothgrad_sq"`` averages A^2 and
    ``"vargrad"`` takes the variance.

    ``stdevs`` is the absolute noise standard deviation (Captum's meaning); if ``None`` it is
    ``noise_level * (max(x) - min(x))`` per sample (the SmoothGrad paper's 10-20 %). Noise is
    drawn as Captum draws it (one ``torch.normal`` per chunk of ``nt_samples_batch_size``
    samples, inputs repeated interleaved), so under the same seed both give the same map as
    long as the inputs have torch's default dtype (Captum draws in the default dtype, attrlab
    in the inputs' dtype).
    """

    name = "smoothgrad"

    def __init__(self, model: nn.Module, base: str | Attribution = "saliency",
                 nt_type: str = "smoothgrad", nt_samples: int = 25,
                 stdevs: float | None = None, noise_level: float = 0.15,
                 nt_samples_batch_size: int | None = None, **base_options: Any) -> None:
        super().__init__(model)
        self.base = base if isinstance(base, Attribution) else get(base, model, **base_options)
        if self.base.model is not model:
            raise ValueError("the base method must be built on the same model")
        if nt_type not in ("smoothgrad", "smoothgrad_sq", "vargrad"):
            raise ValueError(f"nt_type must be smoothgrad, smoothgrad_sq or vargrad; got {nt_type!r}")
        self.nt_type, self.nt_samples, self.stdevs = nt_type, nt_samples, stdevs
        self.noise_level = noise_level
        self.nt_samples_batch_size = check_batch_size("nt_samples_batch_size", nt_samples_batch_size)
        self.signed = self.base.signed and nt_type == "smoothgrad"

    def _attribute(self, inputs: Tensor, target: Tensor, nt_samples: int | None = None,
                   stdevs: float | None = None, nt_samples_batch_size: int | None = None,
                   **base_options: Any) -> Tensor:
        k_total = nt_samples or self.nt_samples
        if not isinstance(k_total, int) or k_total < 1:
            raise ValueError(f"nt_samples must be a positive int, got {k_total!r}")
        std = self.stdevs if stdevs is None else stdevs
        n = inputs.shape[0]
        if std is None:
            rng = inputs.flatten(1).amax(1) - inputs.flatten(1).amin(1)
            std_rows = (self.noise_level * rng).view((-1,) + (1,) * (inputs.dim() - 1))
        else:
            std_rows = torch.tensor(float(std), dtype=inputs.dtype, device=inputs.device)
        batch = nt_samples_batch_size or self.nt_samples_batch_size or k_total
        s1 = torch.zeros_like(inputs)
        s2 = torch.zeros_like(inputs)
        for sl in chunks(k_total, batch):
            k = sl.stop - sl.start
            rows = inputs.repeat_interleave(k, 0)
            scale = std_rows.repeat_interleave(k, 0) if std_rows.dim() else std_rows
            noise = torch.normal(0.0, scale.expand_as(rows).contiguous())
            opts = {key: (v.repeat_interleave(k, 0) if isinstance(v, Tensor) and v.dim()
                          and v.shape[0] == n else v) for key, v in base_options.items()}
            a = self.base._attribute(rows + noise, target.repeat_interleave(k), **opts)
            a = a.expand_as(rows).reshape((n, k) + inputs.shape[1:])
            s1 += a.sum(1)
            s2 += (a * a).sum(1)
        mean, mean_sq = s1 / k_total, s2 / k_total
        if self.nt_type == "smoothgrad":
            return mean
        if self.nt_type == "smoothgrad_sq":
            return mean_sq
        return mean_sq - mean * mean
