"""Modified-backpropagation methods: Guided Backprop, RectGrad, DeepLIFT (rescale) and DeepSHAP.

The rules are applied by :class:`~attrlab.methods.hooks.NonlinearityRules`, which intercepts
the functional calls, so reused and in-place ``ReLU`` modules (torchvision ResNet) and
functional ``F.relu`` calls (torchvision DenseNet) are handled; see that module.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from .base import Attribution, chunks, register
from .checks import check_batch_size, check_like, check_target_range
from .gradient import BaselineMixin
from .hooks import NonlinearityRules


def rule_gradient(attr: Attribution, rule: NonlinearityRules, inputs: Tensor,
                  target: Tensor) -> tuple[Tensor, Tensor]:
    """Modified gradient of the selected logits under ``rule``; returns (grad, outputs)."""
    x = inputs.detach().requires_grad_(True)
    with torch.enable_grad():
        with rule:
            out = attr.forward(x)
        if rule.calls == 0 and rule.rule != "rescale":
            # DeepLIFT of a linear model is well defined (the gradient); GBP and RectGrad
            # are not: they would silently return the plain gradient.
            raise ValueError(
                f"{type(attr).__name__}: the model made no ReLU call, so the {rule.rule!r} "
                "rule never applied; the method is undefined for it"
            )
        check_target_range(target, out.shape[1])
        sel = out.gather(1, target.view(-1, 1)).squeeze(1)
        (grad,) = torch.autograd.grad(sel.sum(), x)
    return grad, out.detach()


@register
class GuidedBackprop(Attribution):
    """Guided Backpropagation (Springenberg et al. 2014, eq. in section 3.4): at every ReLU
    the backward signal is R_l = (x_l > 0) * (R_{l+1} > 0) * R_{l+1}."""

    name = "gbp"

    def _attribute(self, inputs: Tensor, target: Tensor) -> Tensor:
        return rule_gradient(self, NonlinearityRules("guided"), inputs, target)[0]


@register
class RectGrad(Attribution):
    """Rectified Gradient (Kim et al. 2019, eq. 5): at every ReLU, the gradient passes only
    where the importance a * g exceeds tau, the ``q``-th percentile of a * g over the layer
    for that sample (default q = 98). The map is x * (modified gradient), as in the paper."""

    name = "rectgrad"

    def __init__(self, model: nn.Module, q: float = 98.0) -> None:
        super().__init__(model)
        if not 0 <= q <= 100:
            raise ValueError(f"q is a percentile in [0, 100], got {q}")
        self.q = q

    def _attribute(self, inputs: Tensor, target: Tensor, q: float | None = None) -> Tensor:
        rule = NonlinearityRules("rectified", q=self.q if q is None else q)
        return rule_gradient(self, rule, inputs, target)[0] * inputs


@register
class DeepLift(BaselineMixin, Attribution):
    """DeepLIFT with the rescale rule (Shrikumar et al. 2017, eqs. 1-3 and section 3.5.1):
    attributions (x - x') * m, m the chain of multipliers (f(x) - f(x'))/(x - x') through every
    elementwise nonlinearity; max-pooling uses the cross-maximum rule that Captum uses.

    Inputs and baselines go through the model as one batch [x; x'] (the model must keep the
    batch in dimension 0 and not mix samples, e.g. eval-mode BatchNorm). Summation-to-delta
    holds: sum(attributions) = f_t(x) - f_t(x').
    """

    name = "deeplift"

    def __init__(self, model: nn.Module, eps: float = 1e-10) -> None:
        super().__init__(model)
        self.eps = eps

    def _attribute(self, inputs: Tensor, target: Tensor, baselines: Any = None) -> Tensor:
        base = self._baselines(inputs, baselines).expand_as(inputs)
        both = torch.cat([inputs, base])
        grad, _ = rule_gradient(self, NonlinearityRules("rescale", eps=self.eps), both,
                                target.repeat(2))
        return (inputs - base) * grad[: inputs.shape[0]]


@register
class DeepLiftShap(Attribution):
    """DeepSHAP (Lundberg & Lee 2017, section 4.2 "Deep SHAP"): DeepLIFT averaged over a
    distribution of baselines, phi(x) = mean_j DeepLIFT(x; x'_j).

    ``baselines`` is a (B, ...) batch of reference samples; every input is paired with every
    baseline (N * B rows, processed ``internal_batch_size`` rows at a time).
    """

    name = "deepshap"

    def __init__(self, model: nn.Module, eps: float = 1e-10,
                 internal_batch_size: int | None = None) -> None:
        super().__init__(model)
        self.deeplift = DeepLift(model, eps=eps)
        self.internal_batch_size = check_batch_size("internal_batch_size", internal_batch_size)

    def _check_baselines(self, inputs: Tensor, baselines: Any) -> Tensor:
        if baselines is None:
            raise ValueError("deepshap needs baselines: a (B, ...) batch of reference samples")
        b = check_like("baselines", baselines, inputs, any_batch=True)
        if b.dim() != inputs.dim() or b.shape[1:] != inputs.shape[1:]:
            raise ValueError(
                f"deepshap baselines must be a batch shaped like the inputs (B, "
                f"{', '.join(map(str, inputs.shape[1:]))}); got {tuple(b.shape)}"
            )
        return b

    def _attribute(self, inputs: Tensor, target: Tensor, baselines: Any = None,
                   internal_batch_size: int | None = None) -> Tensor:
        b = self._check_baselines(inputs, baselines)
        n, nb = inputs.shape[0], b.shape[0]
        rows_x = inputs.repeat_interleave(nb, 0)
        rows_b = b.repeat((n,) + (1,) * (inputs.dim() - 1))
        rows_t = target.repeat_interleave(nb)
        size = self.internal_batch_size if internal_batch_size is None else internal_batch_size
        out = torch.cat([
            self.deeplift._attribute(rows_x[sl], rows_t[sl], baselines=rows_b[sl])
            for sl in chunks(n * nb, size)
        ])
        return out.view((n, nb) + inputs.shape[1:]).mean(1)

    def _convergence_delta(self, inputs: Tensor, target: Tensor, attributions: Tensor,
                           options: dict) -> Tensor:
        """sum(attributions) - (f_t(x) - mean_j f_t(x'_j)), per sample."""
        b = self._check_baselines(inputs, options.get("baselines"))
        with torch.no_grad():
            fx = self.forward(inputs).gather(1, target.view(-1, 1)).squeeze(1)
            fb = self.forward(b)[:, target].mean(0)
        return attributions.flatten(1).sum(1) - (fx - fb)
