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
    expand_args,
    generator_or_none,
    number_in,
    one_of,
    positive_int,
    register,
)


def _stdevs(name: str, value: Any) -> float | tuple[float, ...] | None:
    """None, a finite number >= 0, or a tuple of them (one per input, as in Captum)."""
    if isinstance(value, tuple):
        return tuple(number_in(0.0, math.inf)(name, v) for v in value)
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
    as baselines are repeated with the noisy copies, as are those of
    ``additional_forward_args``).

    A tuple of inputs (when the base method takes one) gets noise per input, drawn in input
    order per chunk as Captum does; ``stdevs`` may then be a tuple, one per input. With
    ``return_convergence_delta=True`` (base methods with a delta) the delta of every noisy
    sample is returned, shape (N * nt_samples,), in Captum's order (chunk by chunk, sample-major
    within a chunk).
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

    def __init__(self, model: nn.Module | Attribution, base: str | Attribution = "saliency",
                 **options: Any) -> None:
        if isinstance(model, Attribution):  # Captum's spelling: NoiseTunnel(attribution_method)
            if isinstance(base, Attribution):
                raise ValueError("give the wrapped method once: NoiseTunnel(method) or "
                                 "NoiseTunnel(model, base=method)")
            base, model = model, model.forward_func
        own = self._wrap(model, base, options)
        super().__init__(model, **own)
        self.multi_input = self.base.multi_input
        self.signed = self.base.signed and self.defaults["nt_type"] == "smoothgrad"

    @classmethod
    def cost(cls, nt_samples: int = 25, **options: Any) -> float:
        return float(nt_samples)  # times the base method's cost

    def has_convergence_delta(self) -> bool:
        return self.base.has_convergence_delta()

    def _attribute(self, inputs: Tensor | tuple[Tensor, ...], target: Tensor, **options: Any
                   ) -> Tensor | tuple[Tensor, ...]:
        return self._tunnel(inputs, target, **options)[0]

    def _attribute_and_delta(self, inputs: Tensor | tuple[Tensor, ...], target: Tensor,
                             args: tuple, options: dict) -> tuple[Any, Tensor]:
        """The smoothed map and the base method's delta of every noisy sample, shape
        (N * nt_samples,), in Captum's order: chunk by chunk of ``nt_samples_batch_size``
        samples, sample-major within a chunk."""
        return self._tunnel(inputs, target, additional_forward_args=args, with_delta=True,
                            **options)

    def _tunnel(self, inputs: Tensor | tuple[Tensor, ...], target: Tensor, nt_type: str,
                nt_samples: int, stdevs: float | tuple[float, ...] | None, noise_level: float,
                nt_samples_batch_size: int | None, generator: torch.Generator | None,
                forwarded: dict[str, Any], additional_forward_args: tuple = (),
                with_delta: bool = False) -> tuple[Any, Tensor | None]:
        is_tuple = isinstance(inputs, tuple)
        xs = inputs if is_tuple else (inputs,)
        n = xs[0].shape[0]
        gen = generator_for(xs[0].device, generator)
        if isinstance(stdevs, tuple) and len(stdevs) != len(xs):
            raise ValueError(f"stdevs has {len(stdevs)} entries but there are {len(xs)} inputs")
        std_rows = []
        for i, x in enumerate(xs):
            sd = stdevs[i] if isinstance(stdevs, tuple) else stdevs
            if sd is None:
                rng = x.flatten(1).amax(1) - x.flatten(1).amin(1)
                std_rows.append((noise_level * rng).view((-1,) + (1,) * (x.dim() - 1)))
            else:
                std_rows.append(torch.tensor(float(sd), dtype=x.dtype, device=x.device))
        batch = nt_samples_batch_size or nt_samples
        s1 = [torch.zeros_like(x) for x in xs]
        s2 = [torch.zeros_like(x) for x in xs]
        deltas = []
        for sl in chunks(nt_samples, batch):
            k = sl.stop - sl.start
            noisy = []
            for x, std in zip(xs, std_rows):  # Captum's order: one draw per input per chunk
                rows = x.repeat_interleave(k, 0)
                scale = std.repeat_interleave(k, 0) if std.dim() else std
                noisy.append(rows + normal(scale.expand_as(rows).contiguous(), gen))
            opts = {key: _repeat_per_sample(v, n, k) for key, v in forwarded.items()}
            out = self.base.attribute(
                tuple(noisy) if is_tuple else noisy[0], target.repeat_interleave(k),
                return_convergence_delta=with_delta,
                additional_forward_args=expand_args(additional_forward_args, n, k, True), **opts)
            if with_delta:
                out, delta = out
                deltas.append(delta)
            for i, a in enumerate(out if is_tuple else (out,)):
                a = a.reshape((n, k) + xs[i].shape[1:])
                s1[i] += a.sum(1)
                s2[i] += (a * a).sum(1)
        maps = []
        for t1, t2 in zip(s1, s2):
            mean, mean_sq = t1 / nt_samples, t2 / nt_samples
            maps.append(mean if nt_type == "smoothgrad" else mean_sq if nt_type == "smoothgrad_sq"
                        else mean_sq - mean * mean)
        return (tuple(maps) if is_tuple else maps[0]), (torch.cat(deltas) if with_delta else None)


def _repeat_per_sample(value: Any, n: int, k: int) -> Any:
    """A per-sample tensor option (dimension 0 = n, e.g. baselines), or a tuple of them,
    repeated interleaved like the noisy copies; anything else as it is."""
    if isinstance(value, tuple):
        return tuple(_repeat_per_sample(v, n, k) for v in value)
    if isinstance(value, Tensor) and value.dim() and value.shape[0] == n:
        return value.repeat_interleave(k, 0)
    return value
