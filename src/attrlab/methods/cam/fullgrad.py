"""FullGrad (Srinivas & Fleuret 2019): input-gradient and bias-gradient terms."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn.modules.batchnorm import _BatchNorm

from ...core.checks import select_target
from ...core.hooks import capture_output_grads
from ..base import Attribution, as_args, register
from .gradcam import upsample_to

_AFFINE = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear, _BatchNorm)


def layer_bias(module: nn.Module) -> Tensor | None:
    """The additive bias of an affine layer in eval mode, or None if it has none.

    Conv/Linear: ``module.bias``. BatchNorm in eval mode is the affine map
    x -> gamma (x - mu) / sqrt(var + eps) + beta, whose implied bias is
    beta - mu * gamma / sqrt(var + eps). A BatchNorm without running statistics (or in a
    bias-free variant that neither subtracts a mean nor adds a shift) has none.
    """
    if isinstance(module, _BatchNorm):
        if module.running_var is None:
            return None
        mean = module.running_mean
        beta = module.bias
        if (mean is None or not mean.any()) and (beta is None or not beta.any()):
            return None
        gamma = module.weight if module.weight is not None else torch.ones_like(module.running_var)
        mean = mean if mean is not None else torch.zeros_like(module.running_var)
        b = -mean * gamma / torch.sqrt(module.running_var + module.eps)
        return b + beta if beta is not None else b
    bias = getattr(module, "bias", None)
    return bias if isinstance(bias, Tensor) else None


@dataclass
class FullGradTerms:
    """The exact decomposition f_t(x) = sum(input_term) + sum_l sum(bias_terms[l]).

    ``input_term`` = x * grad_x f_t; ``bias_terms[l]`` = grad_{z_l} f_t * b_l per output
    position of layer l (one entry per call of each affine layer); ``logit`` = f_t(x).
    Completeness is exact for networks that are piecewise linear between their affine layers
    (ReLU, max-pooling, average pooling, eval-mode BatchNorm).
    """

    input_term: Tensor
    bias_terms: list[Tensor]
    logit: Tensor


def _bias_gradients(attr: Attribution, inputs: Tensor, target: Tensor, args: tuple = ()
                    ) -> tuple[Tensor, list[tuple[Tensor, Tensor]], Tensor]:
    """One forward and one backward pass: grad_x f_t, the (grad_{z_l} f_t, b_l) pairs of
    every call of every affine layer with a bias (call order within a layer), and f_t(x)."""
    layers = {}
    for name, m in attr.require_module().named_modules():
        b = layer_bias(m) if isinstance(m, _AFFINE) else None
        if b is not None:
            layers[name] = (m, b.detach())
    x = inputs.detach().requires_grad_(True)
    with torch.enable_grad(), capture_output_grads({k: m for k, (m, _) in layers.items()}) as rec:
        sel = select_target(attr.forward(x, *args), target)
        (grad_x,) = torch.autograd.grad(sel.sum(), x)
    # a Linear adds its bias along the last dimension: on (N, ..., C) (ConvNeXt's and Swin's
    # channel-last maps, ViT's tokens) its gradient is moved to channel-first (N, C, ...),
    # the layout of every other layer (on (N, H, W, C) the Linear is a 1x1 convolution)
    pairs = [(g.movedim(-1, 1) if isinstance(layers[name][0], nn.Linear) and g.dim() > 2
              else g, layers[name][1]) for name, gs in rec.items() for g in gs if g is not None]
    return grad_x, pairs, sel.detach()


def fullgrad_terms(attr: Attribution, inputs: Tensor, target: Tensor, args: tuple = ()
                   ) -> FullGradTerms:
    """Input-gradient and bias-gradient terms in one forward and one backward pass."""
    grad_x, pairs, logit = _bias_gradients(attr, inputs, target, args)
    bias_terms = []
    for g, b in pairs:
        shape = (1, -1) + (1,) * (g.dim() - 2) if g.dim() > 2 else (1, -1)
        bias_terms.append(g * b.view(shape))
    return FullGradTerms(grad_x * inputs, bias_terms, logit)


def psi(v: Tensor) -> Tensor:
    """FullGrad post-processing: |v|, minus its per-sample minimum, divided by the per-sample
    maximum (+1e-6) over the whole (C, H, W) tensor, then summed over channels. A flat
    (N, D) tensor has no channel axis and is not summed."""
    a = v.abs().flatten(1)
    a = a - a.amin(1, keepdim=True)
    a = (a / (a.amax(1, keepdim=True) + 1e-6)).view_as(v)
    return a.sum(1, keepdim=True) if v.dim() > 2 else a


@register
class FullGrad(Attribution):
    """FullGrad saliency (Srinivas & Fleuret 2019, eq. 7): S(x) = psi(x * grad_x f) +
    sum_l sum_c psi(grad_{z_l} f * b_l), with psi the post-processing above and each
    bias-gradient map bilinearly upsampled (align_corners=True) to the input size.

    As in the authors' code only layers whose output keeps the input's spatial layout
    (convolutions and BatchNorm) enter the map; a Linear on a channel-last (N, H, W, C) map
    (ConvNeXt, Swin) is a 1x1 convolution and enters it too; biases of other Linear layers
    (on (N, C) or on (N, T, C) tokens) are part of the completeness decomposition
    (:meth:`decompose`) but not of the map. BatchNorm's implied
    bias is included. The map has one channel and is broadcast over the input channels.
    """

    name = "fullgrad"
    signed = False
    reference = "Srinivas & Fleuret 2019, eq. 7"
    input_kinds = ("image", "flat")

    def __init__(self, model: nn.Module, **options: Any) -> None:
        super().__init__(model, **options)
        self.require_module()

    def decompose(self, inputs: Tensor, target=None, *,
                  additional_forward_args: Any = None) -> FullGradTerms:
        """The un-post-processed completeness terms (see :class:`FullGradTerms`)."""
        args = as_args(additional_forward_args)
        return self.guarded(inputs, target, lambda x, t: fullgrad_terms(self, x, t, args),
                            additional_forward_args=args)

    def _attribute(self, inputs: Tensor, target: Tensor,
                   additional_forward_args: tuple = ()) -> Tensor:
        terms = fullgrad_terms(self, inputs, target, additional_forward_args)
        sal = psi(terms.input_term)
        for b in terms.bias_terms:
            if b.dim() == inputs.dim() > 2:  # spatial bias maps only
                sal = sal + upsample_to(psi(b), inputs, align_corners=True)
        return sal
