"""Layer Integrated Gradients (Captum's ``LayerIntegratedGradients``)."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from ..base import Option, batch_size_or_none, chunks, positive_int
from ..gradient.integrated_gradients import integration_method, riemann_or_gauss
from .base import (
    BASELINES,
    MULTIPLY,
    LayerAttribution,
    LayerBaselineMixin,
    batch_first,
    is_float_tensor,
    layer_baselines,
    leaves,
    rebuild,
    register,
)


@register
class LayerIntegratedGradients(LayerBaselineMixin, LayerAttribution):
    """Integrated Gradients at a layer (Sundararajan et al. 2017, eq. 1, on the layer's
    activations): with a = A(x) and a' = A(x') the layer's values for the inputs and for the
    baselines (given in input space: for token ids a pad id),
    (a - a') * integral_0^1 d f_t / d A at A = a' + alpha (a - a') dalpha, by a quadrature rule.

    As Captum's ``LayerIntegratedGradients``, each path point is a forward pass of the
    *inputs* in which the hook replaces the layer's value by a' + alpha (a - a'); the path
    points go through the model in batches of N * steps rows (step-major), at most
    ``internal_batch_size`` rows. Completeness, sum(attributions) = f_t(x) - f_t(x') up to the
    quadrature error, holds when everything from the inputs to the output passes through the
    layer (an embedding, a ResNet stage); a skip connection around the layer carries the
    inputs' values instead of the baselines'.
    """

    name = "layer_ig"
    reference = "Sundararajan et al. 2017, eq. 1 (at a layer); Captum LayerIntegratedGradients"
    options = {
        "n_steps": Option(50, positive_int, "quadrature points"),
        "method": Option("gausslegendre", integration_method, "quadrature rule"),
        "internal_batch_size": Option(None, batch_size_or_none, "rows per forward pass"),
        "baselines": BASELINES,
        "multiply_by_inputs": MULTIPLY,
    }

    def __init__(self, model: nn.Module, layer: str | nn.Module, **options: Any) -> None:
        super().__init__(model, layer, **options)
        riemann_or_gauss(self.defaults["method"], self.defaults["n_steps"])  # both together

    @classmethod
    def cost(cls, n_steps: int = 50, **options: Any) -> float:
        return float(n_steps) + 1.0  # the path, plus the activations of inputs and baselines

    def _attribute(self, inputs: Tensor, target: Tensor, baselines: Any, n_steps: int,
                   method: str, internal_batch_size: int | None, multiply_by_inputs: bool,
                   attribute_to_layer_input: bool) -> Any:
        to_input = attribute_to_layer_input
        where = "input" if to_input else "output"
        base = layer_baselines(self.model, inputs, baselines)
        a_x = self.values(inputs, to_input)
        a_b = self.values(base, to_input)
        n = inputs.shape[0]
        batch_first(a_x, n, self.layer_name, where, self.name)
        lx, lb = leaves(a_x), leaves(a_b)
        pos = [i for i, v in enumerate(lx) if is_float_tensor(v)]
        for i in pos:
            if not isinstance(lb[i], Tensor) or lb[i].shape != lx[i].shape:
                raise ValueError(f"{self.name}: the {where} of layer {self.layer_name!r} has "
                                 "another shape for the baselines than for the inputs")
        alphas, weights = riemann_or_gauss(method, n_steps)
        diffs = {i: lx[i] - lb[i] for i in pos}
        totals = {i: torch.zeros_like(lx[i]) for i in pos}
        steps_per_chunk = None if internal_batch_size is None else max(1, internal_batch_size // n)
        reps = (1,) * (inputs.dim() - 1)
        for sl in chunks(len(alphas), steps_per_chunk):
            k = len(alphas[sl])
            paths = {}
            for i in pos:
                view = (-1,) + (1,) * lx[i].dim()
                a = alphas[sl].to(lx[i].device, lx[i].dtype).view(view)
                paths[i] = (lb[i].unsqueeze(0) + a * diffs[i].unsqueeze(0)).flatten(0, 1)

            def make(value: Any, paths: dict = paths) -> Any:
                actual = leaves(value)
                for i in pos:
                    if not isinstance(actual[i], Tensor) or actual[i].shape != paths[i].shape:
                        got = tuple(actual[i].shape) if isinstance(actual[i], Tensor) else None
                        raise ValueError(
                            f"{self.name}: a tensor in the {where} of layer {self.layer_name!r}"
                            f" has shape {got} for {k} stacked copies of the inputs, not "
                            f"{tuple(paths[i].shape)}: its batch is not in dimension 0")
                return rebuild(value, iter(paths.get(i, v) for i, v in enumerate(actual)))

            grads, _ = self.gradients(inputs.repeat((k,) + reps), target.repeat(k), to_input,
                                      make=make)
            lg = leaves(grads)
            for i in pos:
                w = weights[sl].to(lx[i].device, lx[i].dtype).view((-1,) + (1,) * lx[i].dim())
                totals[i] += (lg[i].view((k,) + lx[i].shape) * w).sum(0)
        out = [(totals[i] * diffs[i] if multiply_by_inputs else totals[i]) if i in totals
               else None for i in range(len(lx))]
        return rebuild(a_x, iter(out))
