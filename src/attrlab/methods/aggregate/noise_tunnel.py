"""SmoothGrad: the noise tunnel around any registered method (Smilkov et al. 2017)."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from ...core.checks import check_batch_size
from ..base import Attribution, chunks, get, register


@register
class NoiseTunnel(Attribution):
    """SmoothGrad (Smilkov et al. 2017, eq. 2) around any registered method:
    mean over samples of A(x + N(0, sigma^2)); ``nt_type="smoothgrad_sq"`` averages A^2 and
    ``"vargrad"`` takes the variance.

    ``stdevs`` is the absolute noise standard deviation (Captum's meaning); if ``None`` it is
    ``noise_level * (max(x) - min(x))`` per sample (the SmoothGrad paper's 10-20 %). Noise is
    drawn as Captum draws it (one ``torch.normal`` per chunk of ``nt_samples_batch_size``
    samples, inputs repeated interleaved), so under the same seed both give the same map as
    long as the inputs have torch's default dtype (Captum draws in the default dtype, attrlab
    in the inputs' dtype).
    """

    name = "smoothgrad"

    def __init__(self, model: nn.Module, base: str | Attribution = "saliency",
                 nt_type: str = "smoothgrad", nt_samples: int = 25,
                 stdevs: float | None = None, noise_level: float = 0.15,
                 nt_samples_batch_size: int | None = None, **base_options: Any) -> None:
        super().__init__(model)
        self.base = base if isinstance(base, Attribution) else get(base, model, **base_options)
        if self.base.model is not model:
            raise ValueError("the base method must be built on the same model")
        if nt_type not in ("smoothgrad", "smoothgrad_sq", "vargrad"):
            raise ValueError(f"nt_type must be smoothgrad, smoothgrad_sq or vargrad; got {nt_type!r}")
        self.nt_type, self.nt_samples, self.stdevs = nt_type, nt_samples, stdevs
        self.noise_level = noise_level
        self.nt_samples_batch_size = check_batch_size("nt_samples_batch_size", nt_samples_batch_size)
        self.signed = self.base.signed and nt_type == "smoothgrad"

    def _attribute(self, inputs: Tensor, target: Tensor, nt_samples: int | None = None,
                   stdevs: float | None = None, nt_samples_batch_size: int | None = None,
                   **base_options: Any) -> Tensor:
        k_total = nt_samples or self.nt_samples
        if not isinstance(k_total, int) or k_total < 1:
            raise ValueError(f"nt_samples must be a positive int, got {k_total!r}")
        std = self.stdevs if stdevs is None else stdevs
        n = inputs.shape[0]
        if std is None:
            rng = inputs.flatten(1).amax(1) - inputs.flatten(1).amin(1)
            std_rows = (self.noise_level * rng).view((-1,) + (1,) * (inputs.dim() - 1))
        else:
            std_rows = torch.tensor(float(std), dtype=inputs.dtype, device=inputs.device)
        batch = nt_samples_batch_size or self.nt_samples_batch_size or k_total
        s1 = torch.zeros_like(inputs)
        s2 = torch.zeros_like(inputs)
        for sl in chunks(k_total, batch):
            k = sl.stop - sl.start
            rows = inputs.repeat_interleave(k, 0)
            scale = std_rows.repeat_interleave(k, 0) if std_rows.dim() else std_rows
            noise = torch.normal(0.0, scale.expand_as(rows).contiguous())
            opts = {key: (v.repeat_interleave(k, 0) if isinstance(v, Tensor) and v.dim()
                          and v.shape[0] == n else v) for key, v in base_options.items()}
            a = self.base._attribute(rows + noise, target.repeat_interleave(k), **opts)
            a = a.expand_as(rows).reshape((n, k) + inputs.shape[1:])
            s1 += a.sum(1)
            s2 += (a * a).sum(1)
        mean, mean_sq = s1 / k_total, s2 / k_total
        if self.nt_type == "smoothgrad":
            return mean
        if self.nt_type == "smoothgrad_sq":
            return mean_sq
        return mean_sq - mean * mean
