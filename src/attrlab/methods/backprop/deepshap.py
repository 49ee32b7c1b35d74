"""DeepSHAP: DeepLIFT averaged over a baseline distribution (Lundberg & Lee 2017)."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from ...core.checks import check_batch_size, check_like
from ...core.rules import Composite, deeplift_composite
from ..base import Attribution, chunks, register
from .deeplift import DeepLift


@register
class DeepLiftShap(Attribution):
    """DeepSHAP (Lundberg & Lee 2017, section 4.2 "Deep SHAP"): DeepLIFT averaged over a
    distribution of baselines, phi(x) = mean_j DeepLIFT(x; x'_j).

    ``baselines`` is a (B, ...) batch of reference samples; every input is paired with every
    baseline (N * B rows, processed ``internal_batch_size`` rows at a time). ``composite``
    replaces DeepLIFT's rules (see :class:`DeepLift`).
    """

    name = "deepshap"

    def __init__(self, model: nn.Module, eps: float = 1e-10,
                 internal_batch_size: int | None = None,
                 composite: Composite | None = None) -> None:
        super().__init__(model)
        if composite is None:
            composite = deeplift_composite(eps, who="deepshap")
        self.deeplift = DeepLift(model, eps=eps, composite=composite)
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
