"""IBA: Information Bottleneck Attribution, per-sample bottleneck (Schulz et al. 2020)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor, nn

from ...core.bottleneck import (
    LayerStatistics,
    capacity_map,
    estimate_layer_statistics,
    gaussian_smooth,
    iba_kl,
    optimise_mask,
    replace_output,
    sample_batches,
)
from ...core.checks import check_target_range, get_module
from ...core.rng import generator_for, normal
from ..base import (
    Attribution,
    Option,
    batch_size_or_none,
    chunks,
    expand_args,
    generator_or_none,
    map_batched,
    number_in,
    positive_int,
    register,
)
from ..layer.base import last_conv_name, module_name

FEATURE_OPTIONS = {
    "beta": Option(10.0, number_in(0.0, math.inf), "weight of the capacity term"),
    "steps": Option(10, positive_int, "Adam steps on alpha"),
    "lr": Option(1.0, number_in(0.0, math.inf, lo_open=True), "Adam learning rate"),
    "copies": Option(10, positive_int, "noise copies of each sample per step (the authors' "
                     "batch of 10)"),
    "alpha_init": Option(5.0, number_in(-math.inf, math.inf), "initial logit of lambda"),
    "min_std": Option(0.01, number_in(0.0, math.inf), "lower bound of the estimated std"),
    "active_threshold": Option(0.01, number_in(0.0, 1.0), "an element is active when non-zero "
                               "in more than this fraction of the fitted samples"),
    "estimation_samples": Option(10000, positive_int, "samples fit() streams through the "
                                 "model (capped at the data set's size)"),
    "estimation_batch_size": Option(64, positive_int, "batch size of fit()'s pass"),
    "generator": Option(None, generator_or_none, "torch.Generator for the noise"),
    "internal_batch_size": Option(None, batch_size_or_none, "images optimised together "
                                  "(None: the whole batch); bounds the memory"),
}


def feature_bottleneck(method: Attribution, layer: nn.Module, stats: LayerStatistics,
                       inputs: Tensor, target: Tensor, args: tuple, *, beta: float, steps: int,
                       lr: float, copies: int, alpha_init: float, sigma: float, min_std: float,
                       active_threshold: float, noise) -> tuple[Tensor, Tensor]:
    """IBA's per-sample bottleneck at ``layer`` for a batch (Schulz et al. 2020, section 3.2):
    Z = (lambda R + (1 - lambda) eps) * active with eps ~ N(mu_R, sigma_R^2), lambda =
    smooth(sigmoid(alpha)), loss = CE(target) + beta * mean(KL * active) per sample (CE
    averaged over ``copies`` noise draws), Adam on alpha (N, C, h, w), every sample its own.

    ``noise(step)`` returns the standard-normal draws of one step, shaped like the layer output
    of the (N * copies) rows, row i * copies + s for sample i. Returns ``(alpha, capacity)``:
    the final logits and the per-element capacity (N, C, h, w, nats) of the last step's
    forward pass, as the authors' buffer.
    """
    n = inputs.shape[0]
    rows = inputs.repeat_interleave(copies, 0)
    rows_t = target.repeat_interleave(copies)
    rows_a = expand_args(args, n, copies, interleave=True)
    dtype, device = inputs.dtype, inputs.device
    mean = stats.mean.to(device, dtype)
    std = stats.std(min_std).to(device, dtype)
    active = stats.active(active_threshold).to(device, dtype)
    state: dict[str, Tensor] = {}

    def loss_fn(alpha: Tensor, step: int) -> tuple[Tensor, Tensor]:
        lam = gaussian_smooth(torch.sigmoid(alpha), sigma)

        def bottleneck(r: Tensor) -> Tensor:
            if r.shape[1:] != mean.shape:
                raise ValueError(f"the bottleneck layer gives {tuple(r.shape[1:])} per sample "
                                 f"but was fitted on {tuple(mean.shape)}: fit on data shaped "
                                 "like these inputs")
            # the copies of a sample share R: its capacity from the first copy
            r0 = r.view((n, copies) + r.shape[1:])[:, 0]
            state["capacity"] = iba_kl((r0 - mean) / std, lam) * active
            lam_rows = lam.repeat_interleave(copies, 0)
            eps = std * noise(step).to(dtype) + mean
            return (lam_rows * r + (1 - lam_rows) * eps) * active

        with replace_output(layer, bottleneck):
            out = method.forward(rows, *rows_a)
        if step == 0:  # one check, before the first update
            check_target_range(target, out.shape[1])
        ce = -torch.log_softmax(out, 1).gather(1, rows_t[:, None]).view(n, copies).mean(1)
        cap = state["capacity"]
        return ce + beta * cap.flatten(1).mean(1), cap

    alpha0 = torch.full((n,) + tuple(mean.shape), alpha_init, dtype=dtype, device=device)
    return optimise_mask(loss_fn, alpha0, steps, lr)


class BottleneckMethod(Attribution):
    """Shared part of IBA and InputIBA: the layer, and the statistics ``fit`` estimates."""

    needs_data = True
    random = True
    signed = False
    input_kinds = ("image",)

    def __init__(self, model: nn.Module, layer: str | nn.Module | None = None,
                 **options: Any) -> None:
        super().__init__(model, **options)
        self.require_module()
        if layer is None:
            layer = last_conv_name(self.model)
        self.layer = get_module(self.model, layer)
        self.layer_name = layer if isinstance(layer, str) else module_name(self.model, self.layer)
        self.statistics: LayerStatistics | None = None

    @property
    def fitted(self) -> bool:
        return self.statistics is not None

    def fit(self, data: Any, *, generator: torch.Generator | None = None) -> BottleneckMethod:
        """Estimate the layer's per-element mean, std and active elements (IBA's estimator) in
        one streaming pass without gradients over ``estimation_samples`` inputs of ``data``
        (a tensor batch, a data set with ``tensors(indices)``, or a sequence of (input, ...)
        items), drawn in ``torch.randperm(len(data), generator)`` order (seed 0 by default).
        Each forward pass stops after the layer."""
        gen = torch.Generator().manual_seed(0) if generator is None else generator
        opts = self.defaults
        device = next(self.model.parameters(), torch.empty(0)).device
        batches = sample_batches(data, opts["estimation_samples"], opts["estimation_batch_size"],
                                 gen)
        with self.guard():
            self.statistics = estimate_layer_statistics(self.forward, self.layer, batches,
                                                        device)
        return self

    def state_dict(self) -> dict[str, Any]:
        return {} if self.statistics is None else self.statistics.state_dict()

    def load_state_dict(self, state: Mapping[str, Any]) -> BottleneckMethod:
        self.statistics = LayerStatistics.from_state_dict(state)
        return self

    def _chunked(self, inputs: Tensor, target: Tensor, args: tuple, size: int | None,
                 fn) -> Tensor:
        """``fn(inputs, target, args)`` on ``size`` images at a time (all at once for None),
        concatenated; the images are independent, so only the random draws differ."""
        n = inputs.shape[0]
        return torch.cat([fn(inputs[sl], target[sl], map_batched(args, n, lambda a, sl=sl: a[sl]))
                          for sl in chunks(n, size)])

    def _noise(self, inputs: Tensor, copies: int, generator: torch.Generator | None):
        """The standard-normal draws of each step, from ``generator`` (seed 0 if None)."""
        gen = generator_for(inputs.device, generator)
        stats = self.statistics
        shape = (inputs.shape[0] * copies,) + tuple(stats.mean.shape)
        ones = torch.ones(shape, dtype=inputs.dtype, device=inputs.device)
        return lambda step: normal(ones, gen)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(model={type(self.model).__name__}, layer={self.layer_name!r})"


@register
class IBA(BottleneckMethod):
    """IBA, the per-sample bottleneck (Schulz et al. 2020, eqs. 2-7): at ``layer`` (default:
    the last convolution; the authors use VGG16's conv4_1 output) the features R become
    Z = lambda R + (1 - lambda) eps, eps ~ N(mu_R, sigma_R^2) with the per-element statistics
    that :meth:`fit` estimates (std at least ``min_std``; inactive elements, non-zero in at
    most ``active_threshold`` of the samples, are zeroed), lambda = sigmoid(alpha) smoothed by
    a Gaussian of std ``sigma``. ``steps`` Adam steps (lr ``lr``) minimise
    CE(target) + beta * mean KL per sample over ``copies`` noise draws; every sample of the
    batch has its own alpha and is optimised at once.

    The map is the capacity (KL, :func:`~attrlab.core.bottleneck.iba_kl`) of the last step
    summed over channels, in bits, scaled by (h w) / (H W) and bilinearly resized to the input
    (:func:`~attrlab.core.bottleneck.capacity_map`), broadcast over the input channels.
    Defaults are the authors': beta 10, 10 steps, lr 1, 10 copies, alpha init 5, sigma 1.
    Following the authors' code, the map is the capacity buffered by the last forward pass
    (before the last Adam update). :meth:`layer_attribute` gives the per-element capacity.
    """

    name = "iba"
    default_set = False  # fitted statistics and 10 optimisation steps per map
    reference = "Schulz et al. 2020 (IBA, per-sample bottleneck)"
    options = {**FEATURE_OPTIONS,
               "sigma": Option(1.0, number_in(0.0, math.inf), "std of the Gaussian smoothing "
                               "of lambda, in layer pixels (0: none)")}

    @classmethod
    def cost(cls, steps: int = 10, copies: int = 10, **options: Any) -> float:
        return float(steps * copies)

    def layer_attribute(self, inputs: Tensor, target=None, **options: Any) -> Tensor:
        """The per-element capacity (N, C, h, w) in nats of the last step."""
        opts = self.resolve_options(options)
        if not self.fitted:
            raise ValueError("iba must be fitted first: call .fit(data)")
        return self.guarded(inputs, target, lambda x, t: self._capacity(x, t, (), **opts))

    def _capacity(self, inputs: Tensor, target: Tensor, args: tuple, *, generator,
                  internal_batch_size: int | None, **opts: Any) -> Tensor:
        gen = generator_for(inputs.device, generator)
        return self._chunked(inputs, target, args, internal_batch_size,
                             lambda x, t, a: self._run(x, t, a, generator=gen, **opts)[1])

    def _run(self, inputs: Tensor, target: Tensor, args: tuple, *, generator, sigma: float,
             estimation_samples: int, estimation_batch_size: int,
             **opts: Any) -> tuple[Tensor, Tensor]:
        return feature_bottleneck(self, self.layer, self.statistics, inputs, target, args,
                                  sigma=sigma,
                                  noise=self._noise(inputs, opts["copies"], generator), **opts)

    def _attribute(self, inputs: Tensor, target: Tensor, additional_forward_args: tuple = (),
                   **opts: Any) -> Tensor:
        if inputs.dim() != 4:
            raise ValueError(f"iba explains images (N, C, H, W); got shape {tuple(inputs.shape)}")
        capacity = self._capacity(inputs, target, additional_forward_args, **opts)
        if capacity.dim() != 4:
            raise ValueError(f"iba needs a convolutional layer with (N, C, h, w) outputs; "
                             f"{self.layer_name!r} gives {tuple(capacity.shape)}")
        return capacity_map(capacity, inputs.shape[2:]).clamp_min(0).expand_as(inputs)
