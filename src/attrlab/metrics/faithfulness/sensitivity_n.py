"""Sensitivity-N (Ancona et al. 2018): do attribution sums predict the effect of removals?

Paper 04 (DGA), Section 4.2, eq. (13)::

    corr_S [ sum_{i in S} phi_i(x),  f(x) - f(x_{S removed}) ],   |S| = n, S uniformly random,

approximated there "patch-wise ... with randomly sampled binary masks M_q in {0,1}^{14x14}
(100 masks for each input) where the portion of 1 in each mask is constrained be q" [sic],
upsampled to the image (Table 2: q = 10..90%). Paper 02, Section 4.4.1, uses the pixel
version ("randomly masks n pixels ... Pearson Correlation Coefficient").

Definition implemented by :class:`SensitivityN` (``name="sensitivity_n"``, higher is better):

1. Features are pixels (attributions summed over channels; all channels of a pixel removed
   together), entries with ``per_channel=True``, or the cells of a ``grid`` x ``grid``
   partition (nearest-neighbour upsampling of the mask, as Psi in eq. 13) -- see
   :class:`attrlab.core.perturbation.FeatureLayout`.
2. ``n = round(fraction * F)`` (at least 1) features per subset. ``n_subsets`` subsets are
   drawn uniformly without replacement (argsort of uniform noise from a
   ``torch.Generator`` seeded with ``seed``). The *same* subsets are used for every sample
   of the batch, so a sample's score does not depend on the rest of the batch (and methods
   are compared on identical subsets); the subsets depend only on (seed, n_subsets, F, n).
3. Removal replaces the subset by the ``baseline`` ("zero" default; "mean", "blur", a float:
   as in :mod:`attrlab.metrics.faithfulness.pixel_perturbation`). The output is the target logit by default
   (``output="prob"``: softmax probability). drop_s = f_t(x) - f_t(x without S_s).
4. The score of a sample is Pearson's r between ``sum_{i in S_s} phi_i`` (float64) and
   ``drop_s`` across its subsets. **Zero variance**: if either series is constant across the
   subsets up to rounding -- its range (max - min) is at most ``8 * eps * scale``, with
   float64's eps and scale max |sum| for the attribution sums (accumulated in float64), the
   input dtype's eps and scale max |f_t| over the sample's rows for the drops -- r is
   undefined and the score is 0: no linear relation is shown. This happens e.g. for
   fraction = 1 (every subset is everything), an all-zero or uniform map, or a model that
   ignores the removed features.

For a linear model f_t(x) = w_t . x with zero baseline and phi = w_t * x (Gradient x Input),
drop_s equals the attribution sum exactly, so r = 1 ("sensitivity-n" holds for every n).

Comparison with Quantus 0.6.0 ``quantus.SensitivityN``: Quantus removes features
*cumulatively in attribution order* (no random subsets), pairs the cumulative output drop
with the attribution sum of the last step only, and correlates across the *samples* of the
batch, one r per step (and only for the first batch). Its value coincides with ours for one
sample when it is given copies of the sample whose attributions are ``phi + C * 1_S`` (a
constant offset C pushes subset S to the top and shifts every attribution sum by the same
n * C, which Pearson ignores), ``features_in_step = n`` (entries) and
``n_max_percentage = n / (H * W)`` (Quantus counts H * W features even for C channels, also
in its assert that ``features_in_step`` divides H * W): ``tests/metrics/test_sensitivity.py``
checks exactly that.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from ...core.hooks import model_guard
from ...core.perturbation import (
    FeatureLayout,
    _check_positive_int,
    batched_scores,
    check_baseline,
    check_blur,
    check_output,
    masked_outputs,
    output_transform,
    replacement,
)
from ..base import Metric, MetricResult, register


def pearson(a: Tensor, b: Tensor, a_tol: Tensor | float = 0.0,
            b_tol: Tensor | float = 0.0) -> Tensor:
    """Row-wise Pearson r of two (N, S) series, in float64.

    A row whose range (max - min) is at most its tolerance (``a_tol``/``b_tol``, scalar or
    (N,)) counts as constant; r is undefined there and 0 is returned.
    """
    a, b = a.double(), b.double()
    ac = a - a.mean(1, keepdim=True)
    bc = b - b.mean(1, keepdim=True)
    denom = (ac.square().sum(1) * bc.square().sum(1)).sqrt()
    a_tol = torch.as_tensor(a_tol, dtype=torch.float64, device=a.device)
    b_tol = torch.as_tensor(b_tol, dtype=torch.float64, device=b.device)
    flat = ((a.amax(1) - a.amin(1)) <= a_tol) | ((b.amax(1) - b.amin(1)) <= b_tol) | \
        (denom == 0)
    r = (ac * bc).sum(1) / torch.where(flat, torch.ones_like(denom), denom)
    return torch.where(flat, torch.zeros_like(r), r.clamp(-1.0, 1.0))


@register
class SensitivityN(Metric):
    """Pearson correlation of attribution sums and output drops over random subsets.

    See the module docstring for the exact definition (paper 04, eq. 13 and Section 4.2;
    paper 02, Section 4.4.1).

    Args:
        fraction: q, the fraction of features in each subset, in (0, 1]; n = round(q * F),
            at least 1.
        n_subsets: subsets per sample (at least 2), default 100 as in paper 04.
        grid: None for pixel features, g for a g x g patch grid (paper 04 uses 14).
        baseline: replacement of removed features: "zero" (default), "mean", "blur", float.
        output: "logit" (default) or "prob".
        per_channel: individual (c, h, w) entries as features (not with ``grid``).
        seed: seed of the ``torch.Generator`` that draws the subsets (deterministic).
        sigma, kernel_size: the Gaussian of the "blur" baseline.
        batch_size: perturbed rows per forward pass.

    ``compute_many(model, inputs, targets, {name: map})`` scores several maps of the same
    batch with one set of masked forward passes (``shares_model_passes``): the drops do not
    depend on the map. Each result equals ``compute`` on that map exactly.
    """

    name = "sensitivity_n"
    higher_is_better = True
    category = "faithfulness"
    shares_model_passes = True
    fast: ClassVar[bool] = False
    cost_formula = "n_subsets + 1 forward passes per sample, shared by all maps of compute_many"

    def __init__(self, fraction: float = 0.5, n_subsets: int = 100, grid: int | None = None,
                 baseline: str | float = "zero", output: str = "logit",
                 per_channel: bool = False, seed: int = 0, sigma: float = 5.0,
                 kernel_size: int | None = 11, batch_size: int = 256) -> None:
        super().__init__(batch_size=batch_size)
        if isinstance(fraction, bool) or not isinstance(fraction, (int, float)) \
                or not 0 < fraction <= 1:
            raise ValueError(f"fraction must be a number in (0, 1], got {fraction!r}")
        self.fraction = float(fraction)
        self.n_subsets = _check_positive_int("n_subsets", n_subsets)
        if self.n_subsets < 2:
            raise ValueError("n_subsets must be at least 2 (a correlation needs two points)")
        self.grid = _check_positive_int("grid", grid, allow_none=True)
        self.per_channel = bool(per_channel)
        if self.grid is not None and self.per_channel:
            raise ValueError("grid (patch features) and per_channel=True exclude each other")
        self.baseline = check_baseline(baseline)
        self.output = check_output(output)
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise ValueError(f"seed must be an int, got {seed!r}")
        self.seed = seed
        self.sigma, self.kernel_size = check_blur(sigma, kernel_size)

    # -- public API ------------------------------------------------------------------------
    def subset_size(self, n_features: int) -> int:
        """n = round(fraction * F), clipped to [1, F]."""
        return min(n_features, max(1, round(self.fraction * n_features)))

    def subset_masks(self, n_features: int) -> Tensor:
        """The (n_subsets, F) boolean masks of the removed subsets (shared by all samples).

        Each row holds ``subset_size(F)`` True entries chosen uniformly at random without
        replacement; the same ``seed`` always gives the same masks.
        """
        _check_positive_int("n_features", n_features)
        gen = torch.Generator(device="cpu").manual_seed(self.seed)
        noise = torch.rand(self.n_subsets, n_features, generator=gen, dtype=torch.float64)
        chosen = noise.argsort(dim=1)[:, :self.subset_size(n_features)]
        return torch.zeros(self.n_subsets, n_features, dtype=torch.bool).scatter_(1, chosen, True)

    def feature_layout(self, inputs: Tensor) -> FeatureLayout:
        return FeatureLayout(inputs.shape[1:], self.per_channel, self.grid)

    def pairs(self, model: nn.Module, inputs: Tensor, targets: Any,
              attributions: Tensor) -> tuple[Tensor, Tensor]:
        """``(attribution sums, output drops)``, both (N, n_subsets): the points whose
        per-sample Pearson correlation is the score (float64 sums, drops in input dtype)."""
        t = self._check(model, inputs, targets, attributions)
        with model_guard(model):
            layout, masks = self._subsets(inputs)
            drops, _ = self._drops(model, inputs.detach(), t, layout, masks)
        return self._sums(layout, masks, attributions.detach()), drops

    def forward_passes(self, **info: Any) -> float:
        """n_subsets + 1: the masked inputs and the unmasked one (per sample, shared by all
        maps of :meth:`compute_many`)."""
        self._cost_info(info)
        return float(self.n_subsets + 1)

    # -- implementation --------------------------------------------------------------------
    def _subsets(self, inputs: Tensor) -> tuple[FeatureLayout, Tensor]:
        """The feature layout of ``inputs`` and the (S, F) subset masks on their device."""
        layout = self.feature_layout(inputs)
        return layout, self.subset_masks(layout.n_features).to(inputs.device)

    @staticmethod
    def _sums(layout: FeatureLayout, masks: Tensor, attributions: Tensor) -> Tensor:
        """(N, S) float64 attribution sums of the removed subsets."""
        return layout.scores(attributions).double() @ masks.double().T

    def _drops(self, model: nn.Module, inputs: Tensor, targets: Tensor, layout: FeatureLayout,
               masks: Tensor) -> tuple[Tensor, Tensor]:
        """(N, S) output drops f_t(x) - f_t(x without S_s) and the (N,) output scale
        max(|f_t(x)|, max_s |f_t(x without S_s)|) of the rounding tolerance."""
        n, s = inputs.shape[0], self.n_subsets
        transform = output_transform(self.output)
        repl = replacement(inputs, self.baseline, self.sigma, self.kernel_size)
        sample_of_row = torch.arange(n, device=inputs.device).repeat_interleave(s)
        perturbed = masked_outputs(model, inputs, repl, layout, sample_of_row,
                                   lambda r: masks[r % s], targets, self.batch_size,
                                   transform).view(n, s)
        full = batched_scores(model, inputs, targets, self.batch_size, transform)
        drops = full[:, None] - perturbed
        scale = torch.maximum(full.abs(), perturbed.abs().amax(1))
        return drops, scale

    @staticmethod
    def _correlation(sums: Tensor, drops: Tensor, scale: Tensor, dtype: torch.dtype) -> Tensor:
        # constant up to rounding: the sums are float64 sums of the given attributions, the
        # drops differences of outputs of magnitude <= scale in the input dtype
        sum_tol = 8 * torch.finfo(torch.float64).eps * sums.abs().amax(1)
        drop_tol = 8 * torch.finfo(dtype).eps * scale.double()
        return pearson(sums, drops, sum_tol, drop_tol).to(dtype)

    def _compute(self, model: nn.Module, inputs: Tensor, targets: Tensor, attributions: Tensor,
                 **_: Any) -> MetricResult:
        return self._compute_many(model, inputs, targets, {"": attributions})[""]

    def _compute_many(self, model: nn.Module, inputs: Tensor, targets: Tensor,
                      attributions: dict[str, Tensor], **_: Any) -> dict[str, MetricResult]:
        """The output drops (``n_subsets + 1`` forward passes per sample) depend only on the
        model, the inputs and the subsets: computed once, correlated with every map's sums."""
        layout, masks = self._subsets(inputs)
        drops, scale = self._drops(model, inputs, targets, layout, masks)
        return {name: MetricResult(self._correlation(self._sums(layout, masks, a), drops,
                                                     scale, inputs.dtype))
                for name, a in attributions.items()}

    def __repr__(self) -> str:
        return (f"SensitivityN(fraction={self.fraction}, n_subsets={self.n_subsets}, "
                f"grid={self.grid}, baseline={self.baseline!r}, output={self.output!r}, "
                f"seed={self.seed})")
