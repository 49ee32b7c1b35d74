"""Base class and registry of evaluation metrics.

One uniform call for every metric::

    scores = attrlab.metrics.get("morf", steps=10).evaluate(model, inputs, targets, attributions)

``scores`` is a float tensor of shape (N,), one score per sample. Metrics that are curves
(MoRF/LeRF, insertion/deletion, sanity checks) also offer ``curve(...) -> (x, y)`` with
``x`` of shape (K,) and ``y`` of shape (N, K), from which the score is derived.

Metrics run the model in eval mode and without gradients (``torch.no_grad``), in batches of
``batch_size`` rows (all perturbation steps of all samples are stacked), and never modify the
model: :func:`attrlab.methods.hooks.model_guard` restores its state afterwards. Metrics that
must recompute attributions (sanity checks) take the attribution ``method`` as well.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from ..core.checks import check_inputs, resolve_target
from ..core.hooks import model_guard
from ..core.registry import Registry

_METRICS: Registry = Registry("metric")
_REGISTRY = _METRICS.items
register = _METRICS.register
available = _METRICS.available
metric_class = _METRICS.get_class


def get(name: str, **options: Any) -> "Metric":
    """Build the registered metric ``name`` with its options."""
    return metric_class(name)(**options)


class Metric:
    """A per-sample evaluation of attributions.

    ``higher_is_better`` orients leaderboards; ``needs_method`` marks metrics that call the
    attribution method again (``evaluate(..., method=...)``); ``fast`` marks metrics cheap
    enough for ``attrlab bench``'s default run.
    """

    name: ClassVar[str] = ""
    higher_is_better: ClassVar[bool] = True
    needs_method: ClassVar[bool] = False
    fast: ClassVar[bool] = True

    def __init__(self, batch_size: int = 256) -> None:
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
        self.batch_size = batch_size

    def evaluate(self, model: nn.Module, inputs: Tensor, targets: Any, attributions: Tensor,
                 method: Any = None) -> Tensor:
        """Per-sample scores, shape (N,). Validates shapes and targets first."""
        t = self._check(model, inputs, targets, attributions)
        if self.needs_method and method is None:
            raise ValueError(f"metric {self.name!r} needs the attribution method (method=...)")
        with model_guard(model):
            kwargs = {"method": method} if self.needs_method else {}
            return self._evaluate(model, inputs.detach(), t, attributions.detach(), **kwargs)

    def _check(self, model: nn.Module, inputs: Tensor, targets: Any, attributions: Tensor) -> Tensor:
        check_inputs(model, inputs)
        if not isinstance(attributions, Tensor):
            raise TypeError("attributions must be a torch.Tensor")
        if attributions.shape != inputs.shape:
            raise ValueError(f"attributions of shape {tuple(attributions.shape)} do not match "
                             f"inputs of shape {tuple(inputs.shape)}")
        if not torch.isfinite(attributions).all():
            raise ValueError("attributions contain NaN or inf values")
        t = resolve_target(targets, inputs.shape[0], inputs.device)
        if t is None:
            raise ValueError("metrics need explicit targets (the class each map explains)")
        return t

    def _evaluate(self, model: nn.Module, inputs: Tensor, targets: Tensor,
                  attributions: Tensor, **kwargs: Any) -> Tensor:
        raise NotImplementedError
