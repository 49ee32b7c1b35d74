"""Masked-input accuracy, MIA (paper 01, eq. 12)."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from ...methods.aggregate.attribution_mask import AttributionMask
from ...methods.base import Attribution
from ..base import CurveMetric, register


@register
class MaskedInputAccuracy(CurveMetric):
    """MIA (paper 01, eq. 12): whether f(z0 * m*_i) predicts the label t, for the recursive
    attribution mask m*_i of the given method (Algorithm 1) at i = 0..I; the mask is computed
    for the target passed as ``targets`` (the true label, as in the paper).

    The curve is x = 0..I and the per-sample 0/1 correctness (N, I + 1), whose mean over
    samples is the paper's Q at each iteration; the score is the correctness at i = I (the
    last point of that curve). Each iteration costs one batched pass of the method plus one
    batched forward pass. ``attributions`` are not used (the masks are recomputed from the
    method); pass the method's first map or zeros.
    """

    name = "mia"
    higher_is_better = True
    category = "faithfulness"
    needs_method = True
    fast = False  # I times the method's cost: not in bench's default metric set
    cost_formula = "I + 1 forward passes and I method calls per sample (I = iterations)"

    def __init__(self, iterations: int = 10, batch_size: int = 256) -> None:
        super().__init__(batch_size)
        self.iterations = AttributionMask._check_iterations(iterations)

    def forward_passes(self, **info: Any) -> float:
        """I + 1: the masked input at i = 0..I."""
        self._cost_info(info)
        return float(self.iterations + 1)

    def method_calls(self, **info: Any) -> float:
        """I: one method call per iteration of the mask."""
        self._cost_info(info)
        return float(self.iterations)

    def summarize(self, x: Tensor, y: Tensor) -> Tensor:
        """The correctness at the last iteration, i = I."""
        return y[:, -1]

    def _curve(self, model: nn.Module, inputs: Tensor, targets: Tensor, attributions: Tensor,
               *, method: Attribution | None = None, **_: Any) -> tuple[Tensor, Tensor]:
        mask = AttributionMask(model, base=method, iterations=self.iterations)
        masks = mask.masks(inputs, targets)  # (I + 1, N, ...)
        rows = (masks * inputs.unsqueeze(0)).flatten(0, 1)
        with torch.no_grad():
            preds = torch.cat([model(rows[i:i + self.batch_size]).argmax(1)
                               for i in range(0, rows.shape[0], self.batch_size)])
        correct = (preds.view(self.iterations + 1, -1) == targets.view(1, -1)).T.float()
        return torch.arange(self.iterations + 1, dtype=torch.float32), correct
