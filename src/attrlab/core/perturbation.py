"""The perturbation engine shared by metrics (MoRF/LeRF, insertion/deletion, Sensitivity-n) and
perturbation methods (occlusion, feature ablation, RISE, LIME, KernelSHAP).

Its pieces, each independent of any metric or method:

* :class:`FeatureLayout`: how the entries of an input are grouped into features (pixels, entries
  with ``per_channel``, or the cells of a ``grid`` x ``grid`` patch partition) and how a
  feature mask expands back to the input.
* :func:`rank_features` / :func:`feature_counts`: a stable removal order and the number of
  features removed at a fraction.
* :func:`replacement`: the values that replace removed features (``"zero"``, per-image
  ``"mean"``, Gaussian ``"blur"``, or a constant).
* :func:`perturbed_outputs` (and :func:`masked_outputs` / :func:`batched_scores` on top):
  many perturbed rows built lazily and pushed through the model ``batch_size`` rows at a
  time under ``torch.no_grad``.
* For the perturbation methods: :func:`feature_ids` (per-sample feature groups: entries,
  tokens, patches, scikit-image superpixels, a Captum ``feature_mask``), :func:`window_grid` /
  :func:`window_masks` (occlusion windows as Captum's), the interpretable samplers
  (:func:`bernoulli_samples`, :func:`text_samples`, :func:`shapley_size_samples`) and RISE's
  masks (:func:`rise_grids`, :func:`rise_masks`), all drawn from a ``torch.Generator``.

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
from .rng import generator_for

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
    shape = inputs.shape[1:]

    def keep(r: Tensor) -> Tensor:
        m = layout.expand(mask_of_rows(r))
        return m if insert else ~m

    return perturbed_outputs(lambda rows, n: model(rows.reshape(n.shape[0], *shape)),
                             layout.view(inputs), layout.view(repl), sample_of_row, keep,
                             targets, batch_size, transform)


@torch.no_grad()
def perturbed_outputs(forward: Callable[[Tensor, Tensor], Tensor], inputs: Tensor, repl: Tensor,
                      sample_of_row: Tensor, keep_of_rows: Callable[[Tensor], Tensor],
                      targets: Tensor, batch_size: int,
                      transform: Callable[[Tensor], Tensor] | None = None) -> Tensor:
    """The masked forward of every perturbation method and metric: (R,) selected outputs.

    Row r is ``repl[n] + k * (inputs[n] - repl[n])`` for ``n = sample_of_row[r]`` and the keep
    mask ``k = keep_of_rows(rows)[r]`` (broadcasting to ``(len(rows), *inputs.shape[1:])``): a
    bool mask keeps the input where True (``torch.where``, exact), a float mask blends (RISE's
    soft masks, ``x * M`` for a zero ``repl``). Rows are built lazily and pushed through
    ``forward(rows, n)`` (which receives the sample index of each row, so per-sample forward
    arguments can follow) ``batch_size`` rows at a time under ``torch.no_grad``; the output is
    the target column of ``transform(logits)`` (default: softmax probabilities).
    """
    total = sample_of_row.shape[0]
    out = []
    for start in range(0, total, batch_size):
        r = torch.arange(start, min(start + batch_size, total), device=inputs.device)
        n = sample_of_row[r]
        k = keep_of_rows(r)
        if k.dtype == torch.bool:
            rows = torch.where(k, inputs[n], repl[n])
        else:  # b + k (x - b), in place: two row-sized buffers at a time
            b = repl[n]
            rows = inputs[n].sub_(b).mul_(k.to(inputs.dtype)).add_(b)
            del b
        logits = forward(rows, n)
        if start == 0:  # every target at once: one host sync per call
            check_target_range(targets, logits.shape[1])
        vals = torch.softmax(logits, 1) if transform is None else transform(logits)
        out.append(vals.gather(1, targets[n].view(-1, 1)).squeeze(1))
    return torch.cat(out) if out else inputs.new_zeros(0)


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


# ----------------------------------------------------------------------------------------------
# feature masks, windows, samplers and masks of the perturbation methods
# ----------------------------------------------------------------------------------------------

SEGMENTATIONS = ("quickshift", "slic")
# scikit-image parameters: quickshift as the ``lime`` package's default SegmentationAlgorithm,
# SLIC with scikit-image's defaults
SEGMENTATION_DEFAULTS = {"quickshift": {"kernel_size": 4, "max_dist": 200, "ratio": 0.2},
                         "slic": {"n_segments": 100, "compactness": 10.0}}


def superpixels(inputs: Tensor, algorithm: str, seed: int = 0, **params: Any) -> Tensor:
    """Superpixel ids (N, 1, H, W) of a batch of (N, C, H, W) images by scikit-image.

    Each image is min-max scaled to [0, 1] first (the models' inputs are normalised; scikit-image
    expects an intensity image); one- or two-channel images are repeated to RGB. ``quickshift``
    (``lime``'s defaults ``kernel_size=4, max_dist=200, ratio=0.2``, on the CIELAB conversion
    of the [0, 1] image, seeded with ``seed``) or ``slic`` (``n_segments=100,
    compactness=10``). scikit-image runs on the host, one image at a time.
    """
    if algorithm not in SEGMENTATIONS:
        raise ValueError(f"unknown segmentation {algorithm!r}; use one of {SEGMENTATIONS}")
    if inputs.dim() != 4:
        raise ValueError(f"superpixels need image inputs (N, C, H, W); got shape "
                         f"{tuple(inputs.shape)}")
    from skimage.segmentation import quickshift, slic

    opts = {**SEGMENTATION_DEFAULTS[algorithm], **params}
    x = inputs.detach().to("cpu", torch.float64)
    lo = x.amin((1, 2, 3), keepdim=True)
    span = (x.amax((1, 2, 3), keepdim=True) - lo).clamp_min(1e-12)
    x = ((x - lo) / span).permute(0, 2, 3, 1).numpy()
    if x.shape[-1] != 3:
        x = x[..., :1].repeat(3, -1) if x.shape[-1] < 3 else x[..., :3]
    segs = []
    for img in x:
        if algorithm == "quickshift":
            seg = quickshift(img, rng=seed, convert2lab=True, **opts)
        else:
            seg = slic(img, start_label=0, channel_axis=-1, **opts)
        segs.append(torch.from_numpy(seg.astype("int64")))
    return torch.stack(segs).unsqueeze(1).to(inputs.device)


def patch_ids(sample_shape: Sequence[int], grid: int) -> Tensor:
    """Ids (1, 1, H, W) of a ``grid`` x ``grid`` partition of an image (as :class:`FeatureLayout`)."""
    layout = FeatureLayout(sample_shape, grid=grid)
    return layout.index.view(1, 1, *sample_shape[1:])


def feature_ids(inputs: Tensor, feature_mask: Any, seed: int = 0) -> tuple[Tensor, Tensor]:
    """Interpretable features of every sample: ``(ids, n_features)``.

    ``feature_mask`` is ``None`` (every input entry its own feature, Captum's default),
    ``"quickshift"`` / ``"slic"`` (superpixels, :func:`superpixels`), ``"tokens"`` (every
    position of dimension 1 of (N, L, ...) inputs, e.g. the token embeddings of a sequence), an
    int g (a g x g patch partition of images) or an integer tensor broadcasting to the inputs
    (Captum's ``feature_mask``: (1, ...) shared by the batch, or (N, ...) per sample).

    ``ids`` has shape (N, *s) with ``s`` broadcasting to ``inputs.shape[1:]`` and values relabelled
    per sample to 0..n_features[i]-1 in increasing order of the given ids (so a Captum mask with
    ids 0..F-1 keeps its numbering); ``n_features`` is (N,) long.
    """
    n, shape = inputs.shape[0], tuple(inputs.shape[1:])
    if feature_mask is None:
        ids = torch.arange(math.prod(shape), device=inputs.device).view(1, *shape)
    elif isinstance(feature_mask, str):
        if feature_mask in SEGMENTATIONS:
            ids = superpixels(inputs, feature_mask, seed)
        elif feature_mask == "tokens":
            if inputs.dim() < 3:
                raise ValueError(f"feature_mask='tokens' needs (N, L, ...) sequence inputs; got "
                                 f"shape {tuple(inputs.shape)}")
            ids = torch.arange(shape[0], device=inputs.device).view(1, -1, *([1] * (len(shape) - 1)))
        else:
            raise ValueError(f"unknown feature_mask {feature_mask!r}; use None, "
                             f"{', '.join(map(repr, SEGMENTATIONS))}, 'tokens', an int (patch grid) "
                             "or an integer tensor")
    elif isinstance(feature_mask, int) and not isinstance(feature_mask, bool):
        ids = patch_ids(shape, feature_mask).to(inputs.device)
    elif isinstance(feature_mask, Tensor):
        if feature_mask.is_floating_point() or feature_mask.is_complex() \
                or feature_mask.dtype == torch.bool:
            raise ValueError(f"feature_mask must be an integer tensor, got {feature_mask.dtype}")
        ids = feature_mask.to(inputs.device, torch.long)
        if ids.dim() != inputs.dim() or ids.shape[0] not in (1, n):
            raise ValueError(f"feature_mask must have shape (1 or N, ...) broadcasting to the "
                             f"inputs {tuple(inputs.shape)}; got {tuple(ids.shape)}")
        try:
            torch.broadcast_shapes(ids.shape[1:], shape)
        except RuntimeError as err:
            raise ValueError(f"feature_mask of shape {tuple(ids.shape)} does not broadcast to "
                             f"the inputs {tuple(inputs.shape)}") from err
        if any(a not in (1, b) for a, b in zip(ids.shape[1:], shape)):
            raise ValueError(f"feature_mask of shape {tuple(ids.shape)} does not broadcast to "
                             f"the inputs {tuple(inputs.shape)}")
    else:
        raise ValueError(f"feature_mask must be None, a name, an int or an integer tensor; got "
                         f"{type(feature_mask).__name__}")
    ids = ids.expand(n, *ids.shape[1:])
    flat = ids.reshape(n, -1)
    lo = flat.amin(1, keepdim=True)
    span = int((flat - lo).max()) + 1
    key = torch.arange(n, device=ids.device).view(-1, 1) * span + (flat - lo)
    uniq, inverse = torch.unique(key, return_inverse=True)
    per_sample = torch.bincount(uniq // span, minlength=n)
    first = torch.cumsum(per_sample, 0) - per_sample
    local = inverse - first.view(-1, 1)
    return local.view(ids.shape), per_sample


def ids_keep(ids: Tensor, keep: Tensor) -> Tensor:
    """Entry keep mask (R, *s) of rows whose feature keep vectors are ``keep`` (R, F) and whose
    sample's feature ids (:func:`feature_ids`) are ``ids`` (R, *s)."""
    return keep.gather(1, ids.reshape(ids.shape[0], -1)).view(ids.shape)


def window_grid(shape: Sequence[int], window: Sequence[int], strides: Sequence[int]
                ) -> list[Tensor]:
    """Start of every sliding window along each dimension, as Captum's ``Occlusion``:
    ``ceil((d - w) / s) + 1`` starts ``0, s, 2s, ...`` per dimension (the last window is cut at
    the border)."""
    starts = []
    for d, w, s in zip(shape, window, strides):
        if w > d:
            raise ValueError(f"sliding window {tuple(window)} is larger than the input "
                             f"{tuple(shape)}")
        if s > w and d != w:
            raise ValueError(f"stride {tuple(strides)} larger than the window {tuple(window)}")
        starts.append(torch.arange(math.ceil((d - w) / s) + 1) * s)
    return starts


def window_masks(shape: Sequence[int], window: Sequence[int], starts: list[Tensor],
                 features: Tensor) -> Tensor:
    """Occlusion masks (R, *shape) bool, True inside window ``features[r]`` (row-major over the
    window grid of :func:`window_grid`, the last dimension fastest)."""
    counts = [len(s) for s in starts]
    out = None
    rem = features
    for dim in reversed(range(len(shape))):
        k = rem % counts[dim]
        rem = rem // counts[dim]
        lo = starts[dim].to(features.device)[k].view(-1, *([1] * len(shape)))
        c = torch.arange(shape[dim], device=features.device).view(
            [1] + [shape[dim] if i == dim else 1 for i in range(len(shape))])
        inside = (c >= lo) & (c < lo + window[dim])
        out = inside if out is None else out & inside
    return out


def bernoulli_samples(n: int, n_samples: int, n_features: Tensor, generator: torch.Generator | None,
                      first_full: bool = True, device: Any = None) -> Tensor:
    """LIME's image sampler: (n, S, F_max) 0/1 samples, every feature kept with probability 1/2
    (the ``lime`` package's ``randint(0, 2)``), the first sample all ones (the unperturbed input)
    when ``first_full``; columns beyond a sample's ``n_features`` are 0. Drawn on the host from
    ``generator``."""
    f_max = int(n_features.max())
    g = generator_for("cpu", generator)
    z = torch.randint(0, 2, (n, n_samples, f_max), generator=g, dtype=torch.int64,
                      device=g.device).cpu()
    if first_full:
        z[:, 0] = 1
    return (z * _valid(n_features, f_max)).to(device)


def text_samples(n: int, n_samples: int, n_features: Tensor, generator: torch.Generator | None,
                 device: Any = None) -> Tensor:
    """LIME's text sampler (the ``lime`` package's ``LimeTextExplainer``): the first sample all
    ones, every other one removes a number of features drawn uniformly from 1..M and then a
    uniform subset of that size. (n, S, F_max) 0/1."""
    f_max = int(n_features.max())
    g = generator_for("cpu", generator)
    u = torch.rand(n, n_samples, generator=g, dtype=torch.float64, device=g.device).cpu()
    removed = (u * n_features.cpu().view(-1, 1)).long() + 1  # uniform in 1..M
    keys = torch.rand(n, n_samples, f_max, generator=g, dtype=torch.float64, device=g.device).cpu()
    keys = keys.masked_fill(~_valid(n_features, f_max).bool(), 2.0)
    ranks = torch.argsort(torch.argsort(keys, dim=2), dim=2)
    z = (ranks >= removed.unsqueeze(2)).long() * _valid(n_features, f_max)
    z[:, 0] = _valid(n_features, f_max).squeeze(1)
    return z.to(device)


def shapley_size_samples(n: int, n_samples: int, n_features: Tensor,
                         generator: torch.Generator | None, device: Any = None) -> Tensor:
    """KernelSHAP's sampler (Lundberg & Lee 2017, as Captum's ``KernelShap`` and ``shap``): the
    full and the empty coalition first, then coalitions whose size k in 1..M-1 is drawn with
    probability proportional to the Shapley kernel's total weight of that size,
    (M - 1) / (k (M - k)), and whose members are a uniform k-subset. (n, S, F_max) 0/1."""
    f_max = int(n_features.max())
    m = n_features.to(torch.float64).view(-1, 1)
    k = torch.arange(f_max + 1, dtype=torch.float64).view(1, -1)
    probs = (m - 1) / (k * (m - k))
    probs[(k < 1) | (k > m - 1)] = 0.0
    probs[probs.sum(1) == 0, 0] = 1.0  # one feature: no proper coalition, draw empty ones
    g = generator_for("cpu", generator)
    sizes = torch.multinomial(probs.to(g.device), n_samples, replacement=True,
                              generator=g).cpu()  # (n, S)
    keys = torch.rand(n, n_samples, f_max, generator=g, dtype=torch.float64, device=g.device).cpu()
    keys = keys.masked_fill(~_valid(n_features, f_max).bool(), 2.0)
    ranks = torch.argsort(torch.argsort(keys, dim=2), dim=2)
    z = (ranks < sizes.unsqueeze(2)).long()
    z[:, 0] = _valid(n_features, f_max).squeeze(1)
    if n_samples > 1:
        z[:, 1] = 0
    return z.to(device)


def _valid(n_features: Tensor, f_max: int) -> Tensor:
    return (torch.arange(f_max).view(1, 1, -1) < n_features.cpu().view(-1, 1, 1)).long()


def rise_grids(n_masks: int, size: Sequence[int], cells: int, p: float,
               generator: torch.Generator | None) -> tuple[Tensor, Tensor]:
    """The random part of N RISE masks (Petsiuk et al. 2018, sec. 3.2), drawn on the host from
    ``generator``: binary ``cells`` x ``cells`` grids (N, cells, cells) bool, every cell kept
    with probability ``p``, and shifts (N, 2) long in [0, cell) per axis,
    ``cell = ceil(side / cells)``. N x cells^2 bytes: the full-size masks are made by
    :func:`rise_masks`, a chunk at a time, so a mask does not depend on the chunking."""
    g = generator_for("cpu", generator)
    grids = torch.rand(n_masks, cells, cells, generator=g, device=g.device).cpu() < p
    cell = [math.ceil(d / cells) for d in size]
    shifts = torch.stack([torch.randint(0, c, (n_masks,), generator=g, device=g.device).cpu()
                          for c in cell], 1)
    return grids, shifts


def rise_masks(grids: Tensor, shifts: Tensor, size: Sequence[int], device: Any,
               dtype: torch.dtype) -> Tensor:
    """RISE masks (k, 1, H, W) in [0, 1] of grids and shifts from :func:`rise_grids`: each grid
    bilinearly upsampled to ``(cells + 1) * cell`` per axis (torch's ``align_corners=False``)
    and cropped to H x W at its shift. Only this chunk of k masks exists, in ``dtype`` on
    ``device``."""
    h, w = size
    cells = grids.shape[-1]
    ch, cw = math.ceil(h / cells), math.ceil(w / cells)
    up = F.interpolate(grids.unsqueeze(1).to(device, dtype), size=((cells + 1) * ch,
                       (cells + 1) * cw), mode="bilinear", align_corners=False)
    rows = (shifts[:, :1] + torch.arange(h).view(1, -1)).to(device)  # (k, H)
    cols = (shifts[:, 1:] + torch.arange(w).view(1, -1)).to(device)  # (k, W)
    idx = torch.arange(grids.shape[0], device=device).view(-1, 1, 1)
    # clamped: bilinear weights may round a kept region to 1 + 1 ulp
    return up[idx, 0, rows.unsqueeze(2), cols.unsqueeze(1)].unsqueeze(1).clamp_(0, 1)
