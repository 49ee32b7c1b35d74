"""The modified gradient under a backward rule, shared by every rule-based method."""

from __future__ import annotations

import torch
from torch import Tensor

from ...core.checks import check_target_range
from ...core.rules import NonlinearityRules
from ..base import Attribution


def rule_gradient(attr: Attribution, rule: NonlinearityRules, inputs: Tensor,
                  target: Tensor) -> tuple[Tensor, Tensor]:
    """Modified gradient of the selected logits under ``rule`` (a
    :class:`~attrlab.core.rules.NonlinearityRules` around a composite); returns (grad, outputs).

    If the composite ``needs`` a function (GBP and RectGrad: a ReLU) and none of its rules
    applied, the method is undefined for the model: ``ValueError``.
    """
    x = inputs.detach().requires_grad_(True)
    with torch.enable_grad():
        with rule:
            out = attr.forward(x)
        needs = rule.composite.needs
        if rule.calls == 0 and needs is not None:
            # DeepLIFT of a linear model is well defined (the gradient); GBP and RectGrad
            # are not: they would silently return the plain gradient.
            raise ValueError(
                f"{type(attr).__name__}: the model made no {needs} call, so the "
                f"{rule.composite.name!r} rule never applied; the method is undefined for it"
            )
        check_target_range(target, out.shape[1])
        sel = out.gather(1, target.view(-1, 1)).squeeze(1)
        (grad,) = torch.autograd.grad(sel.sum(), x)
    return grad, out.detach()
