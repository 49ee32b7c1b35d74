"""Pixel-perturbation metrics: MoRF/LeRF curves, the LeRF output change, insertion/deletion.

All metrics here rank the *features* of each input by their attribution, replace the
top-ranked ones by a baseline (or insert them into a baseline image) and watch the output of
the target class. They share four choices, identical for every metric of this module:

Features (:class:`FeatureLayout`)
    By default a feature is a pixel position: the attribution map is summed over channels and
    all channels of a pixel are replaced together. ``per_channel=True`` ranks individual
    entries (c, h, w) instead; ``grid=g`` ranks the cells of a g x g grid of patches (the
    attribution of a patch is the sum over its pixels and channels; row ``h`` belongs to patch
    row ``floor(h * g / H)``, which is nearest-neighbour upsampling of a g x g mask). Flat
    inputs (N, D) have one feature per entry.

Ranking (:func:`rank_features`)
    Features are sorted by a *stable* sort on ``-score`` (most relevant first: MoRF,
    insertion, deletion) or on ``score`` (least relevant first: LeRF), so ties are broken by
    the lower flat feature index first (row-major over (H, W), or over (C, H, W) with
    ``per_channel``). Fraction ``p`` of ``F`` features removes the first
    ``round(p * F)`` features of the ranking (``torch.round``: halves to even).

Baselines (:func:`replacement`)
    ``"zero"``; ``"mean"``: per image and per channel, the mean of the image over its pixels;
    ``"blur"``: a Gaussian blur of the image (``sigma``, ``kernel_size``; separable,
    normalised kernel ``exp(-t^2 / (2 sigma^2))`` for t = -(k//2)..k//2, reflect padding, or
    replicate padding when the image is not larger than the kernel radius); or a float
    constant. Removed features take the baseline's value at the same position.

Output and area under the curve
    ``output="prob"``: softmax probability of the target class; ``"logit"``: its logit.
    :func:`normalized_auc` integrates a curve over the fraction axis with the trapezoidal rule
    and divides by the width of that axis, so with fractions spanning [0, 1] it is the plain
    trapezoidal AUC and in general the mean height of the curve.

Every metric builds all N * K perturbed rows (N samples, K fractions) lazily, ``batch_size``
rows at a time, and pushes each chunk through the model under ``torch.no_grad``
(:func:`attrlab.metrics.base.batched_scores`).

Comparison with Quantus 0.6.0 (tested in ``tests/metrics/test_perturbation.py``):

* ``quantus.PixelFlipping(features_in_step=1, perturb_baseline=0.0, abs=False,
  normalise=False)`` on single-channel inputs returns our ``morf`` curve with fractions
  ``k / F`` (k = 1..F) and ``baseline=0.0`` (or on C-channel inputs our ``per_channel=True``
  curve); Quantus leaves out the unperturbed point (k = 0), uses ``np.argsort`` (not stable,
  so ties may be ordered differently), ``perturb_baseline="black"`` means the per-sample
  *minimum* of the input (not zero), and its optional AUC is ``np.trapz`` with ``dx=1`` over
  the F points (not normalised).
* ``quantus.RegionPerturbation(patch_size=s, order="morf"|"lerf")`` returns
  ``f(x) - curve`` for our ``morf``/``lerf`` with ``grid = H / s`` and fractions ``k / g^2``
  (k = 1..g^2), with the same tie caveat.
"""

from __future__ import annotations

import math
from typing import Any, Callable, ClassVar, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..methods.hooks import model_guard
from .base import Metric, batched_scores, register

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


# ----------------------------------------------------------------------------------------------
# metrics
# ----------------------------------------------------------------------------------------------


