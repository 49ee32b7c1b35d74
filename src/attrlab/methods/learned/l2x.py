"""L2X, learning to explain (Chen et al. 2018, sections 3-4), on the learned-explainer base."""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor, nn

from ..base import Option, number_in, register
from .base import LearnedExplainer


def concrete_subset(logits: Tensor, k: int, tau: float, generator: torch.Generator) -> Tensor:
    """L2X's relaxed k-subset (Chen et al. 2018, section 4, eq. 6): k independent Concrete
    (Gumbel-softmax) samples C^j = softmax((logits + G^j) / tau) over the d features of each
    row of ``logits`` (N, d), G^j i.i.d. Gumbel(0, 1) from ``generator``, and their
    elementwise maximum V_i = max_j C^j_i; (N, d) in [0, 1]. The same feature can be drawn
    twice, so V selects at most k features (paper 05, Appendix A)."""
    u = torch.rand((k,) + tuple(logits.shape), generator=generator, device=generator.device,
                   dtype=logits.dtype).to(logits.device)
    tiny = torch.finfo(logits.dtype).tiny
    gumbel = -torch.log((-torch.log(u.clamp_min(tiny))).clamp_min(tiny))
    return torch.softmax((logits + gumbel) / tau, dim=2).amax(0)


@register
class L2X(LearnedExplainer):
    """L2X (Chen et al. 2018): an explainer network gives a logit per cell of an
    (H/m, W/m) grid; training samples a relaxed subset of k = ``k_fraction`` of the cells
    (:func:`concrete_subset`, temperature ``tau``), keeps the input there (x * V, V
    bilinearly upsampled to (H, W); zero elsewhere, as L2X) and maximises the agreement of
    the model on the kept features with its output on the full input,
    E[sum_c p_c(x) log p_c(x * V)] (eq. 5's variational bound).

    Choice (documented): L2X trains a separate approximator q(y | x_S) next to the explainer;
    here, as in paper 05's comparison (the explainer explains the classifier's whole output),
    the frozen classifier itself is q. Explanation: the explainer's logits, upsampled (the
    hard top-k of them is L2X's selected subset). Defaults: ``k_fraction`` 0.2 and ``tau``
    0.5 (paper 05, section 4.3, uses k = 20 %; Chen et al. use tau 0.5 on IMDB)."""

    name = "l2x"
    default_set = False  # its explainer must be trained first
    reference = "Chen et al. 2018, sections 3-4"
    recipe_keys = ("k_fraction", "tau", "batch_size", "lr")
    options = {
        "k_fraction": Option(0.2, number_in(0.0, 1.0, lo_open=True), "k as a fraction of cells"),
        "tau": Option(0.5, number_in(0.0, math.inf, lo_open=True), "Concrete temperature"),
    }

    def _config(self, x: Tensor, num_classes: int, m: int) -> dict[str, Any]:
        return {**super()._config(x, num_classes, m), "method": self.name}

    def _loss(self, explainer: nn.Module, x: Tensor, gen: torch.Generator) -> Tensor:
        with torch.no_grad():
            p = torch.softmax(self.forward(x), 1)
        logits = explainer(x)
        n, _, h, w = logits.shape
        k = max(1, round(self.defaults["k_fraction"] * h * w))
        v = concrete_subset(logits.flatten(1), k, self.defaults["tau"], gen).view(n, 1, h, w)
        log_q = torch.log_softmax(self.forward(x * self.upsampled(v, tuple(x.shape[2:]))), 1)
        return -(p * log_q).sum(1).mean()
