"""Saliency (Simonyan et al. 2014)."""

from __future__ import annotations

from typing import Any

from torch import Tensor, nn

from ..base import Attribution, Option, boolean, register, target_gradient


@register
class Saliency(Attribution):
    """Saliency map of Simonyan et al. (2014): |d f_t / d x| (``abs=False``: signed gradient).

    Like Captum's ``Saliency``, the absolute value is taken by default.
    """

    name = "saliency"
    signed = False
    reference = "Simonyan et al. 2014"
    multi_input = True
    options = {"abs": Option(True, boolean, "absolute value of the gradient")}

    def __init__(self, model: nn.Module, **options: Any) -> None:
        super().__init__(model, **options)
        self.signed = not self.defaults["abs"]

    def _attribute(self, inputs: tuple[Tensor, ...], target: Tensor, abs: bool,
                   additional_forward_args: tuple = ()) -> tuple[Tensor, ...]:
        grads, _ = target_gradient(self.forward, inputs, target, additional_forward_args)
        return tuple(g.abs() if abs else g for g in grads)