class PixelPerturbation(Metric):
    """Remove (or insert) features in attribution order and record the target output.

    Paper 04 (DGA), Section 4.1, after Samek et al. (2017): "pixel perturbation method removes
    the pixel values in order of relevance obtained by attribution methods. Then it measures
    the AUC of the softmax output change for the target class". Subclasses fix the order
    (``most_relevant_first``), the direction (``insert``) and the defaults.

    Args:
        fractions: increasing fractions of features (in [0, 1]) at which the output is
            recorded; default ``k / steps`` for k = 0..steps.
        steps: number of equal intervals of [0, 1] when ``fractions`` is not given.
        baseline: "zero", "mean", "blur" or a float (module docstring).
        output: "prob" (softmax of the target) or "logit".
        per_channel: rank entries (c, h, w) instead of pixels.
        grid: rank the cells of a grid x grid patch partition instead of pixels.
        sigma, kernel_size: the Gaussian of the "blur" baseline (kernel_size None:
            ``2 * ceil(3 sigma) + 1``). Defaults 5 and 11 as in RISE's evaluation code.
        batch_size: rows per forward pass.

    ``curve(...)`` returns ``(fractions (K,), outputs (N, K))``; the score is
    :func:`normalized_auc` of that curve.
    """

    most_relevant_first: ClassVar[bool] = True
    insert: ClassVar[bool] = False
    default_steps: ClassVar[int] = 10
    min_fractions: ClassVar[int] = 2

    def __init__(self, fractions: Sequence[float] | Tensor | None = None, *,
                 steps: int | None = None, baseline: str | float = "zero",
                 output: str = "prob", per_channel: bool = False, grid: int | None = None,
                 sigma: float = 5.0, kernel_size: int | None = 11,
                 batch_size: int = 256) -> None:
        super().__init__(batch_size=batch_size)
        if fractions is not None and steps is not None:
            raise ValueError("give either fractions or steps, not both")
        if fractions is None:
            steps = _check_positive_int("steps", self.default_steps if steps is None else steps)
            fractions = self._fractions_from_steps(steps)
        self.fractions = check_fractions(fractions, self.min_fractions)
        self.baseline = check_baseline(baseline)
        self.output = check_output(output)
        self.per_channel = bool(per_channel)
        self.grid = _check_positive_int("grid", grid, allow_none=True)
        if self.grid is not None and self.per_channel:
            raise ValueError("grid (patch features) and per_channel=True exclude each other")
        self.sigma, self.kernel_size = check_blur(sigma, kernel_size)

    @staticmethod
    def _fractions_from_steps(steps: int) -> Tensor:
        return torch.arange(steps + 1, dtype=torch.float64) / steps

    # -- public API ------------------------------------------------------------------------
    def curve(self, model: nn.Module, inputs: Tensor, targets: Any,
              attributions: Tensor) -> tuple[Tensor, Tensor]:
        """``(x, y)``: the fractions (K,) and the target output after each, (N, K)."""
        t = self._check(model, inputs, targets, attributions)
        with model_guard(model):
            return self._curve(model, inputs.detach(), t, attributions.detach())

    def evaluate_with_curve(self, model: nn.Module, inputs: Tensor, targets: Any,
                            attributions: Tensor) -> tuple[Tensor, tuple[Tensor, Tensor]]:
        """Scores and curve from one pass: ``(scores (N,), (x (K,), y (N, K)))``."""
        x, y = self.curve(model, inputs, targets, attributions)
        return self._score(x, y), (x, y)

    # -- implementation --------------------------------------------------------------------
    def _evaluate(self, model: nn.Module, inputs: Tensor, targets: Tensor,
                  attributions: Tensor, **kwargs: Any) -> Tensor:
        return self._score(*self._curve(model, inputs, targets, attributions))

    def _score(self, x: Tensor, y: Tensor) -> Tensor:
        return normalized_auc(x, y)

    def _layout(self, inputs: Tensor) -> FeatureLayout:
        return FeatureLayout(inputs.shape[1:], self.per_channel, self.grid)

    def _outputs_at(self, model: nn.Module, inputs: Tensor, targets: Tensor,
                    attributions: Tensor, fractions: Tensor) -> Tensor:
        """Target output (N, K) after removing/inserting ``fractions`` of the features."""
        layout = self._layout(inputs)
        rank = rank_features(layout.scores(attributions), self.most_relevant_first)
        counts = feature_counts(fractions, layout.n_features).to(inputs.device)
        n, k = inputs.shape[0], counts.shape[0]
        repl = replacement(inputs, self.baseline, self.sigma, self.kernel_size)
        sample_of_row = torch.arange(n, device=inputs.device).repeat_interleave(k)

        def mask_of_rows(r: Tensor) -> Tensor:  # the first counts[j] features of the ranking
            return rank[r // k] < counts[r % k, None]

        y = masked_outputs(model, inputs, repl, layout, sample_of_row, mask_of_rows, targets,
                           self.batch_size, output_transform(self.output), self.insert)
        return y.view(n, k)

    def _curve(self, model: nn.Module, inputs: Tensor, targets: Tensor,
               attributions: Tensor) -> tuple[Tensor, Tensor]:
        y = self._outputs_at(model, inputs, targets, attributions, self.fractions)
        return self.fractions.to(device=inputs.device, dtype=inputs.dtype), y

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(K={self.fractions.numel()}, baseline={self.baseline!r}, "
                f"output={self.output!r}, per_channel={self.per_channel}, grid={self.grid})")


@register
class MoRF(PixelPerturbation):
    """Most-Relevant-First removal curve and its AUC (paper 04, Section 4.1; lower is better).

    Fractions 0, 0.1, ..., 1.0 by default; removed features are replaced by the ``baseline``
    (zero by default); the score is the normalised trapezoidal AUC of the target's softmax
    probability. A faithful map makes the probability drop steeply, so lower is better.
    """

    name = "morf"
    higher_is_better = False
    most_relevant_first = True


@register
class LeRF(PixelPerturbation):
    """Least-Relevant-First removal curve and its AUC (paper 04, Section 4.1; higher is better).

    As :class:`MoRF` with the ranking reversed (stable sort on ``score``: ties removed in
    index order). Removing unimportant features first should keep the probability high.
    """

    name = "lerf"
    higher_is_better = True
    most_relevant_first = False


@register
class LeRFChange(PixelPerturbation):
    """Absolute fractional output change under LeRF removal (paper 03, Section 4.4; lower is
    better).

    Paper 03 plots "the absolute fractional change of the output as we remove the least
    important pixels". At each fraction p (default 0.1, 0.2, ..., 0.9) the least relevant
    ``round(p * F)`` features are replaced by the baseline (zero by default) and

        change_p = |f_t(x_p) - f_t(x)| / max(|f_t(x)|, eps),   eps = 1e-12,

    with f_t the target logit (``output="logit"``, default; "prob" uses the softmax). The
    curve is ``(fractions, change)``; the score is the plain mean of ``change_p`` over the
    given fractions (with the default, equally spaced fractions, 10..90% removed). The
    unperturbed output f_t(x) is computed in the same batched pass. ``steps`` gives the
    interior fractions ``k / steps``, k = 1..steps-1.
    """

    name = "lerf_change"
    higher_is_better = False
    most_relevant_first = False
    min_fractions = 1
    eps: ClassVar[float] = 1e-12

    def __init__(self, fractions: Sequence[float] | Tensor | None = None, *,
                 steps: int | None = None, baseline: str | float = "zero",
                 output: str = "logit", per_channel: bool = False, grid: int | None = None,
                 sigma: float = 5.0, kernel_size: int | None = 11,
                 batch_size: int = 256) -> None:
        super().__init__(fractions, steps=steps, baseline=baseline, output=output,
                         per_channel=per_channel, grid=grid, sigma=sigma,
                         kernel_size=kernel_size, batch_size=batch_size)

    @staticmethod
    def _fractions_from_steps(steps: int) -> Tensor:
        if steps < 2:
            raise ValueError(f"lerf_change needs steps >= 2 (interior fractions), got {steps}")
        return torch.arange(1, steps, dtype=torch.float64) / steps

    def _curve(self, model: nn.Module, inputs: Tensor, targets: Tensor,
               attributions: Tensor) -> tuple[Tensor, Tensor]:
        with_ref = torch.cat([self.fractions.new_zeros(1), self.fractions])
        y = self._outputs_at(model, inputs, targets, attributions, with_ref)
        ref = y[:, :1]
        change = (y[:, 1:] - ref).abs() / ref.abs().clamp_min(self.eps)
        return self.fractions.to(device=inputs.device, dtype=inputs.dtype), change

    def _score(self, x: Tensor, y: Tensor) -> Tensor:
        return y.mean(1)


@register
class Deletion(PixelPerturbation):
    """Deletion (Petsiuk et al. 2018, RISE; paper 02, Section 4.4.2; lower is better).

    "successively deletes input elements (pixels/tokens) by replacing them with a baseline
    value (zero for pixels ...) according to their attribution score", most relevant first;
    the score is the AUC of the target's softmax probability over the fraction deleted.
    Identical to :class:`MoRF` except for the default fractions: 16 equally spaced values
    from 0 to 1 inclusive (``steps=15``).
    """

    name = "deletion"
    higher_is_better = False
    most_relevant_first = True
    default_steps = 15


@register
class Insertion(PixelPerturbation):
    """Insertion (Petsiuk et al. 2018, RISE; paper 02, Section 4.4.2; higher is better).

    Starts from the baseline image (by default the Gaussian-blurred input, sigma 5, kernel 11
    as in RISE's code, which however pads with zeros where we reflect) and inserts the input's own values at the most relevant features first: at
    fraction p the top ``round(p * F)`` features hold the input, the rest the baseline. The
    score is the normalised trapezoidal AUC of the target's softmax probability; 16 equally
    spaced fractions from 0 to 1 inclusive by default (``steps=15``; RISE itself inserts 224
    pixels per step, i.e. 224 steps on 224x224 images: pass ``steps`` for a finer curve).
    """

    name = "insertion"
    higher_is_better = True
    most_relevant_first = True
    insert = True
    default_steps = 15

    def __init__(self, fractions: Sequence[float] | Tensor | None = None, *,
                 steps: int | None = None, baseline: str | float = "blur",
                 output: str = "prob", per_channel: bool = False, grid: int | None = None,
                 sigma: float = 5.0, kernel_size: int | None = 11,
                 batch_size: int = 256) -> None:
        super().__init__(fractions, steps=steps, baseline=baseline, output=output,
                         per_channel=per_channel, grid=grid, sigma=sigma,
                         kernel_size=kernel_size, batch_size=batch_size)
