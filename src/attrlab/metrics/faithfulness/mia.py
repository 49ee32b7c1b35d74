"""Masked-input accuracy, MIA (paper 01, eq. 12)."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from ...core.hooks import model_guard
from ...methods.aggregate.attribution_mask import AttributionMask
from ...methods.base import Attribution
from ..base import Metric, register


@register
class MaskedInputAccuracy(Metric):
    """MIA (paper 01, eq. 12): whether f(z0 * m*_i) predicts the label t, for the recursive
    attribution mask m*_i of the given method (Algorithm 1) at i = 0..I; the mask is computed
    for the target passed as ``targets`` (the true label, as in the paper).

    ``curve`` gives x = 0..I and the per-sample 0/1 correctness (N, I + 1), whose mean over
    samples is the paper's Q at each iteration; the score is the correctness at i = I. Each
    iteration costs one batched pass of the method plus one batched forward pass.
    ``attributions`` are not used (the masks are recomputed from the method); pass the
    method's first map or zeros.
    """

    name = "mia"
    higher_is_better = True
    needs_method = True
    fast = False  # I times the method's cost: not in bench's default metric set

    def __init__(self, iterations: int = 10, batch_size: int = 256) -> None:
        super().__init__(batch_size)
        self.iterations = AttributionMask._check_iterations(iterations)

    def curve(self, model: nn.Module, inputs: Tensor, targets: Any, attributions: Tensor,
              method: Attribution) -> tuple[Tensor, Tensor]:
        t = self._check(model, inputs, targets, attributions)
        mask = AttributionMask(model, base=method, iterations=self.iterations)
        masks = mask.masks(inputs, t)  # (I + 1, N, ...)
        rows = (masks * inputs.unsqueeze(0)).flatten(0, 1)
        with model_guard(model), torch.no_grad():
            preds = torch.cat([model(rows[i:i + self.batch_size]).argmax(1)
                               for i in range(0, rows.shape[0], self.batch_size)])
        correct = (preds.view(self.iterations + 1, -1) == t.view(1, -1)).T.float()
        return torch.arange(self.iterations + 1, dtype=torch.float32), correct

    def evaluate_with_curve(self, model, inputs, targets, attributions, method=None):
        if method is None:
            raise ValueError("metric 'mia' needs the attribution method (method=...)")
        x, y = self.curve(model, inputs, targets, attributions, method)
        return y[:, -1], (x, y)

    def _evaluate(self, model: nn.Module, inputs: Tensor, targets: Tensor,
                  attributions: Tensor, method: Attribution) -> Tensor:
        return self.curve(model, inputs, targets, attributions, method)[1][:, -1]
