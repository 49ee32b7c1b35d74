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
    """Modified gradient of the selected logits under ``rule``; returns (grad, outputs).
    ``inputs`` is a tensor or a tuple of tensors (then the gradients are a tuple); ``args``
    go to the model after the inputs."""
    is_tuple = isinstance(inputs, tuple)
    xs = tuple(x.detach().requires_grad_(True) for x in (inputs if is_tuple else (inputs,)))
    with torch.enable_grad():
        with rule:
            out = attr.forward(*xs, *args)
        if rule.calls == 0 and rule.rule != "rescale":
            # DeepLIFT of a linear model is well defined (the gradient); GBP and RectGrad
            # are not: they would silently return the plain gradient.
            raise ValueError(
                f"{type(attr).__name__}: the model made no ReLU call, so the {rule.rule!r} "
                "rule never applied; the method is undefined for it"
            )
        sel = select_target(out, target)
        grads = torch.autograd.grad(sel.sum(), xs, allow_unused=True)
    grads = tuple(torch.zeros_like(x) if g is None else g for g, x in zip(grads, xs))
    return (grads if is_tuple else grads[0]), out.detach()
