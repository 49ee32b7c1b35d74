"""What PruneGrad and PrunePGD share (paper 03): the pruning options, the calibration of the
pruning percentage by :meth:`PrunedNetworkAttribution.fit`, and the pruned network's masks for a
batch. The activation-mask machinery itself is :mod:`attrlab.core.activation_masks`."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor

from ...core.activation_masks import (
    calibrate_percentage,
    changes_at,
    iterative_percentage,
    model_device,
    prune_masks,
    relu_importance,
)
from ...core.checks import data_inputs
from ..base import (
    Attribution,
    Option,
    batch_size_or_none,
    boolean,
    chunks,
    number_in,
    one_of,
    positive_int,
)


def percentage_or_none(name: str, value: Any) -> float | None:
    """None or a percentage in [0, 100]."""
    return None if value is None else number_in(0.0, 100.0)(name, value)


def reduce_channels(grad: Tensor, how: str | None, abs: bool = False) -> Tensor:
    """The notes' channel reduction of an (N, C, ...) map: per pixel the channel value of
    largest magnitude (the max or the min, whichever is larger in absolute value), (N, 1, ...);
    ``None`` (or an input without channels, dim < 3) leaves the map as it is. With ``abs``
    the magnitude is returned (after "absmax": max_c |g_c|, Simonyan et al.'s saliency)."""
    if how is not None and grad.dim() >= 3:
        grad = grad.gather(1, grad.abs().argmax(1, keepdim=True))
    return grad.abs() if abs else grad


class PrunedNetworkAttribution(Attribution):
    """Base of the pruning methods: prune the ReLU activations of low importance
    s = |a * dy/da| (paper 03, eq. 2), one global threshold per sample over all layers.

    The pruning percentage comes from, in this order: the ``percentage`` option (fixed, as the
    authors' code: 85), :meth:`fit` (``calibration="fit"``: the percentage whose mean relative
    change of the target logit on validation data equals ``output_change``, section 4.1), or,
    with ``calibration="iterative"``, per sample at attribution time (prune ``step`` % more at
    a time while the change stays within ``output_change``).
    """

    needs_data = True
    multi_input = False
    input_kinds = ("image", "flat", "sequence")
    reference = "Khakzar et al. 2019 (PruneGrad / PrunePGD), section 3, eq. 2-3, section 4.1"
    options = {
        "output_change": Option(0.15, number_in(0.0, math.inf, lo_open=True),
                                "allowed mean relative change of the target logit"),
        "percentage": Option(None, percentage_or_none,
                             "fixed pruning percentage (skips calibration)"),
        "calibration": Option("fit", one_of("fit", "iterative"),
                              "'fit': one percentage from validation data; 'iterative': per "
                              "sample, step % at a time"),
        "step": Option(1.0, number_in(0.0, 100.0, lo_open=True), "iterative step in %"),
        "calibration_samples": Option(1000, positive_int, "validation samples fit uses"),
        "calibration_batch_size": Option(100, batch_size_or_none, "samples per pass in fit"),
        "channel_reduction": Option("absmax", one_of("absmax", None),
                                    "'absmax': per pixel the channel of largest magnitude"),
        "abs": Option(False, boolean, "absolute value of the map (saliency-style magnitude)"),
    }

    def __init__(self, model: Any, **options: Any) -> None:
        super().__init__(model, **options)
        self.signed = not self.defaults["abs"]
        self.fitted_percentage: float | None = None
        self.fitted_change: float | None = None
        self.fitted_threshold: float | None = None

    @classmethod
    def _calibration_rows(cls, calibration: str = "fit", step: float = 1.0,
                          percentage: Any = None) -> float:
        """Extra forward rows per sample of the iterative variant (an upper bound)."""
        if percentage is not None or calibration != "iterative":
            return 0.0
        return float(math.floor(100.0 / step + 1e-9))

    # -- data --------------------------------------------------------------------------------
    @property
    def fitted(self) -> bool:
        return self.fitted_percentage is not None

    def _has_data(self, options: Mapping[str, Any]) -> bool:
        return options["percentage"] is not None or options["calibration"] == "iterative"

    def _data_hint(self) -> str:
        return (" on validation data (it calibrates the pruning percentage), or pass "
                "percentage= or calibration='iterative'")

    def fit(self, data: Any, *, generator: torch.Generator | None = None
            ) -> PrunedNetworkAttribution:
        """Choose the pruning percentage on ``data`` (a tensor batch, or a data set with
        ``len`` and ``tensors(indices)``): the percentage whose mean relative change of the
        predicted class's logit, |f_p(x) - f(x)| / |f(x)|, equals ``output_change`` (paper 03,
        section 4.1; search: :func:`~attrlab.core.activation_masks.calibrate_percentage`).
        Uses ``calibration_samples`` samples drawn with ``generator`` (seed 0 by default)."""
        opts = self.defaults
        gen = torch.Generator().manual_seed(0) if generator is None else generator
        n = len(data)
        if n < 1:
            raise ValueError(f"{self.name}.fit: the data set is empty")
        pick = torch.randperm(n, generator=gen)[: opts["calibration_samples"]].sort().values
        x = data_inputs(data, pick, f"{self.name}.fit")
        device = model_device(self.forward_func)
        x = x.detach().to(device) if device is not None else x.detach()
        with self.guard():
            slices = chunks(len(x), opts["calibration_batch_size"])
            targets = [self.predict(x[sl]) for sl in slices]

            def mean_change(ps):
                total = sum(changes_at(self.forward, x[sl], t, ps, who=self.name).sum(0)
                            for sl, t in zip(slices, targets))
                return total.double().cpu() / len(x)

            p, c = calibrate_percentage(mean_change, opts["output_change"])
        self.fitted_percentage, self.fitted_change = float(p), float(c)
        self.fitted_threshold = opts["output_change"]
        return self

    def state_dict(self) -> dict[str, Any]:
        if self.fitted_percentage is None:
            return {}
        return {"percentage": self.fitted_percentage, "mean_change": self.fitted_change,
                "output_change": self.fitted_threshold}

    def load_state_dict(self, state: Mapping[str, Any]) -> PrunedNetworkAttribution:
        keys = {"percentage", "mean_change", "output_change"}
        if set(state) != keys:
            raise ValueError(f"{self.name} state must have keys {sorted(keys)}, got "
                             f"{sorted(state)}")
        self.fitted_percentage = float(percentage_or_none("percentage", state["percentage"]))
        self.fitted_change = float(state["mean_change"])
        self.fitted_threshold = float(state["output_change"])
        return self

    # -- the pruned network ------------------------------------------------------------------
    def masks(self, inputs: Tensor, target: Tensor, args: tuple, opts: Mapping[str, Any]
              ) -> list[Tensor]:
        """The pruned network's masks for this batch, one per ReLU call (one forward+backward
        pass for the importance scores; the iterative variant adds one forward pass per
        step)."""
        scores, y = relu_importance(self.forward, inputs, target, args, self.name)
        if opts["percentage"] is not None:
            p: float | Tensor = opts["percentage"]
        elif opts["calibration"] == "iterative":
            p = iterative_percentage(self.forward, inputs, target, scores, y,
                                     opts["output_change"], opts["step"], args=args,
                                     who=self.name)
        else:
            p = self.fitted_percentage
        return prune_masks(scores, p)

    def percentage(self, **options: Any) -> float | None:
        """The percentage a call with ``options`` prunes (None for the iterative variant,
        whose percentage is per sample)."""
        opts = self.resolve_options(options)
        if opts["percentage"] is not None:
            return opts["percentage"]
        return None if opts["calibration"] == "iterative" else self.fitted_percentage
