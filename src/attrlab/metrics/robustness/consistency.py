"""Consistency to the map resolution (paper 05, section 4.2.1): how similar a mask-based
method's maps stay when the mask is built at different upsample sizes m.

For each pair (m1, m2) of ``pairs`` (default {1, 2}, {2, 4}, {1, 4}, the paper's MNIST
setting; {4, 8}, {8, 16}, {4, 16} otherwise) the method's maps at the two sizes are compared
per sample and the score is the mean over the pairs (the paper averages the three
measurements). Definitions (documented choices; the paper gives none beyond the names):

* **Maps at size m.** ``variant(method, m)`` gives the method at size m; by default
  ``method.bind(**{method.resolution_option: m})``, for methods that declare the name of
  their resolution option (VP/nVP: ``upsample``; the explainer must be fitted at m). A method
  without one is refused by name (InputGrad and AP have no mask size: the paper leaves them
  out of this table). The given ``attributions`` are validated but not used.
* **Normalisation.** Each map is summed over channels and min-max normalised to [0, 1] per
  sample (a constant map becomes zeros), so maps on different scales compare.
* **Similarities.** ``"ssim"``: scikit-image's ``structural_similarity`` (7x7 window, shrunk
  to fit small maps; data range of the pair), through
  :func:`attrlab.metrics.randomisation.similarity`; ``"pearson"``: Pearson correlation of the
  flattened maps (1.0 for identical constant maps, 0.0 for other constant ones);
  ``"psnr"``: 10 log10(1 / MSE) in dB for maps in [0, 1], the MSE floored at 1e-10 (identical
  maps score 100 dB).
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import numpy as np
import torch
from torch import Tensor, nn

from ...methods.base import Attribution
from ..base import Metric, MetricResult, register
from ..randomisation.model_randomisation import similarity

SIMILARITIES = ("ssim", "pearson", "psnr")
MNIST_PAIRS = ((1, 2), (2, 4), (1, 4))
LARGE_PAIRS = ((4, 8), (8, 16), (4, 16))
PSNR_MSE_FLOOR = 1e-10


def minmax_maps(attributions: Tensor) -> np.ndarray:
    """(N, C, H, W) or (N, H, W) maps -> (N, H, W) float64 in [0, 1]: summed over channels,
    min-max normalised per sample (constant maps -> 0)."""
    a = attributions.detach().to("cpu", torch.float64)
    if a.dim() == 4:
        a = a.sum(1)
    flat = a.flatten(1)
    lo = flat.amin(1).view(-1, 1, 1)
    span = (flat.amax(1) - flat.amin(1)).view(-1, 1, 1)
    return ((a - lo) / torch.where(span > 0, span, torch.ones_like(span))).numpy()


def map_similarity(a: np.ndarray, b: np.ndarray, kind: str) -> Tensor:
    """Per-sample similarity (N,) of two batches of [0, 1] maps (module docstring)."""
    if kind not in SIMILARITIES:
        raise ValueError(f"unknown similarity {kind!r}; use one of {', '.join(SIMILARITIES)}")
    if kind == "psnr":
        mse = ((a - b) ** 2).reshape(a.shape[0], -1).mean(1)
        return torch.from_numpy(10 * np.log10(1.0 / np.maximum(mse, PSNR_MSE_FLOOR)))
    return similarity(a, b, kind, prepared=True).double()


def _check_pairs(pairs: Any) -> tuple[tuple[int, int], ...]:
    try:
        out = tuple((int(a), int(b)) for a, b in pairs)
    except (TypeError, ValueError):
        raise ValueError(f"pairs must be pairs of sizes, e.g. ((1, 2), (2, 4)); got {pairs!r}") \
            from None
    if not out or any(a < 1 or b < 1 or a == b for a, b in out):
        raise ValueError(f"pairs must be pairs of two different positive sizes; got {pairs!r}")
    return out


def resolution_variant(method: Attribution, size: int) -> Attribution:
    """``method`` bound to mask size ``size`` through its declared ``resolution_option``."""
    option = getattr(method, "resolution_option", None)
    if not isinstance(option, str):
        raise ValueError(f"method {method.name or type(method).__name__!r} builds no mask at a "
                         "resolution (no resolution_option): consistency needs a mask-based "
                         "method, or pass variant=(method, size) -> method")
    return method.bind(**{option: size})


@register
class Consistency(Metric):
    """Consistency of a mask-based method's maps across upsample sizes (paper 05, section
    4.2.1, Table 1; higher is better): mean over ``pairs`` of SSIM, Pearson or PSNR
    (``similarity``) between the maps at the two sizes (module docstring)."""

    name = "consistency"
    category = "robustness"
    higher_is_better = True
    needs_method = True
    fast = False  # needs a mask-based method: not in attrlab bench's default set
    cost_formula = "one method call per sample and distinct size in pairs, no own passes"

    def __init__(self, pairs: Sequence[Sequence[int]] = MNIST_PAIRS, similarity: str = "ssim",
                 variant: Callable[[Attribution, int], Attribution] | None = None,
                 batch_size: int = 256) -> None:
        super().__init__(batch_size=batch_size)
        self.pairs = _check_pairs(pairs)
        if similarity not in SIMILARITIES:
            raise ValueError(f"similarity must be one of {SIMILARITIES}, got {similarity!r}")
        self.similarity = similarity
        if variant is not None and not callable(variant):
            raise TypeError("variant must be a callable (method, size) -> method")
        self.variant = variant or resolution_variant

    @property
    def sizes(self) -> list[int]:
        return sorted({s for p in self.pairs for s in p})

    def forward_passes(self, **info: Any) -> float:
        self._cost_info(info)
        return 0.0

    def method_calls(self, **info: Any) -> float:
        self._cost_info(info)
        return float(len(self.sizes))

    def maps_at_sizes(self, method: Attribution, inputs: Tensor, targets: Tensor
                      ) -> dict[int, np.ndarray]:
        """The method's normalised maps (N, H, W) at every size of ``pairs``."""
        out = {}
        for size in self.sizes:
            m = self.variant(method, size)
            maps = torch.cat([m.attribute(inputs[i:i + self.batch_size],
                                          target=targets[i:i + self.batch_size]).detach()
                              for i in range(0, inputs.shape[0], self.batch_size)])
            out[size] = minmax_maps(maps)
        return out

    def _compute(self, model: nn.Module, inputs: Tensor, targets: Tensor, attributions: Tensor,
                 *, method: Attribution | None = None, ground_truth=None):
        maps = self.maps_at_sizes(method, inputs, targets)
        values = torch.stack([map_similarity(maps[a], maps[b], self.similarity)
                              for a, b in self.pairs])
        return MetricResult(values.mean(0).to(device=inputs.device, dtype=inputs.dtype))
