"""Mask parametrisations and perturbations shared by the optimisation methods.

* :func:`upsample_mask`: a coarse (N, 1, h, w) mask to the image size (Meaningful
  Perturbation's 28x28 mask, IBA's layer-resolution map).
* :class:`SmoothMaskGenerator`: Extremal Perturbation's smooth masks from a parameter grid
  (Fong et al. 2019, Sec. 3.2, as in TorchRay): every pixel is a smooth maximum over the
  nearby grid parameters weighted by a radial kernel.
* :func:`gaussian_blur`, :func:`blur_pyramid` and :func:`apply_pyramid`: the blurred input of
  Meaningful Perturbation and EP's pyramid of blur levels, indexed by the mask with linear
  interpolation between levels.
* :func:`tv_norm` (Fong & Vedaldi 2017, eq. 4) and :func:`area_penalty` (Fong et al. 2019,
  eq. 6: the sorted-mask area constraint).

Masks are 1 where the input is kept and 0 where it is replaced by its perturbation. Every
function works on a batch, each row its own mask, without loops over samples or pixels.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.checkpoint import checkpoint

PADDINGS = ("constant", "replicate")


def gaussian_kernel1d(sigma: float, dtype: torch.dtype = torch.float32,
                      device: torch.device | str | None = None) -> Tensor:
    """The normalised 1-D Gaussian exp(-i^2 / (2 sigma^2)), i = -W..W, W = ceil(4 sigma)
    (TorchRay's truncation); ``[1]`` for sigma = 0."""
    if not (sigma >= 0 and math.isfinite(sigma)):
        raise ValueError(f"sigma must be a finite number >= 0, got {sigma!r}")
    width = math.ceil(4 * sigma)
    if width == 0:
        return torch.ones(1, dtype=dtype, device=device)
    i = torch.arange(-width, width + 1, dtype=torch.float64)
    k = torch.exp(-0.5 * (i / sigma) ** 2)
    return (k / k.sum()).to(dtype=dtype, device=device)


def gaussian_blur(x: Tensor, sigma: float, padding: str = "constant") -> Tensor:
    """Separable Gaussian blur of a (N, C, H, W) batch with standard deviation ``sigma``
    pixels (kernel truncated at 4 sigma). ``padding``: ``"constant"`` (zeros outside the
    image, TorchRay's choice: the border darkens towards 0) or ``"replicate"`` (edge values,
    MATLAB's ``imgaussfilt``); any kernel size works on any image size."""
    if x.dim() != 4:
        raise ValueError(f"gaussian_blur takes (N, C, H, W) images, got shape {tuple(x.shape)}")
    if padding not in PADDINGS:
        raise ValueError(f"padding must be one of {PADDINGS}, got {padding!r}")
    k = gaussian_kernel1d(float(sigma), x.dtype, x.device)
    w = k.numel() // 2
    if w == 0:
        return x.clone()
    c = x.shape[1]
    y = F.pad(x, (w, w, w, w), mode="constant" if padding == "constant" else "replicate")
    y = F.conv2d(y, k.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)
    return F.conv2d(y, k.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)


def blur_pyramid(x: Tensor, levels: int, max_sigma: float, padding: str = "constant"
                 ) -> Tensor:
    """EP's perturbation pyramid (Fong et al. 2019, Sec. 3.3; TorchRay ``Perturbation``):
    ``levels`` blurred copies of each image with sigma_l = max_sigma (1 - l / (levels - 1)),
    l = 0..levels-1, so level 0 is the most blurred and the last level is x itself.
    Returns (N, levels, C, H, W)."""
    if isinstance(levels, bool) or not isinstance(levels, int) or levels < 2:
        raise ValueError(f"levels must be an int >= 2, got {levels!r}")
    sigmas = [max_sigma * (1 - level / (levels - 1)) for level in range(levels)]
    with torch.no_grad():
        return torch.stack([gaussian_blur(x, s, padding) for s in sigmas], 1)


def apply_pyramid(pyramid: Tensor, mask: Tensor) -> Tensor:
    """Perturbed inputs z = y_{m(u) (L - 1)}(u), linearly interpolated between pyramid levels
    (TorchRay ``Perturbation.apply``): mask 1 keeps the input, 0 takes the most perturbed
    level. ``pyramid`` is (N, L, C, H, W) and ``mask`` (N, A, 1, H, W) in [0, 1] (A masks per
    sample, e.g. one per area); returns (N, A, C, H, W). The gradient flows to the mask
    through the interpolation weight; the pyramid is never copied A times."""
    n, levels, c, h, w = pyramid.shape
    if mask.dim() != 5 or mask.shape[0] != n or mask.shape[2] != 1 or mask.shape[3:] != (h, w):
        raise ValueError(f"mask must be (N, A, 1, H, W) = ({n}, A, 1, {h}, {w}); got "
                         f"{tuple(mask.shape)}")
    a = mask.shape[1]
    s = mask * (levels - 1)
    k = s.detach().floor().clamp_(0, levels - 1)
    frac = s - k
    k = k.long()
    y = pyramid.unsqueeze(1).expand(n, a, levels, c, h, w)
    idx = k.unsqueeze(2).expand(n, a, 1, c, h, w)
    y0 = torch.gather(y, 2, idx).squeeze(2)
    y1 = torch.gather(y, 2, (idx + 1).clamp_(max=levels - 1)).squeeze(2)
    return (1 - frac) * y0 + frac * y1


def upsample_mask(mask: Tensor, size: Sequence[int], mode: str = "bilinear") -> Tensor:
    """A coarse (N, 1, h, w) mask resized to ``size`` = (H, W) (bilinear with
    ``align_corners=False`` by default, Fong & Vedaldi 2017, Sec. 4: a 28x28 mask upsampled
    to 224x224)."""
    if mask.dim() != 4:
        raise ValueError(f"mask must be (N, 1, h, w), got shape {tuple(mask.shape)}")
    size = tuple(int(s) for s in size)
    if tuple(mask.shape[2:]) == size:
        return mask
    if mode in ("nearest", "area"):
        return F.interpolate(mask, size=size, mode=mode)
    return F.interpolate(mask, size=size, mode=mode, align_corners=False)


def tv_norm(mask: Tensor, beta: float = 3.0) -> Tensor:
    """Total variation TV_beta(m) (Fong & Vedaldi 2017, eq. 4, as a mean rather than a sum):
    mean_u |m(u + e_y) - m(u)|^beta + mean_u |m(u + e_x) - m(u)|^beta over the spatial
    positions of each (N, 1, h, w) mask; returns (N,). A 1-pixel mask has TV 0."""
    if mask.dim() != 4:
        raise ValueError(f"mask must be (N, 1, h, w), got shape {tuple(mask.shape)}")
    zero = mask.new_zeros(mask.shape[0])
    dy = (mask[:, :, 1:] - mask[:, :, :-1]).abs().pow(beta).flatten(1).mean(1) \
        if mask.shape[2] > 1 else zero
    dx = (mask[:, :, :, 1:] - mask[:, :, :, :-1]).abs().pow(beta).flatten(1).mean(1) \
        if mask.shape[3] > 1 else zero
    return dy + dx


def area_reference(areas: Sequence[float] | Tensor, numel: int,
                   dtype: torch.dtype = torch.float32,
                   device: torch.device | str | None = None) -> Tensor:
    """The sorted target masks of EP's area constraint: one row per area a, ``numel``
    entries, the first floor(numel (1 - a)) zero and the rest one (TorchRay's rounding)."""
    areas = torch.as_tensor(areas, dtype=torch.float64).flatten()
    zeros = (numel * (1 - areas)).floor().long().clamp_(0, numel)
    pos = torch.arange(numel)
    return (pos.unsqueeze(0) >= zeros.unsqueeze(1)).to(dtype=dtype, device=device)


def area_penalty(mask: Tensor, reference: Tensor) -> Tensor:
    """EP's area constraint (Fong et al. 2019, eq. 6): R_a(m) = mean_u (vecsort(m)_u - r_a,u)^2,
    the squared distance of each mask's sorted values to the reference ``r_a`` (ones on a
    fraction a, see :func:`area_reference`). ``mask`` is (B, ...) and ``reference`` (B, numel)
    or broadcasting to it; returns (B,)."""
    flat = mask.flatten(1)
    if flat.shape[1] != reference.shape[-1]:
        raise ValueError(f"reference has {reference.shape[-1]} entries per mask, the masks "
                         f"{flat.shape[1]}")
    return (flat.sort(dim=1, stable=True).values - reference).pow(2).mean(1)


class SmoothMaskGenerator:
    """EP's smooth masks (Fong et al. 2019, Sec. 3.2, eq. 7; TorchRay ``MaskGenerator``).

    A parameter grid m_bar of shape :attr:`param_shape` = (ceil(H / step), ceil(W / step))
    has one parameter every ``step`` pixels (parameter i sits at pixel ``margin + step * i``,
    margin = sigma). Every pixel u of a mask with that margin on each side is a smooth max,
    with coldness 20 (softmax pooling), of k(|u - u_i| / sigma) m_bar_i over the
    (2 R + 1)^2 nearest parameters, R = 1 + ceil(sigma / step), with the kernel
    k(z) = exp(-2 max(z - 1/2, 0)^2); parameters outside the grid count as 0. The mask is
    clamped to [0, 1] and cropped to (H, W).

    ``generator(params)`` maps (B, 1, h, w) parameters to ``(cropped, full)``: the (B, 1, H, W)
    mask and the mask with its margin, of shape :attr:`full_shape`.
    """

    coldness = 20.0
    #: intermediate values per chunk of masks (about 16 MB in float32: cache-sized chunks
    #: run faster per mask than one large batch)
    chunk_elements = 2 ** 22

    def __init__(self, shape: Sequence[int], step: int, sigma: float,
                 dtype: torch.dtype = torch.float32,
                 device: torch.device | str | None = None) -> None:
        if isinstance(step, bool) or not isinstance(step, int) or step < 1:
            raise ValueError(f"step must be a positive int, got {step!r}")
        if not (sigma > 0 and math.isfinite(sigma)):
            raise ValueError(f"sigma must be a positive number, got {sigma!r}")
        self.shape = tuple(int(s) for s in shape)
        self.step, self.sigma = step, float(sigma)
        self.margin = self.sigma
        self.padding = 1 + math.ceil((self.margin + self.sigma) / step)
        self.radius = 1 + math.ceil(self.sigma / step)
        self.param_shape = tuple(math.ceil(s / step) for s in self.shape)
        k = 2 * self.radius + 1
        # grid cells the unfolded neighbourhoods are centred on, and the pixels they cover
        self.cells = tuple(p + 2 * self.padding - k + 1 for p in self.param_shape)
        self.full_shape = tuple(step * c - step + 1 for c in self.cells)
        # weight[k, u]: kernel of the distance from pixel u to the k-th neighbour parameter
        uy = torch.arange(self.full_shape[0], dtype=torch.float64)
        ux = torch.arange(self.full_shape[1], dtype=torch.float64)
        off = torch.arange(k, dtype=torch.float64)
        iy = torch.div(uy, step, rounding_mode="floor").unsqueeze(0) + off.unsqueeze(1) \
            - self.padding  # (k, Hf)
        ix = torch.div(ux, step, rounding_mode="floor").unsqueeze(0) + off.unsqueeze(1) \
            - self.padding  # (k, Wf)
        dy = uy.unsqueeze(0) - (self.margin + step * iy)
        dx = ux.unsqueeze(0) - (self.margin + step * ix)
        dist = torch.sqrt(dy[:, None, :, None] ** 2 + dx[None, :, None, :] ** 2)  # ky kx H W
        z = (dist / self.sigma - 0.5).clamp(min=0)
        self.weight = torch.exp(-2 * z ** 2).reshape(1, k * k, *self.full_shape).to(
            dtype=dtype, device=device)

    def __call__(self, params: Tensor) -> tuple[Tensor, Tensor]:
        """The (cropped, full) masks of (B, 1, h, w) parameters (``param_shape``)."""
        if params.dim() != 4 or params.shape[1] != 1 or tuple(params.shape[2:]) != \
                self.param_shape:
            raise ValueError(f"params must be (B, 1, {self.param_shape[0]}, "
                             f"{self.param_shape[1]}), got {tuple(params.shape)}")
        # the ((2R+1)^2, H', W') intermediates of a mask (81 values per pixel at TorchRay's
        # defaults, 5.5M at 224 px) are made for a chunk of masks at a time and recomputed in
        # the backward pass instead of kept; every mask is computed alone, so chunks change
        # no value
        per_mask = (2 * self.radius + 1) ** 2 * self.full_shape[0] * self.full_shape[1]
        grad = params.requires_grad and torch.is_grad_enabled()
        full = torch.cat([checkpoint(self._full, p, use_reentrant=False) if grad
                          else self._full(p)
                          for p in params.split(max(1, self.chunk_elements // per_mask))])
        m = round(self.margin)
        return full[:, :, m:m + self.shape[0], m:m + self.shape[1]], full

    def _full(self, params: Tensor) -> Tensor:
        b, k = params.shape[0], 2 * self.radius + 1
        nb = F.unfold(params, k, padding=self.padding).view(b, k * k, *self.cells)
        nb = nb.repeat_interleave(self.step, 2).repeat_interleave(self.step, 3)
        nb = nb[:, :, :self.full_shape[0], :self.full_shape[1]]
        weighted = self.weight.to(params.dtype) * nb
        full = (weighted * torch.softmax(self.coldness * weighted, dim=1)).sum(1, keepdim=True)
        return full.clamp(0, 1)
