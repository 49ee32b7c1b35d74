"""Top-k / low-k perturbation area (paper 05, section 4.2.3, Figure 4, Table 3; after Samek et
al. 2016 and Petsiuk et al. 2018).

For k = 0, 10, ..., 100 % (``fractions``) the pixels with the largest (top-k) or the smallest
(low-k) k % attributions are replaced by gray (``baseline``: a constant in the inputs' units,
0.0 by default; pass the normalised value of mid-gray, (0.5 - mean) / std, for the paper's
gray) and the output change d_k of the classifier is recorded:

* ``output="prob"``: p_t(x) - p_t(x_k), the softmax probability of the target class;
* ``"logit"``: z_t(x) - z_t(x_k);
* ``"kl"``: KL[p(x) || p(x_k)] over all classes.

The score is the area between the two curves, the normalised trapezoidal integral
(:func:`attrlab.core.perturbation.normalized_auc`) of d_top - d_low over the fractions
(higher is better); the curve is (fractions, d_top - d_low) and
:meth:`TopkLowkArea.curves` returns both curves. Features are pixels (attributions summed
over channels, all channels replaced together), ranked by the engine's stable sort
(:mod:`attrlab.metrics.faithfulness.pixel_perturbation`: ties broken by index, top-k and
low-k each sorted their own way) and ``round(k F)`` pixels are replaced. Every sample costs
1 + 2K rows (the clean input and both curves), ``batch_size`` rows per pass.
"""

from __future__ import annotations

from typing import Any, Sequence

import torch
from torch import Tensor, nn

from ...core.checks import check_target_range
from ...core.perturbation import (
    FeatureLayout,
    check_baseline,
    check_fractions,
    feature_counts,
    normalized_auc,
    rank_features,
    replacement,
)
from ..base import CurveMetric, register

OUTPUT_CHANGES = ("prob", "logit", "kl")


@register
class TopkLowkArea(CurveMetric):
    """Area between the top-k and low-k perturbation curves of the output change (paper 05,
    section 4.2.3, Table 3; higher is better; module docstring)."""

    name = "topk_lowk_area"
    category = "faithfulness"
    higher_is_better = True
    fast = False  # 1 + 2K passes (23 by default): not in attrlab bench's default set
    cost_formula = "1 + 2K forward passes per sample (K fractions, top-k and low-k)"

    def __init__(self, fractions: Sequence[float] | Tensor | None = None, *,
                 baseline: float = 0.0, output: str = "prob", batch_size: int = 256) -> None:
        super().__init__(batch_size=batch_size)
        self.fractions = check_fractions(torch.arange(11, dtype=torch.float64) / 10
                                         if fractions is None else fractions)
        baseline = check_baseline(baseline)
        if isinstance(baseline, str):
            raise ValueError("baseline must be a number (the gray value in the inputs' units)")
        self.baseline = baseline
        if output not in OUTPUT_CHANGES:
            raise ValueError(f"output must be one of {OUTPUT_CHANGES}, got {output!r}")
        self.output = output

    def forward_passes(self, **info: Any) -> float:
        self._cost_info(info)
        return float(1 + 2 * self.fractions.numel())

    def summarize(self, x: Tensor, y: Tensor) -> Tensor:
        return normalized_auc(x, y)

    @torch.no_grad()
    def curves(self, model: nn.Module, inputs: Tensor, targets: Tensor,
               attributions: Tensor) -> tuple[Tensor, Tensor]:
        """d_top and d_low, each (N, K), on validated inputs (model already guarded)."""
        layout = FeatureLayout(inputs.shape[1:])
        scores = layout.scores(attributions)
        ranks = torch.stack([rank_features(scores, True), rank_features(scores, False)], 1)
        counts = feature_counts(self.fractions, layout.n_features).to(inputs.device)
        n, k = inputs.shape[0], counts.shape[0]
        per = 1 + 2 * k  # row 0: clean; 1..k: top-k; k+1..2k: low-k
        x3 = layout.view(inputs)
        b3 = layout.view(replacement(inputs, self.baseline))
        logits = []
        for start in range(0, n * per, self.batch_size):
            r = torch.arange(start, min(start + self.batch_size, n * per), device=inputs.device)
            i, j = r // per, r % per
            which = ((j - 1) // k).clamp(0, 1)
            count = torch.where(j == 0, torch.zeros_like(j), counts[(j - 1) % k])
            removed = ranks[i, which] < count[:, None]
            rows = torch.where(layout.expand(removed), b3[i], x3[i])
            out = model(rows.reshape(r.shape[0], *inputs.shape[1:]))
            logits.append(out)
        z = torch.cat(logits).view(n, per, -1)
        check_target_range(targets, z.shape[2])
        if self.output == "kl":
            log_p = torch.log_softmax(z, 2)
            d = (log_p[:, :1].exp() * (log_p[:, :1] - log_p[:, 1:])).sum(2)
        else:
            v = torch.softmax(z, 2) if self.output == "prob" else z
            v = v.gather(2, targets.view(n, 1, 1).expand(n, per, 1)).squeeze(2)
            d = v[:, :1] - v[:, 1:]
        return d[:, :k], d[:, k:]

    def _curve(self, model: nn.Module, inputs: Tensor, targets: Tensor, attributions: Tensor,
               **_: Any) -> tuple[Tensor, Tensor]:
        top, low = self.curves(model, inputs, targets, attributions)
        return self.fractions.to(device=inputs.device, dtype=inputs.dtype), top - low
