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
(:func:`attrlab.core.perturbation.masked_outputs`).

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

from typing import Any, ClassVar, Sequence

import torch
from torch import Tensor, nn

from ...core.perturbation import (
    FeatureLayout,
    _check_positive_int,
    check_baseline,
    check_blur,
    check_fractions,
    check_output,
    feature_counts,
    masked_outputs,
    normalized_auc,
    output_transform,
    rank_features,
    replacement,
)
from ..base import CurveMetric, register

# ----------------------------------------------------------------------------------------------
# metrics
# ----------------------------------------------------------------------------------------------


class PixelPerturbation(CurveMetric):
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

    ``compute(...)`` returns the curve ``(fractions (K,), outputs (N, K))`` and, as scores,
    :func:`normalized_auc` of that curve (:meth:`summarize`); ``curve(...)`` is its curve.
    """

    category = "faithfulness"
    cost_formula = "K forward passes per sample (K = number of fractions, steps + 1)"
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

    # -- metadata --------------------------------------------------------------------------
    def forward_passes(self, **info: Any) -> float:
        """K: one perturbed row per fraction and sample."""
        self._cost_info(info)
        return float(self.fractions.numel())

    # -- implementation --------------------------------------------------------------------
    def summarize(self, x: Tensor, y: Tensor) -> Tensor:
        """:func:`normalized_auc` of the curve."""
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

    def _curve(self, model: nn.Module, inputs: Tensor, targets: Tensor, attributions: Tensor,
               **_: Any) -> tuple[Tensor, Tensor]:
        """``(x, y)``: the fractions (K,) and the target output after each, (N, K)."""
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
    cost_formula = "K + 1 forward passes per sample (K fractions and the unperturbed input)"
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

    def forward_passes(self, **info: Any) -> float:
        """K + 1: one row per fraction plus the unperturbed reference."""
        self._cost_info(info)
        return float(self.fractions.numel() + 1)

    def _curve(self, model: nn.Module, inputs: Tensor, targets: Tensor, attributions: Tensor,
               **_: Any) -> tuple[Tensor, Tensor]:
        with_ref = torch.cat([self.fractions.new_zeros(1), self.fractions])
        y = self._outputs_at(model, inputs, targets, attributions, with_ref)
        ref = y[:, :1]
        change = (y[:, 1:] - ref).abs() / ref.abs().clamp_min(self.eps)
        return self.fractions.to(device=inputs.device, dtype=inputs.dtype), change

    def summarize(self, x: Tensor, y: Tensor) -> Tensor:
        """The plain mean of the changes over the given fractions."""
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
