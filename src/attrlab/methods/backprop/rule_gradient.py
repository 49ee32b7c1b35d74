"""The modified gradient under a backward rule, shared by every rule-based method."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from ...core.checks import select_target
from ...core.rules import NonlinearityRules
from ..base import Attribution


def rule_gradient(attr: Attribution, rule: NonlinearityRules, inputs: Tensor | tuple[Tensor, ...],
                  target: Tensor, args: tuple = ()) -> tuple[Any, Tensor]:
    """Modified gradient of the selected logits under ``rule`` (a
    :class:`~attrlab.core.rules.NonlinearityRules` around a composite); returns (grad, outputs).

    If the composite ``needs`` a function (GBP and RectGrad: a ReLU) and none of its rules
    applied, the method is undefined for the model: ``ValueError``. ``inputs`` is a tensor or
    a tuple of tensors (then the gradients are a tuple); ``args`` go to the model after them.
    """
    is_tuple = isinstance(inputs, tuple)
    xs = tuple(x.detach().requires_grad_(True) for x in (inputs if is_tuple else (inputs,)))
    with torch.enable_grad():
        with rule:
            out = attr.forward(*xs, *args)
        rule.check_not_stale((out,))  # the model returned a tensor whose in-place op it ignored
        needs = rule.composite.needs
        if rule.calls == 0 and needs is not None:
            # DeepLIFT of a linear model is well defined (the gradient); GBP and RectGrad
            # are not: they would silently return the plain gradient.
            raise ValueError(
                f"{type(attr).__name__}: the model made no {needs} call, so the "
                f"{rule.composite.name!r} rule never applied; the method is undefined for it"
            )
        sel = select_target(out, target)
        grads = torch.autograd.grad(sel.sum(), xs, allow_unused=True)
    grads = tuple(torch.zeros_like(x) if g is None else g for g, x in zip(grads, xs))
    return (grads if is_tuple else grads[0]), out.detach()
