"""LIME (Ribeiro et al. 2016): a weighted linear surrogate fitted on interpretable samples."""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from ...core.perturbation import (
    bernoulli_samples,
    feature_ids,
    ids_keep,
    perturbed_outputs,
    text_samples,
)
from ..base import (
    Attribution,
    Option,
    generator_or_none,
    number_in,
    one_of,
    positive_int,
    register,
)
from .feature_ablation import (
    BASELINES,
    BATCH,
    baselines_like,
    feature_mask_option,
    logits,
    resolve_feature_mask,
    row_forward,
)


def samples_option(name: str, value: Any) -> Tensor | None:
    """None (draw) or an injected (S, F) / (N, S, F) tensor of 0/1 interpretable samples."""
    if value is None:
        return None
    if not isinstance(value, Tensor) or value.dim() not in (2, 3) or value.numel() == 0 \
            or not ((value == 0) | (value == 1)).all():
        raise ValueError(f"{name} must be None or a (S, F) or (N, S, F) tensor of 0/1 values")
    return value


def nonnegative_or_none(name: str, value: Any) -> float | None:
    return None if value is None else number_in(0.0, math.inf)(name, value)


def weighted_linear_fit(z: Tensor, y: Tensor, w: Tensor, alpha: float) -> Tensor:
    """Weighted (ridge) least squares with an intercept, batched over samples: the
    coefficients (N, F) minimising sum_s w_s (y_s - b - z_s . beta)^2 + alpha |beta|^2.

    Centred at the weighted means (the intercept is not penalised), then
    beta = pinv(Zc^T W Zc + alpha I) Zc^T W yc in float64 — sklearn's ``Ridge`` and, for
    alpha = 0, ``LinearRegression`` (minimum-norm solution) with ``sample_weight``. Padding
    columns that are 0 in every sample get coefficient 0.
    """
    z, y, w = z.double(), y.double(), w.double()
    sw = w.sum(1, keepdim=True)
    zm = (w.unsqueeze(2) * z).sum(1, keepdim=True) / sw.unsqueeze(2)
    ym = (w * y).sum(1, keepdim=True) / sw
    zc, yc = z - zm, y - ym
    a = zc.transpose(1, 2) @ (w.unsqueeze(2) * zc)
    if alpha:
        a = a + alpha * torch.eye(a.shape[-1], dtype=a.dtype, device=a.device)
    b = zc.transpose(1, 2) @ (w * yc).unsqueeze(2)
    return (torch.linalg.pinv(a, hermitian=True) @ b).squeeze(2)


def lasso_fit(z: Tensor, y: Tensor, w: Tensor, alpha: float) -> Tensor:
    """Weighted lasso with an intercept by scikit-learn's ``Lasso`` (coordinate descent), one
    small fit per sample on the host (sklearn's objective: sum_s w_s (y_s - b - z_s . beta)^2 /
    (2 sum_s w_s) + alpha |beta|_1)."""
    import numpy as np
    from sklearn.linear_model import Lasso

    zs, ys, ws = (t.detach().double().cpu().numpy() for t in (z, y, w))
    coefs = [Lasso(alpha=alpha).fit(zi, yi, sample_weight=wi).coef_ for zi, yi, wi in
             zip(zs, ys, ws)]
    return torch.from_numpy(np.stack(coefs)).to(z.device, torch.float64)


def lime_kernel(z: Tensor, n_features: Tensor, kernel_width: float) -> Tensor:
    """The ``lime`` package's weights: sqrt(exp(-d^2 / width^2)), d the cosine distance between
    the sample and the unperturbed input (all ones) in the interpretable space (images: width
    0.25; text: distances x 100 with width 25, the same weights)."""
    k = z.double().sum(2)
    d = 1.0 - k.sqrt() / n_features.double().to(z.device).sqrt().view(-1, 1)
    d = torch.where(k > 0, d, torch.ones_like(d))  # cosine distance to an empty sample: 1
    return torch.exp(-d ** 2 / kernel_width ** 2).sqrt()


