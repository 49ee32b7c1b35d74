"""KernelSHAP (Lundberg & Lee 2017): LIME with the Shapley kernel."""

from __future__ import annotations

import torch
from torch import Tensor

from ...core.perturbation import bernoulli_samples, shapley_size_samples
from ..base import Option, one_of, register
from .lime import SurrogateMethod, weighted_linear_fit

# weight of the full and the empty coalition (theoretically infinite), as Captum
INF_WEIGHT = 1e6


def shapley_kernel(z: Tensor, n_features: Tensor) -> Tensor:
    """The Shapley kernel (Lundberg & Lee 2017, Theorem 2): pi(z) = (M - 1) / (C(M, |z|) |z|
    (M - |z|)), ``INF_WEIGHT`` for |z| in {0, M}; (N, S) in float64."""
    k = z.double().sum(2)
    m = n_features.double().to(z.device).view(-1, 1)
    log_binom = torch.lgamma(m + 1) - torch.lgamma(k + 1) - torch.lgamma(m - k + 1)
    inner = (k > 0) & (k < m)
    w = (m - 1) / (torch.exp(log_binom) * k.clamp_min(1) * (m - k).clamp_min(1))
    return torch.where(inner, w, torch.full_like(w, INF_WEIGHT))


@register
class KernelShap(SurrogateMethod):
    """KernelSHAP (Lundberg & Lee 2017, Theorem 2): the coefficients of the linear
    surrogate fitted (unregularised, with an intercept) under the Shapley kernel, so that
    they estimate the Shapley values of the features (exactly, when the samples are every
    coalition).

    ``sampler="shapley"`` (default, as Captum's ``KernelShap`` and ``shap``): the full and empty
    coalitions, then coalitions with sizes drawn in proportion to the kernel's weight per size
    and uniform members; each sample then has weight 1 (the kernel is in the sampling
    distribution). ``sampler="bernoulli"``: LIME's sampler (full and empty coalitions first)
    with Shapley kernel weights. Full and empty coalitions weigh 1e6 (Captum). Injected
    ``samples`` are weighted by the chosen sampler's rule. Outputs are logits; 1,000 samples
    by default (Captum: 25).
    """

    name = "kernel_shap"
    reference = "Lundberg & Lee 2017, Theorem 2"
    options = {
        "sampler": Option("shapley", one_of("shapley", "bernoulli"), "coalition sampler"),
    }

    def _draw(self, n, n_samples, n_features, generator, feature_mask, options):
        if options["sampler"] == "shapley":
            return shapley_size_samples(n, n_samples, n_features, generator)
        z = bernoulli_samples(n, n_samples, n_features, generator)
        if n_samples > 1:
            z[:, 1] = 0
        return z

    def _weights(self, z, n_features, options):
        if options["sampler"] == "bernoulli":
            return shapley_kernel(z, n_features)
        k = z.sum(2)
        ends = (k == 0) | (k == n_features.to(z.device).view(-1, 1))
        return torch.where(ends, INF_WEIGHT, 1.0).double()

    def _fit(self, z, y, w, options):
        return weighted_linear_fit(z, y, w, 0.0)
