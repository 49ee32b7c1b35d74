"""The perturbation engine shared by metrics (MoRF/LeRF, insertion/deletion, Sensitivity-n) and
perturbation methods (occlusion, RISE, LIME, Extremal Perturbation).

Four pieces, each independent of any metric:

* :class:`FeatureLayout`: how the entries of an input are grouped into features (pixels, entries
  with ``per_channel``, or the cells of a ``grid`` x ``grid`` patch partition) and how a
  feature mask expands back to the input.
* :func:`rank_features` / :func:`feature_counts`: a stable removal order and the number of
  features removed at a fraction.
* :func:`replacement`: the values that replace removed features (``"zero"``, per-image
  ``"mean"``, Gaussian ``"blur"``, or a constant).
* :func:`masked_outputs` / :func:`batched_scores`: many perturbed rows built lazily and pushed
  through the model ``batch_size`` rows at a time under ``torch.no_grad``.

The exact conventions (tie-breaking, rounding, padding) are documented in
:mod:`attrlab.metrics.faithfulness.pixel_perturbation`.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .checks import check_target_range

BASELINES = ("zero", "mean", "blur")
OUTPUTS = ("prob", "logit")

# ----------------------------------------------------------------------------------------------
# option checks
# ----------------------------------------------------------------------------------------------


def check_baseline(baseline: Any) -> str | float:
    """A baseline name from :data:`BASELINES` or a finite float constant."""
    if isinstance(baseline, str):
        if baseline not in BASELINES:
            raise ValueError(f"unknown baseline {baseline!r}; use one of {BASELINES} or a number")
        return baseline
    if isinstance(baseline, bool) or not isinstance(baseline, (int, float)):
        raise ValueError(f"baseline must be one of {BASELINES} or a number, got {baseline!r}")
    if not math.isfinite(baseline):
        raise ValueError(f"baseline must be finite, got {baseline!r}")
    return float(baseline)


def check_output(output: Any) -> str:
    if output not in OUTPUTS:
        raise ValueError(f"output must be one of {OUTPUTS}, got {output!r}")
    return output


def check_fractions(fractions: Any, min_len: int = 2) -> Tensor:
    """Fractions as a float64 tensor (K,): finite, in [0, 1], strictly increasing, K >= min_len."""
    try:
        f = torch.as_tensor(fractions, dtype=torch.float64).detach().cpu()
    except (TypeError, ValueError, RuntimeError) as err:
        raise ValueError(f"fractions must be a sequence of numbers, got {fractions!r}") from err
    if f.dim() != 1 or f.numel() < min_len:
        raise ValueError(f"fractions must be 1-D with at least {min_len} values, "
                         f"got shape {tuple(f.shape)}")
    if not torch.isfinite(f).all() or f.min() < 0 or f.max() > 1:
        raise ValueError(f"fractions must lie in [0, 1], got {f.tolist()}")
    if f.numel() > 1 and not (f[1:] > f[:-1]).all():
        raise ValueError(f"fractions must be strictly increasing, got {f.tolist()}")
    return f


def _check_positive_int(name: str, value: Any, allow_none: bool = False) -> int | None:
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive int{' or None' if allow_none else ''}, "
                         f"got {value!r}")
    return value


def check_blur(sigma: Any, kernel_size: Any) -> tuple[float, int]:
    if isinstance(sigma, bool) or not isinstance(sigma, (int, float)) or not sigma > 0 \
            or not math.isfinite(sigma):
        raise ValueError(f"sigma must be a positive number, got {sigma!r}")
    if kernel_size is None:
        kernel_size = 2 * math.ceil(3 * sigma) + 1
    _check_positive_int("kernel_size", kernel_size)
    if kernel_size % 2 == 0:
        raise ValueError(f"kernel_size must be odd, got {kernel_size}")
    return float(sigma), kernel_size


def output_transform(output: str) -> Callable[[Tensor], Tensor] | None:
    """Transform for :func:`batched_scores`: None (softmax) for "prob", identity for "logit"."""
    return None if output == "prob" else (lambda logits: logits)


# ----------------------------------------------------------------------------------------------
# features, ranking, baselines
# ----------------------------------------------------------------------------------------------


class FeatureLayout:
    """How the entries of one input of shape ``sample_shape`` are grouped into features.

    Inputs are viewed as (N, C, P): channels ``C = sample_shape[0]`` and ``P`` positions
    (flat (D,) inputs are (1, D)). A feature is a position (default), an entry of (C, P)
    (``per_channel``), or a cell of a ``grid`` x ``grid`` partition of an (H, W) image.
    """

    def __init__(self, sample_shape: Sequence[int], per_channel: bool = False,
                 grid: int | None = None) -> None:
        shape = tuple(int(s) for s in sample_shape)
        if len(shape) == 1:
            self.channels, spatial = 1, shape
        else:
            self.channels, spatial = shape[0], shape[1:]
        self.sample_shape = shape
        self.positions = math.prod(spatial)
        self.per_channel = bool(per_channel)
        self.index: Tensor | None = None  # position -> feature id (patches); None: identity
        if grid is not None:
            _check_positive_int("grid", grid)
            if per_channel:
                raise ValueError("grid (patch features) and per_channel=True exclude each other")
            if len(shape) != 3:
                raise ValueError(f"grid needs image inputs (N, C, H, W); got sample shape {shape}")
            h, w = spatial
            if grid > h or grid > w:
                raise ValueError(f"grid={grid} is larger than the image ({h}x{w})")
            rows = torch.arange(h) * grid // h
            cols = torch.arange(w) * grid // w
            self.index = (rows[:, None] * grid + cols[None, :]).flatten()
            self.n_features = grid * grid
        else:
            self.n_features = self.channels * self.positions if per_channel else self.positions

    def view(self, x: Tensor) -> Tensor:
        """(N, *sample_shape) -> (N, C, P)."""
        return x.reshape(x.shape[0], self.channels, self.positions)

    def scores(self, attributions: Tensor) -> Tensor:
        """Attribution of each feature, (N, F): summed over channels (and over patches)."""
        a = self.view(attributions)
        if self.per_channel:
            return a.reshape(a.shape[0], -1)
        s = a.sum(1)
        if self.index is None:
            return s
        out = s.new_zeros(s.shape[0], self.n_features)
        return out.index_add_(1, self.index.to(s.device), s)

    def expand(self, mask: Tensor) -> Tensor:
        """Feature mask (B, F) -> entry mask broadcastable to (B, C, P)."""
        if self.index is not None:
            mask = mask[:, self.index.to(mask.device)]
        if self.per_channel:
            return mask.reshape(mask.shape[0], self.channels, self.positions)
        return mask.reshape(mask.shape[0], 1, self.positions)


def rank_features(scores: Tensor, most_relevant_first: bool = True) -> Tensor:
    """Position of every feature in the removal order, (N, F) long (0 = removed first).

    Stable sort on ``-scores`` (or ``scores``): equal scores keep the order of their index.
    """
    key = -scores if most_relevant_first else scores
    order = torch.sort(key, dim=1, stable=True).indices
    ranks = torch.arange(scores.shape[1], device=scores.device).expand_as(order)
    return torch.empty_like(order).scatter_(1, order, ranks)


def feature_counts(fractions: Tensor, n_features: int) -> Tensor:
    """Number of features removed at each fraction: ``round(p * F)`` (halves to even)."""
    return torch.round(fractions * n_features).long()


def gaussian_blur(inputs: Tensor, sigma: float, kernel_size: int) -> Tensor:
    """Separable Gaussian blur of (N, C, H, W) images, per channel.

    Kernel ``exp(-t^2 / (2 sigma^2))`` for t = -(k//2)..k//2, normalised to sum 1; reflect
    padding (as torchvision's ``gaussian_blur``), replicate padding when an image side is not
    larger than the kernel radius (reflect padding is undefined there).
    """
    if inputs.dim() != 4:
        raise ValueError(f"the 'blur' baseline needs image inputs (N, C, H, W); "
                         f"got shape {tuple(inputs.shape)}")
    n, c, h, w = inputs.shape
    r = kernel_size // 2
    t = torch.arange(-r, r + 1, dtype=torch.float64, device=inputs.device)
    k1 = torch.exp(-0.5 * (t / sigma) ** 2)
    k1 = (k1 / k1.sum()).to(inputs.dtype)
    mode = "reflect" if r < h and r < w else "replicate"
    x = F.pad(inputs.reshape(n * c, 1, h, w), (r, r, r, r), mode=mode) if r else \
        inputs.reshape(n * c, 1, h, w)
    x = F.conv2d(x, k1.view(1, 1, 1, -1))
    x = F.conv2d(x, k1.view(1, 1, -1, 1))
    return x.reshape(n, c, h, w)


def replacement(inputs: Tensor, baseline: str | float, sigma: float = 5.0,
                kernel_size: int = 11) -> Tensor:
    """The values that replace removed entries, same shape as ``inputs``.

    ``"zero"``; ``"mean"``: per sample and channel, the mean over all positions (for flat
    (N, D) inputs the mean over the D entries); ``"blur"``: :func:`gaussian_blur`; a float:
    that constant.
    """
    baseline = check_baseline(baseline)
    if baseline == "zero":
        return torch.zeros_like(inputs)
    if baseline == "mean":
        if inputs.dim() == 2:
            return inputs.mean(1, keepdim=True).expand_as(inputs).clone()
        dims = tuple(range(2, inputs.dim()))
        return inputs.mean(dims, keepdim=True).expand_as(inputs).clone()
    if baseline == "blur":
        return gaussian_blur(inputs, sigma, kernel_size)
    return torch.full_like(inputs, baseline)


def normalized_auc(x: Tensor, y: Tensor) -> Tensor:
    """Trapezoidal area under ``y`` (N, K) over ``x`` (K,), divided by ``x[-1] - x[0]``.

    For fractions spanning [0, 1] this is the plain trapezoidal AUC; in general it is the
    mean height of the curve, in the units of the output.
    """
    width = x[-1] - x[0]
    if x.numel() < 2 or not width > 0:
        raise ValueError("an AUC needs at least two distinct fractions")
    return torch.trapezoid(y, x.to(y.dtype), dim=-1) / width.to(y.dtype)


def masked_outputs(model: nn.Module, inputs: Tensor, repl: Tensor, layout: FeatureLayout,
                   sample_of_row: Tensor, mask_of_rows: Callable[[Tensor], Tensor],
                   targets: Tensor, batch_size: int, transform: Callable | None,
                   insert: bool = False) -> Tensor:
    """Target outputs for many perturbed rows, built and evaluated ``batch_size`` at a time.

    Row r is sample ``sample_of_row[r]`` with the features where ``mask_of_rows(rows)`` is
    True replaced by ``repl`` (``insert=False``), or ``repl`` with those features taken from
    the input (``insert=True``). Returns the (R,) selected outputs.
    """
    x3, b3 = layout.view(inputs), layout.view(repl)
    total = sample_of_row.shape[0]
    out = []
    for start in range(0, total, batch_size):
        r = torch.arange(start, min(start + batch_size, total), device=inputs.device)
        n = sample_of_row[r]
        m = layout.expand(mask_of_rows(r))
        rows = torch.where(m, x3[n], b3[n]) if insert else torch.where(m, b3[n], x3[n])
        rows = rows.reshape(r.shape[0], *inputs.shape[1:])
        out.append(batched_scores(model, rows, targets[n], r.shape[0], transform))
    return torch.cat(out)


@torch.no_grad()
def batched_scores(model: nn.Module, rows: Tensor, targets: Tensor, batch_size: int,
                   transform: Callable[[Tensor], Tensor] | None = None) -> Tensor:
    """Model outputs for many rows, ``batch_size`` at a time: returns the selected target
    column of ``transform(logits)`` (default: softmax probabilities), shape (rows,)."""
    out = []
    for i in range(0, rows.shape[0], batch_size):
        logits = model(rows[i:i + batch_size])
        check_target_range(targets, logits.shape[1])
        vals = torch.softmax(logits, 1) if transform is None else transform(logits)
        out.append(vals.gather(1, targets[i:i + batch_size].view(-1, 1)).squeeze(1))
    return torch.cat(out)