class SurrogateMethod(Attribution):
    """Shared body of LIME and KernelSHAP: features, interpretable samples z (drawn or given
    as ``samples``), the model on x_z = z * x + (1 - z) * baseline (per feature), the sample
    weights and a weighted linear surrogate whose coefficients are the attributions, expanded
    to the inputs through the feature mask (Captum's ``return_input_shape``)."""

    random = True
    options = {
        "n_samples": Option(1000, positive_int, "interpretable samples per input"),
        "feature_mask": Option("auto", feature_mask_option, "interpretable features: 'auto' "
                               "(quickshift superpixels for images of >= 128 px, SLIC below, "
                               "tokens for (N, L, ...) sequences, entries for flat inputs), "
                               "or as feature_ablation"),
        "baselines": BASELINES,
        "samples": Option(None, samples_option, "injected (S, F) or (N, S, F) 0/1 samples "
                          "(replace the sampler; n_samples is then S)"),
        "internal_batch_size": BATCH,
        "generator": Option(None, generator_or_none, "torch.Generator of the sampler (None: a "
                            "fresh one seeded with 0)"),
    }

    @classmethod
    def cost(cls, n_samples: int = 1000, samples: Tensor | None = None, **options: Any) -> float:
        return float(samples.shape[-2] if isinstance(samples, Tensor) else n_samples)

    def _draw(self, n: int, n_samples: int, n_features: Tensor, generator: Any,
              feature_mask: Any, options: dict) -> Tensor:
        raise NotImplementedError

    def _weights(self, z: Tensor, n_features: Tensor, options: dict) -> Tensor:
        raise NotImplementedError

    def _fit(self, z: Tensor, y: Tensor, w: Tensor, options: dict) -> Tensor:
        raise NotImplementedError

    def _attribute(self, inputs: Tensor, target: Tensor, n_samples: int, feature_mask: Any,
                   baselines: Any, samples: Tensor | None, internal_batch_size: int,
                   generator: Any, additional_forward_args: tuple = (), **options: Any
                   ) -> Tensor:
        n, dev = inputs.shape[0], inputs.device
        mask = resolve_feature_mask(inputs, feature_mask)
        ids, n_features = feature_ids(inputs, mask)
        f_max = int(n_features.max())
        if samples is None:
            z = self._draw(n, n_samples, n_features, generator, mask, options).to(dev)
        else:
            z = samples.to(dev, torch.long)
            z = z.expand(n, *z.shape) if z.dim() == 2 else z
            if z.shape[0] != n or z.shape[2] != f_max:
                raise ValueError(f"samples must have shape (S, {f_max}) or ({n}, S, {f_max}) "
                                 f"for these inputs ({f_max} features); got {tuple(samples.shape)}")
            if n_features.min() < f_max:  # padding columns of samples with fewer features
                valid = torch.arange(f_max, device=dev) < n_features.to(dev).view(-1, 1)
                z = z * valid.unsqueeze(1)
        s = z.shape[1]
        base = baselines_like(inputs, baselines)
        sample_of_row = torch.arange(n, device=dev).repeat_interleave(s)
        zb = z.reshape(n * s, f_max).bool()

        def keep(r: Tensor) -> Tensor:
            return ids_keep(ids[sample_of_row[r]], zb[r])

        y = perturbed_outputs(row_forward(self, additional_forward_args, n), inputs, base,
                              sample_of_row, keep, target, internal_batch_size, logits).view(n, s)
        w = self._weights(z, n_features, options)
        coef = self._fit(z, y, w, options)
        return ids_keep(ids, coef.to(inputs.dtype)).expand_as(inputs).clone()


@register
class Lime(SurrogateMethod):
    """LIME (Ribeiro et al. 2016, eqs. 1-2): the coefficients of a linear surrogate g(z) = b +
    beta . z fitted to f_t(x_z) on interpretable samples z, weighted by the exponential kernel
    pi_x(z) = sqrt(exp(-d(1, z)^2 / width^2)), d the cosine distance, as the ``lime`` package.

    Defaults as the ``lime`` package: 1,000 samples (Captum: 50), the first sample the
    unperturbed input; images: quickshift superpixels (``kernel_size=4, max_dist=200,
    ratio=0.2``; on images under 128 px, where these give 1-3 superpixels, SLIC with 100
    segments), each kept with probability 1/2; token sequences: ``lime``'s text sampler
    (a uniform number of tokens 1..M removed); kernel width 0.25 (``lime``'s image width; its
    text width 25 on 100 x distances is the same); ridge surrogate with alpha 1
    (``surrogate="lasso"``: sklearn ``Lasso``, alpha 0.01 unless given, Captum's default).
    Removed features take the baseline (default 0, as Captum; ``lime`` fills superpixels
    with their mean colour). Outputs are logits (``lime`` explains probabilities).
    """

    name = "lime"
    reference = "Ribeiro et al. 2016, eqs. 1-2"
    options = {
        "kernel_width": Option(0.25, number_in(0.0, math.inf, lo_open=True),
                               "width of lime's exponential kernel on cosine distance"),
        "surrogate": Option("ridge", one_of("ridge", "lasso"), "linear surrogate model"),
        "alpha": Option(None, nonnegative_or_none, "regularisation (None: 1 for ridge, 0.01 "
                        "for lasso)"),
        "sampler": Option("auto", one_of("auto", "bernoulli", "text"), "interpretable sampler "
                          "('auto': text for token features, else bernoulli)"),
    }

    def _draw(self, n, n_samples, n_features, generator, feature_mask, options):
        sampler = options["sampler"]
        if sampler == "auto":
            sampler = "text" if feature_mask == "tokens" else "bernoulli"
        draw = text_samples if sampler == "text" else bernoulli_samples
        return draw(n, n_samples, n_features, generator)

    def _weights(self, z, n_features, options):
        return lime_kernel(z, n_features, options["kernel_width"])

    def _fit(self, z, y, w, options):
        alpha = options["alpha"]
        if options["surrogate"] == "lasso":
            return lasso_fit(z, y, w, 0.01 if alpha is None else alpha)
        return weighted_linear_fit(z, y, w, 1.0 if alpha is None else alpha)
