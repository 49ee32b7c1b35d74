"""DeepSHAP: DeepLIFT averaged over a baseline distribution (Lundberg & Lee 2017)."""

from __future__ import annotations

import math
from typing import Any, Mapping

import torch
from torch import Tensor, nn

from ...core.checks import check_like
from ...core.rules import Composite
from ..base import (
    Attribution,
    Option,
    batch_size_or_none,
    chunks,
    number_in,
    positive_int,
    register,
)
from .deeplift import DeepLift


@register
class DeepLiftShap(Attribution):
    """DeepSHAP (Lundberg & Lee 2017, section 4.2 "Deep SHAP"): DeepLIFT averaged over a
    distribution of baselines, phi(x) = mean_j DeepLIFT(x; x'_j).

    The baselines are a (B, ...) batch of reference samples: learned by :meth:`fit` from a data
    set (``n_baselines`` samples drawn with the given generator, default seed 0), restored by
    :meth:`load_state_dict`, or given as the ``baselines`` option, which wins. Every input is
    paired with every baseline (N * B rows, processed ``internal_batch_size`` rows at a time).
    ``composite`` replaces DeepLIFT's rules (see :class:`DeepLift`).
    """

    name = "deepshap"
    needs_data = True
    reference = "Lundberg & Lee 2017, section 4.2"
    options = {
        "eps": Option(1e-10, number_in(0.0, math.inf), "as DeepLIFT's"),
        "internal_batch_size": Option(None, batch_size_or_none, "(input, baseline) rows per pass"),
        "baselines": Option(None, None, "(B, ...) reference batch; overrides the fitted one"),
        "n_baselines": Option(16, positive_int, "reference samples drawn by fit"),
    }

    def __init__(self, model: nn.Module, composite: Composite | None = None,
                 **options: Any) -> None:
        super().__init__(model, **options)
        self.deeplift = DeepLift(model, composite=composite, eps=self.defaults["eps"])
        self.deeplift.who = self.name  # refusals name the method the user called
        self.fitted_baselines: Tensor | None = None

    @classmethod
    def cost(cls, n_baselines: int = 16, baselines: Any = None, **options: Any) -> float:
        b = baselines.shape[0] if isinstance(baselines, Tensor) and baselines.dim() else n_baselines
        return 2.0 * b

    # -- data --------------------------------------------------------------------------------
    @property
    def fitted(self) -> bool:
        return self.fitted_baselines is not None

    def _has_data(self, options: Mapping[str, Any]) -> bool:
        return options["baselines"] is not None

    def _data_hint(self) -> str:
        return " or pass baselines= (deepshap needs baselines: a (B, ...) batch of reference " \
               "samples)"

    def fit(self, data: Any, *, generator: torch.Generator | None = None) -> "DeepLiftShap":
        """Draw ``n_baselines`` reference samples from ``data`` (a dataset with ``len`` and
        ``tensors(indices)``, or a tensor batch): ``torch.randperm(len(data), generator)``'s
        first ``n_baselines`` indices, the generator seeded with 0 by default."""
        gen = torch.Generator().manual_seed(0) if generator is None else generator
        n = len(data)
        if n < 1:
            raise ValueError("deepshap.fit: the data set is empty")
        pick = torch.randperm(n, generator=gen)[: self.defaults["n_baselines"]]
        if isinstance(data, Tensor):
            b = data[pick.to(data.device)]
        elif hasattr(data, "tensors"):
            b, _ = data.tensors(pick)
        else:
            b = torch.stack([torch.as_tensor(data[int(i)][0]) for i in pick])
        if not b.is_floating_point():
            raise TypeError(f"deepshap.fit: the data's inputs must be floating point, got {b.dtype}")
        self.fitted_baselines = b.detach()
        return self

    def state_dict(self) -> dict[str, Any]:
        return {} if self.fitted_baselines is None else {"baselines": self.fitted_baselines}

    def load_state_dict(self, state: Mapping[str, Any]) -> "DeepLiftShap":
        if set(state) != {"baselines"} or not isinstance(state["baselines"], Tensor):
            raise ValueError(f"deepshap state must be {{'baselines': Tensor}}, got keys "
                             f"{sorted(state)}")
        self.fitted_baselines = state["baselines"].detach()
        return self

    # -- attribution -------------------------------------------------------------------------
    def _check_baselines(self, inputs: Tensor, baselines: Any) -> Tensor:
        if baselines is None:
            baselines = self.fitted_baselines
        if baselines is None:
            raise ValueError("deepshap needs baselines: a (B, ...) batch of reference samples "
                             "(fit(data) or baselines=)")
        b = check_like("baselines", baselines, inputs, any_batch=True)
        if b.dim() != inputs.dim() or b.shape[1:] != inputs.shape[1:]:
            raise ValueError(
                f"deepshap baselines must be a batch shaped like the inputs (B, "
                f"{', '.join(map(str, inputs.shape[1:]))}); got {tuple(b.shape)}"
            )
        return b

    def _attribute(self, inputs: Tensor, target: Tensor, baselines: Any, eps: float,
                   internal_batch_size: int | None, n_baselines: int) -> Tensor:
        b = self._check_baselines(inputs, baselines)
        n, nb = inputs.shape[0], b.shape[0]
        rows_x = inputs.repeat_interleave(nb, 0)
        rows_b = b.repeat((n,) + (1,) * (inputs.dim() - 1))
        rows_t = target.repeat_interleave(nb)
        out = torch.cat([
            self.deeplift.attribute(rows_x[sl], rows_t[sl], baselines=rows_b[sl], eps=eps)
            for sl in chunks(n * nb, internal_batch_size)
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
