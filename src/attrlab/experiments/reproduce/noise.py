"""Maps under input noise (paper 04, section 3.1 and Figure 2): Gaussian pixel noise in the
normalised input space and the consistency of attribution maps between a clean and a noisy
input (SSIM of the two maps, MoRF/LeRF AUC of each)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor, nn


def add_pixel_noise(x: Tensor, sigma: float, std: Sequence[float], seed: int = 0) -> Tensor:
    """``x`` (normalised (N, C, H, W) images) plus Gaussian noise of standard deviation
    ``sigma`` in [0, 1] pixel units, i.e. ``sigma / std_c`` in channel c of the normalised
    input (paper 04, section 3.1: x' = x + eps, eps ~ N(0, sigma I)); drawn from a CPU
    generator seeded with ``seed``. Not clipped."""
    if not sigma >= 0:
        raise ValueError(f"sigma must be non-negative, got {sigma!r}")
    gen = torch.Generator().manual_seed(seed)
    eps = torch.randn(x.shape, generator=gen, dtype=x.dtype)
    scale = torch.as_tensor(std, dtype=x.dtype).view(1, -1, 1, 1)
    return x + (sigma * eps / scale).to(x.device)


def noise_consistency(model: nn.Module, methods: Mapping[str, Any], x: Tensor, y: Tensor,
                      x_noisy: Tensor) -> tuple[dict[str, dict[str, list[float]]],
                                                dict[str, tuple[Tensor, Tensor]]]:
    """Figure 2's numbers: per method (name -> attribution object), per image, the SSIM of
    the maps of ``x`` and ``x_noisy`` (:func:`attrlab.metrics.sanity.similarity`: channel sum,
    max-abs normalisation, 7x7 window) and the MoRF/LeRF AUC (section 4.1) of each map on its
    own input, explaining ``y`` in both. Also returns the maps (clean, noisy)."""
    from ...metrics import get as get_metric
    from ...metrics.randomisation import similarity

    morf, lerf = get_metric("morf"), get_metric("lerf")
    scores: dict[str, dict[str, list[float]]] = {}
    maps: dict[str, tuple[Tensor, Tensor]] = {}
    for name, method in methods.items():
        a = method.attribute(x, y).detach()
        b = method.attribute(x_noisy, y).detach()
        scores[name] = {
            "ssim": similarity(a, b, "ssim").tolist(),
            "morf_clean": morf.evaluate(model, x, y, a).tolist(),
            "morf_noisy": morf.evaluate(model, x_noisy, y, b).tolist(),
            "lerf_clean": lerf.evaluate(model, x, y, a).tolist(),
            "lerf_noisy": lerf.evaluate(model, x_noisy, y, b).tolist(),
        }
        maps[name] = (a.cpu(), b.cpu())
    return scores, maps


__all__ = ["add_pixel_noise", "noise_consistency"]
