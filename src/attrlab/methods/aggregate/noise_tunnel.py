"""SmoothGrad: the noise tunnel around any registered method (Smilkov et al. 2017)."""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor, nn

from ...core.rng import generator_for, normal
from ..base import (
    Attribution,
    Option,
    batch_size_or_none,
    chunks,
    generator_or_none,
    get,
    number_in,
    one_of,
    positive_int,
    register,
)


def _stdevs(name: str, value: Any) -> float | None:
    """None or a finite number >= 0."""
    return None if value is None else number_in(0.0, math.inf)(name, value)


@register
class NoiseTunnel(Attribution):
    """SmoothGrad (Smilkov et al. 2017, eq. 2) around any registered method:
    mean over samples of A(x + N(0, sigma^2)); ``nt_type="smoothgrad_sq"`` averages A^2 and
    ``"vargrad"`` takes the variance.

    ``stdevs`` is the absolute noise standard deviation (Captum's meaning); if ``None`` it is
    ``noise_level * (max(x) - min(x))`` per sample (the SmoothGrad paper's 10-20 %). Noise comes
    from ``generator`` (default: a fresh generator seeded with 0, so a call repeats) and is
    drawn as Captum draws it (one ``torch.normal`` per chunk of ``nt_samples_batch_size``
    samples, inputs repeated interleaved): with ``generator=torch.Generator().manual_seed(s)``
    attrlab gives Captum's map after ``torch.manual_seed(s)`` as long as the inputs have torch's
    default dtype (Captum draws in the default dtype, attrlab in the inputs' dtype). Options the
    constructor or ``attribute`` does not know go to the base method (per-sample tensors such
    as baselines are repeated with the noisy copies).
    """

    name = "smoothgrad"
    random = True
    reference = "Smilkov et al. 2017, eq. 2"
    wraps = "base"
    options = {
        "nt_type": Option("smoothgrad", one_of("smoothgrad", "smoothgrad_sq", "vargrad")),
        "nt_samples": Option(25, positive_int, "noisy samples per input"),
        "stdevs": Option(None, _stdevs, "absolute noise std (None: noise_level x range)"),
        "noise_level": Option(0.15, number_in(0.0, math.inf), "noise std / (max - min) of "
                              "each sample, when stdevs is None"),
        "nt_samples_batch_size": Option(None, batch_size_or_none, "noisy samples per pass"),
        "generator": Option(None, generator_or_none, "torch.Generator of the noise (None: a "
                            "fresh one seeded with 0)"),
    }

    def __init__(self, model: nn.Module, base: str | Attribution = "saliency",
                 **options: Any) -> None:
        own = {k: v for k, v in options.items() if k in self.option_specs()}
        base_options = {k: v for k, v in options.items() if k not in own}
        self.base = base if isinstance(base, Attribution) else get(base, model, **base_options)
        if isinstance(base, Attribution) and base_options:
            raise ValueError(f"options {sorted(base_options)} are for the base method: pass "
                             "them to it or as attribute() options")
        if self.base.model is not model:
            raise ValueError("the base method must be built on the same model")
        super().__init__(model, **own)
        self.signed = self.base.signed and self.defaults["nt_type"] == "smoothgrad"

    @classmethod
    def cost(cls, nt_samples: int = 25, **options: Any) -> float:
        return float(nt_samples)  # times the base method's cost

    def _attribute(self, inputs: Tensor, target: Tensor, nt_type: str, nt_samples: int,
                   stdevs: float | None, noise_level: float,
                   nt_samples_batch_size: int | None, generator: torch.Generator | None,
                   forwarded: dict[str, Any]) -> Tensor:
        n = inputs.shape[0]
        gen = generator_for(inputs.device, generator)
        if stdevs is None:
            rng = inputs.flatten(1).amax(1) - inputs.flatten(1).amin(1)
            std_rows = (noise_level * rng).view((-1,) + (1,) * (inputs.dim() - 1))
        else:
            std_rows = torch.tensor(float(stdevs), dtype=inputs.dtype, device=inputs.device)
        batch = nt_samples_batch_size or nt_samples
        s1 = torch.zeros_like(inputs)
        s2 = torch.zeros_like(inputs)
        for sl in chunks(nt_samples, batch):
            k = sl.stop - sl.start
            rows = inputs.repeat_interleave(k, 0)
            scale = std_rows.repeat_interleave(k, 0) if std_rows.dim() else std_rows
            noise = normal(scale.expand_as(rows).contiguous(), gen)
            opts = {key: (v.repeat_interleave(k, 0) if isinstance(v, Tensor) and v.dim()
                          and v.shape[0] == n else v) for key, v in forwarded.items()}
            a = self.base.attribute(rows + noise, target.repeat_interleave(k), **opts)
            a = a.reshape((n, k) + inputs.shape[1:])
            s1 += a.sum(1)
            s2 += (a * a).sum(1)
        mean, mean_sq = s1 / nt_samples, s2 / nt_samples
        if nt_type == "smoothgrad":
            return mean
        if nt_type == "smoothgrad_sq":
            return mean_sq
        return mean_sq - mean * mean
