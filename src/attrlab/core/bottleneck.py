"""Information-bottleneck machinery shared by IBA (Schulz et al. 2020) and InputIBA (paper 02).

* :class:`LayerStatistics`: per-element mean, unbiased std and fraction of non-zero values of a
  layer's output, estimated in one streaming pass (batches merged with Chan et al.'s parallel
  update, no loop over samples).
* :func:`estimate_layer_statistics`: that pass over a data set, the model stopped right after
  the layer.
* :func:`replace_output` / :func:`layer_output`: a forward hook that replaces a module's output
  (the bottleneck) or stops the model once the layer has run (features only); removed in
  ``finally``.
* :func:`iba_kl` (IBA's capacity, KL[N(lambda r, (1-lambda)^2) || N(0, 1)]) and
  :func:`prior_kl` (paper 02, Proposition 3: the KL with the GAN's mask lambda_G as prior).
* :func:`gaussian_smooth` (IBA's smoothing of lambda) and :func:`capacity_map` (capacity in
  bits, per-pixel scaled, resized to the input).
* :func:`optimise_mask`: the batched Adam loop over per-sample mask logits alpha.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .checks import data_inputs
from .hooks import HookSet
from .optimise import optimise

# ------------------------------------------------------------------------------ statistics

class LayerStatistics:
    """Running per-element statistics of a layer's output over samples (IBA's "estimator").

    :meth:`update` merges a (B, ...) batch at once (Chan, Golub & LeVeque's pairwise update
    of mean and sum of squared deviations, accumulated in float64), so the result equals the
    authors' one-sample-at-a-time Welford loop up to rounding. ``std`` is the unbiased one;
    ``active`` marks elements that are non-zero in more than ``threshold`` of the samples.
    """

    def __init__(self) -> None:
        self.n = 0
        self.mean: Tensor | None = None
        self.m2: Tensor | None = None
        self.nonzero: Tensor | None = None

    def update(self, batch: Tensor) -> None:
        """Merge a (B, ...) batch of layer outputs."""
        b = batch.detach().to(torch.float64)
        k = b.shape[0]
        if k == 0:
            return
        mean = b.mean(0)
        m2 = ((b - mean) ** 2).sum(0)
        nonzero = (b != 0).sum(0, dtype=torch.float64)
        if self.mean is None:
            self.n, self.mean, self.m2, self.nonzero = k, mean, m2, nonzero
            return
        if b.shape[1:] != self.mean.shape:
            raise ValueError(f"layer output of shape {tuple(b.shape[1:])} per sample; earlier "
                             f"batches had {tuple(self.mean.shape)}")
        total = self.n + k
        delta = mean - self.mean
        self.mean = self.mean + delta * (k / total)
        self.m2 = self.m2 + m2 + delta ** 2 * (self.n * k / total)
        self.nonzero = self.nonzero + nonzero
        self.n = total

    def std(self, min_std: float = 0.0) -> Tensor:
        """Unbiased per-element std, at least ``min_std`` (IBA's ``min_std`` 0.01)."""
        self._require(2)
        return torch.sqrt(self.m2 / (self.n - 1)).clamp_min(min_std)

    def active(self, threshold: float = 0.01) -> Tensor:
        """Elements non-zero in more than ``threshold`` of the samples (IBA's active neurons)."""
        self._require(1)
        return self.nonzero / self.n > threshold

    def _require(self, n: int) -> None:
        if self.n < n:
            raise ValueError(f"layer statistics need at least {n} samples, have {self.n}")

    def state_dict(self) -> dict[str, Any]:
        if self.mean is None:
            return {}
        return {"n": self.n, "mean": self.mean, "m2": self.m2, "nonzero": self.nonzero}

    @classmethod
    def from_state_dict(cls, state: Mapping[str, Any]) -> LayerStatistics:
        keys = {"n", "mean", "m2", "nonzero"}
        if set(state) != keys or not all(isinstance(state[k], Tensor)
                                         for k in ("mean", "m2", "nonzero")):
            raise ValueError(f"layer statistics state must have keys {sorted(keys)} (mean, m2, "
                             f"nonzero tensors), got {sorted(state)}")
        shapes = {tuple(state[k].shape) for k in ("mean", "m2", "nonzero")}
        if len(shapes) != 1 or int(state["n"]) < 1:
            raise ValueError("layer statistics state: mean, m2 and nonzero must share one shape "
                             "and n must be positive")
        out = cls()
        out.n = int(state["n"])
        out.mean, out.m2, out.nonzero = (state[k].detach().to(torch.float64)
                                         for k in ("mean", "m2", "nonzero"))
        return out


class _Stop(Exception):
    """Raised by :func:`layer_output`'s hook to stop the model after the layer."""


@contextlib.contextmanager
def replace_output(module: nn.Module, fn: Callable[[Tensor], Tensor]) -> Iterator[None]:
    """During the body, ``module``'s output ``R`` is replaced by ``fn(R)`` (the bottleneck);
    the hook is removed on exit, also on errors."""

    def hook(_m: nn.Module, _inp: tuple, out: Any) -> Tensor:
        if not isinstance(out, Tensor):
            raise TypeError(f"the bottleneck layer returns {type(out).__name__}, not a Tensor")
        return fn(out)

    with HookSet() as hooks:
        hooks.forward(module, hook)
        yield


def layer_output(forward: Callable[..., Tensor], module: nn.Module, *inputs: Any) -> Tensor:
    """The output of ``module`` when ``forward(*inputs)`` runs; the model is stopped right
    after the layer (the layers above it never run). Gradients flow if the caller enables
    them. ``ValueError`` if the layer is not reached."""
    record: list[Tensor] = []

    def hook(_m: nn.Module, _inp: tuple, out: Any) -> None:
        if not isinstance(out, Tensor):
            raise TypeError(f"the bottleneck layer returns {type(out).__name__}, not a Tensor")
        record.append(out)
        raise _Stop

    with HookSet() as hooks:
        hooks.forward(module, hook)
        try:
            forward(*inputs)
        except _Stop:
            pass
    if not record:
        raise ValueError("the bottleneck layer was not called by the model's forward pass")
    return record[0]


def sample_batches(data: Any, n_samples: int, batch_size: int,
                   generator: torch.Generator) -> Iterator[Tensor]:
    """``min(n_samples, len(data))`` inputs of ``data`` in the order of
    ``torch.randperm(len(data), generator)``, ``batch_size`` at a time. ``data`` is a tensor
    batch, a data set with ``tensors(indices)`` (attrlab's data sets) or a sequence of
    ``(input, ...)`` items."""
    n = len(data)
    if n < 1:
        raise ValueError("the data set is empty")
    pick = torch.randperm(n, generator=generator)[:n_samples]
    for i in range(0, len(pick), batch_size):
        yield data_inputs(data, pick[i:i + batch_size])


def estimate_layer_statistics(forward: Callable[..., Tensor], module: nn.Module,
                              batches: Iterator[Tensor],
                              device: torch.device | None = None) -> LayerStatistics:
    """:class:`LayerStatistics` of ``module``'s output over ``batches`` of inputs, in one
    pass without gradients (each forward stops after the layer)."""
    stats = LayerStatistics()
    with torch.no_grad():
        for x in batches:
            stats.update(layer_output(forward, module, x if device is None else x.to(device)))
    if stats.n < 2:
        raise ValueError(f"layer statistics need at least 2 samples, got {stats.n}")
    return stats


# ------------------------------------------------------------------------------ KL terms

def iba_kl(r_norm: Tensor, lam: Tensor) -> Tensor:
    """IBA's per-element capacity (Schulz et al. 2020, eq. 7 with Q(Z) = N(mu_R, sigma_R^2)):
    KL[N(lambda r, (1 - lambda)^2) || N(0, 1)] = -1/2 (1 + log v - mu^2 - v), with
    r = (R - mu_R) / sigma_R, mu = lambda r, v = (1 - lambda)^2. In nats."""
    var = (1 - lam) ** 2
    mu = lam * r_norm
    return -0.5 * (1 + torch.log(var) - mu ** 2 - var)


def prior_kl(x_norm: Tensor, lam: Tensor, lam_g: Tensor) -> Tensor:
    """Paper 02, Proposition 3: KL[P(Z_I | I) || P(Z_I)] per element with the GAN's input mask
    m = lambda_G as the prior, in nats, written (as the authors' code) in IBA's form:
    r = (1 - m) x / (1 - m Lambda), v = (1 - Lambda)^2 / (1 - m Lambda)^2, mu = Lambda r,
    KL = -1/2 (1 + log v - mu^2 - v), with x = (I - mu_I) / sigma_I. For m = 0 it is
    :func:`iba_kl`."""
    d = 1 - lam_g * lam
    var = (1 - lam) ** 2 / d ** 2
    mu = lam * (1 - lam_g) * x_norm / d
    return -0.5 * (1 + torch.log(var) - mu ** 2 - var)


# ------------------------------------------------------------------------------ maps

def gaussian_kernel_size(sigma: float) -> int:
    """IBA's kernel size for smoothing lambda: 2 round(2 sigma) + 1 (5 for sigma 1)."""
    return round(2 * sigma) * 2 + 1


def gaussian_smooth(lam: Tensor, sigma: float) -> Tensor:
    """IBA's smoothing of lambda: a normalised 2-D Gaussian of std ``sigma`` (kernel
    :func:`gaussian_kernel_size`), per channel, reflect padding; (N, C, h, w) -> same shape.
    ``sigma`` 0 returns ``lam``."""
    if sigma <= 0:
        return lam
    k = gaussian_kernel_size(sigma)
    pad = k // 2
    if lam.dim() != 4:
        raise ValueError(f"smoothing needs a (N, C, h, w) mask, got shape {tuple(lam.shape)}")
    if min(lam.shape[2:]) <= pad:
        raise ValueError(f"smoothing with sigma={sigma} (kernel {k}) needs maps larger than "
                         f"{pad} pixels; the layer is {lam.shape[2]} x {lam.shape[3]}: use "
                         "sigma=0")
    x = torch.arange(k, dtype=lam.dtype, device=lam.device) - (k - 1) / 2
    g = torch.exp(-x ** 2 / (2 * sigma ** 2))
    kernel = g[:, None] * g[None, :]
    kernel = (kernel / kernel.sum()).expand(lam.shape[1], 1, k, k)
    return F.conv2d(F.pad(lam, (pad,) * 4, mode="reflect"), kernel, groups=lam.shape[1])


def capacity_map(capacity: Tensor, size: tuple[int, ...]) -> Tensor:
    """IBA's map: capacity (N, C, h, w) in nats summed over channels, in bits (/ ln 2),
    scaled by (h w) / (H W) so that the map keeps the total, and bilinearly resized to
    ``size`` = (H, W): (N, 1, H, W). (The authors resize with scikit-image, order 1; this is
    ``F.interpolate(align_corners=False)``, the same pixel-centre grid.)"""
    m = capacity.sum(1, keepdim=True) / math.log(2)
    h, w = capacity.shape[2:]
    m = m * (h * w) / (size[0] * size[1])
    if tuple(m.shape[2:]) != tuple(size):
        m = F.interpolate(m, size=tuple(size), mode="bilinear", align_corners=False)
    return m


# ------------------------------------------------------------------------------ optimisation

def optimise_mask(loss_fn: Callable[[Tensor, int], tuple[Tensor, Tensor]], alpha: Tensor,
                  steps: int, lr: float) -> tuple[Tensor, Tensor]:
    """Adam on the per-sample mask logits ``alpha`` (N, ...), every sample its own, through
    the shared loop :func:`attrlab.core.optimise.optimise`: each step
    ``loss_fn(alpha, step)`` returns ``(per-sample losses (N,), per-sample capacity)`` and
    the sum of the losses is minimised (Adam is element-wise, so each sample's trajectory is
    its own). Returns ``(alpha after the last step, the capacity of the last step's forward
    pass)`` (as the authors', whose map is the capacity buffered by the last forward pass).
    No host synchronisation inside the loop."""
    alpha = alpha.detach().clone()
    last: dict[str, Tensor] = {}

    def loss(step: int) -> Tensor:
        losses, last["capacity"] = loss_fn(alpha, step)
        return losses

    optimise([alpha], loss, steps, optimiser="adam", lr=lr)
    return alpha.detach(), last["capacity"].detach()
