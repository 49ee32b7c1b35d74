"""Feature ablation over a feature mask (Captum's ``FeatureAblation``; Zeiler & Fergus 2014's
occlusion generalised to arbitrary feature groups), and the pieces the perturbation methods
share: baselines, the feature-mask option and the forward function of perturbed rows."""

from __future__ import annotations

import math
import numbers
from typing import Any, Callable, Sequence

import torch
from torch import Tensor

from ...core.perturbation import SEGMENTATIONS, feature_ids, ids_keep, perturbed_outputs
from ..base import (
    Attribution,
    Option,
    format_baselines,
    map_batched,
    positive_int,
    register,
)

# sample shape at which input-size dependent costs are reported (a 224 px RGB image)
REFERENCE_SHAPE = (3, 224, 224)


def feature_mask_option(name: str, value: Any) -> Any:
    """None, ``"auto"``, a segmentation name, ``"tokens"``, a positive int (patch grid) or an
    integer tensor (checked against the inputs when used)."""
    if value is None or isinstance(value, Tensor):
        return value
    if isinstance(value, str) and value in ("auto", "tokens", *SEGMENTATIONS):
        return value
    if isinstance(value, numbers.Integral) and not isinstance(value, bool) and value >= 1:
        return int(value)
    raise ValueError(f"{name} must be None, 'auto', 'tokens', {', '.join(map(repr, SEGMENTATIONS))}"
                     f", a patch grid size (positive int) or an integer tensor; got {value!r}")


# below this image side, ``lime``'s quickshift parameters (tuned for ImageNet) give 1-3
# superpixels (CIFAR-10 32 px, MNIST 28 px): "auto" takes SLIC there
QUICKSHIFT_MIN_SIDE = 128


def resolve_feature_mask(inputs: Tensor, feature_mask: Any) -> Any:
    """``"auto"``: quickshift superpixels (``lime``'s parameters) for (N, C, H, W) images with
    both sides >= 128 px, SLIC superpixels (100 segments) for smaller images, tokens for
    (N, L, ...) sequences, every entry for flat (N, D) inputs."""
    if feature_mask != "auto":
        return feature_mask
    if inputs.dim() == 4:
        return "quickshift" if min(inputs.shape[2:]) >= QUICKSHIFT_MIN_SIDE else "slic"
    return {3: "tokens"}.get(inputs.dim())


def baselines_like(inputs: Tensor, baselines: Any) -> Tensor:
    """Captum's ``baselines`` (None: 0, a number, or a tensor broadcasting to the inputs),
    expanded to the inputs' shape."""
    return format_baselines((inputs,), baselines)[0].expand_as(inputs)


def row_forward(method: Attribution, args: tuple, n: int) -> Callable[[Tensor, Tensor], Tensor]:
    """``forward(rows, samples)`` for :func:`~attrlab.core.perturbation.perturbed_outputs`: the
    model on perturbed rows, per-sample forward arguments picked for each row's sample."""
    return lambda rows, samples: method.forward(rows, *map_batched(args, n, lambda a: a[samples]))


def target_outputs(method: Attribution, inputs: Tensor, target: Tensor, args: tuple,
                   transform: Callable[[Tensor], Tensor] | None = None) -> Tensor:
    """The unperturbed selected outputs f_t(x), (N,)."""
    with torch.no_grad():
        out = method.forward(inputs, *args)
    out = out if transform is None else transform(out)
    return out.gather(1, target.view(-1, 1)).squeeze(1)


def logits(out: Tensor) -> Tensor:
    return out


BASELINES = Option(None, None, "replacement of removed features: a number or a tensor "
                   "broadcasting to the inputs (default 0, as Captum)")
BATCH = Option(256, positive_int, "perturbed rows per forward pass")


def mask_features(feature_mask: Any, sample_shape: Sequence[int]) -> float:
    """Number of features of a feature mask on an input of ``sample_shape`` (superpixel counts
    are data dependent: their nominal count, 100, is used)."""
    if feature_mask is None:
        return float(math.prod(sample_shape))
    if isinstance(feature_mask, int):
        return float(feature_mask ** 2)
    if feature_mask == "tokens":
        return float(sample_shape[0])
    if isinstance(feature_mask, Tensor):
        return float(torch.unique(feature_mask).numel())
    return 100.0


@register
class FeatureAblation(Attribution):
    """Feature ablation: a_i = f_t(x) - f_t(x with feature g(i) set to the baseline), for each
    entry i of feature g(i) (Captum's ``FeatureAblation``, the group form of Zeiler & Fergus
    2014's occlusion).

    ``feature_mask``: None (every input entry its own feature, Captum's default), ``"tokens"``
    (every position of (N, L, ...) sequences), an int g (g x g patches of images),
    ``"quickshift"`` / ``"slic"`` (scikit-image superpixels, see
    :func:`~attrlab.core.perturbation.superpixels`) or an integer tensor (1 or N, ...)
    broadcasting to the inputs. Samples may have different numbers of features; the rows
    (sample, feature) of the whole batch go through the model ``internal_batch_size`` at a time.
    Outputs are the model's raw outputs (logits), as Captum.
    """

    name = "feature_ablation"
    reference = "Zeiler & Fergus 2014; Captum FeatureAblation"
    options = {
        "feature_mask": Option(None, feature_mask_option, "feature groups (see the docstring)"),
        "baselines": BASELINES,
        "internal_batch_size": BATCH,
    }

    @classmethod
    def cost(cls, feature_mask: Any = None, sample_shape: Sequence[int] = REFERENCE_SHAPE,
             **options: Any) -> float:
        """1 + the number of features (forward passes per sample), at ``sample_shape``."""
        return 1.0 + mask_features(feature_mask, sample_shape)

    def _attribute(self, inputs: Tensor, target: Tensor, feature_mask: Any, baselines: Any,
                   internal_batch_size: int, additional_forward_args: tuple = ()) -> Tensor:
        n = inputs.shape[0]
        base = baselines_like(inputs, baselines)
        ids, n_features = feature_ids(inputs, resolve_feature_mask(inputs, feature_mask))
        # rows: every (sample, feature) pair, sample-major, no padding
        sample_of_row = torch.repeat_interleave(torch.arange(n, device=inputs.device),
                                                n_features.to(inputs.device))
        starts = torch.cumsum(n_features, 0) - n_features
        feature_of_row = torch.arange(sample_of_row.shape[0], device=inputs.device) \
            - starts.to(inputs.device)[sample_of_row]

        def keep(r: Tensor) -> Tensor:
            return ids[sample_of_row[r]] != feature_of_row[r].view(-1, *([1] * (ids.dim() - 1)))

        out = perturbed_outputs(row_forward(self, additional_forward_args, n), inputs, base,
                                sample_of_row, keep, target, internal_batch_size, logits)
        f_x = target_outputs(self, inputs, target, additional_forward_args)
        diffs = inputs.new_zeros(n, int(n_features.max()))
        diffs[sample_of_row, feature_of_row] = (f_x[sample_of_row] - out).to(inputs.dtype)
        return ids_keep(ids, diffs).expand_as(inputs).clone()
