"""Saliency (Simonyan et al. 2014)."""

from __future__ import annotations

from torch import Tensor, nn

from ..base import Attribution, register, target_gradient


@register
class Saliency(Attribution):
    """Saliency map of Simonyan et al. (2014): |d f_t / d x| (``abs=False``: signed gradient).

    Like Captum's ``Saliency``, the absolute value is taken by default.
    """

    name = "saliency"
    signed = False

    def __init__(self, model: nn.Module, abs: bool = True) -> None:
        super().__init__(model)
        self.abs = abs
        self.signed = not abs

    def _attribute(self, inputs: Tensor, target: Tensor, abs: bool | None = None) -> Tensor:
        grad, _ = target_gradient(self.forward, inputs, target)
        return grad.abs() if (self.abs if abs is None else abs) else grad
