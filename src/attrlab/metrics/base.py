"""Base class, result type and registry of evaluation metrics.

One computation per call, for every metric::

    metric = attrlab.metrics.get("morf", steps=10)
    result = metric.compute(model, inputs, targets, attributions)   # MetricResult
    result.scores          # (N,) one score per sample
    result.curve           # (x (K,), y (N, K)) for curve metrics, else None

``compute`` runs the metric once: for curve metrics (MoRF/LeRF, insertion/deletion, MIA,
sanity checks) the score is the summary (:meth:`CurveMetric.summarize`: AUC, mean over the
randomised steps, last point, ...) of that very curve, never a second recomputation.
``compute_many(model, inputs, targets, {name: map}, methods={name: method})`` evaluates
several maps of the same batch; metrics whose model passes do not depend on the map
(``shares_model_passes``: Sensitivity-n) share them, the others compute each map once.
``evaluate(...)`` (the scores), ``curve(...)`` (curve metrics) and ``evaluate_many(...)`` (the
scores of ``compute_many``) are the short forms.

Metrics run the model in eval mode and without gradients (``torch.no_grad``), in batches of
``batch_size`` rows (all perturbation steps of all samples are stacked), and never modify the
model: :func:`attrlab.core.hooks.model_guard` restores its state afterwards, also when the
metric raises. Metrics that must recompute attributions (``needs_method``: sanity checks, MIA)
take the attribution ``method``; metrics that score against annotations
(``needs_ground_truth``: localisation) take ``ground_truth``, a mapping of per-sample tensors
with leading dimension N (e.g. ``{"boxes": (N, 4) long (x0, y0, x1, y1)}`` or
``{"masks": (N, H, W) bool}``), as datasets give it with
:meth:`attrlab.data.NormalizedDataset.ground_truth`.

Every metric class declares its metadata once (as Quantus does): ``higher_is_better``,
``category`` (one of :data:`CATEGORIES`), ``needs_method``, ``needs_ground_truth`` with
``ground_truth_keys``, ``shares_model_passes``, ``fast`` (in ``attrlab bench``'s default set)
and ``has_curve``; :meth:`Metric.describe` / :func:`describe` return it as a dict, and
:meth:`Metric.cost` estimates the model passes per sample for given options.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from ..core.checks import check_inputs, resolve_target
from ..core.hooks import model_guard
from ..core.registry import Registry
from ..methods.base import Attribution

CATEGORIES = ("faithfulness", "randomisation", "localisation", "robustness")
# the keyword facts :meth:`Metric.cost` accepts (the same set for every metric)
COST_INFO = ("model", "n_layers", "method_cost")

_METRICS: Registry = Registry("metric")
_REGISTRY = _METRICS.items
available = _METRICS.available
metric_class = _METRICS.get_class


def register(cls: type) -> type:
    """Class decorator: check the metric's metadata (:meth:`Metric.check_metadata`), then add
    it to the registry under ``cls.name``."""
    cls.check_metadata()
    return _METRICS.register(cls)


def get(name: str, **options: Any) -> "Metric":
    """Build the registered metric ``name`` with its options."""
    return metric_class(name)(**options)


def describe(name: str | None = None) -> dict[str, Any]:
    """Metadata of the registered metric ``name`` (:meth:`Metric.describe`), or of every
    registered metric as ``{name: metadata}`` when ``name`` is None."""
    if name is not None:
        return metric_class(name).describe()
    return {n: metric_class(n).describe() for n in available()}


@dataclass(frozen=True)
class MetricResult:
    """What one metric computation returns.

    ``scores``: (N,) one score per sample. ``curve``: None, or ``(x, y)`` with ``x`` (K,) the
    curve's axis (fractions, cascade steps, iterations) and ``y`` (N, K) its per-sample values,
    of which ``scores`` is the summary.
    """

    scores: Tensor
    curve: tuple[Tensor, Tensor] | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.scores, Tensor) or self.scores.dim() != 1:
            raise TypeError("MetricResult.scores must be a 1-D tensor (N,), got "
                            f"{getattr(self.scores, 'shape', type(self.scores).__name__)}")
        if self.curve is not None:
            x, y = self.curve
            if not (isinstance(x, Tensor) and isinstance(y, Tensor) and x.dim() == 1
                    and y.shape == (self.scores.shape[0], x.shape[0])):
                raise TypeError("MetricResult.curve must be (x (K,), y (N, K)) with N = "
                                f"{self.scores.shape[0]}, got shapes "
                                f"{tuple(getattr(x, 'shape', ()))}, {tuple(getattr(y, 'shape', ()))}")


class Metric:
    """A per-sample evaluation of attributions (module docstring for the protocol).

    Subclasses set the metadata and override one hook, :meth:`_compute` (curve metrics:
    :class:`CurveMetric`'s ``_curve`` and ``summarize``; metrics that can share model passes
    between maps also ``_compute_many``).

    Metadata (class attributes):
        name: registry name.
        higher_is_better: orientation for leaderboards.
        category: one of :data:`CATEGORIES`.
        needs_method: the metric calls the attribution method again (``method=...``).
        needs_ground_truth: the metric needs ``ground_truth`` with every key of
            ``ground_truth_keys``.
        shares_model_passes: ``compute_many`` shares model passes between maps (cheaper than
            one ``compute`` per map).
        fast: cheap enough for ``attrlab bench``'s default metric set.
        has_curve: ``compute`` returns a curve (``MetricResult.curve`` is not None).
        cost_formula: the forward-pass and method-call count per sample, in words.
    """

    name: ClassVar[str] = ""
    higher_is_better: ClassVar[bool] = True
    category: ClassVar[str] = ""
    needs_method: ClassVar[bool] = False
    needs_ground_truth: ClassVar[bool] = False
    ground_truth_keys: ClassVar[tuple[str, ...]] = ()
    shares_model_passes: ClassVar[bool] = False
    fast: ClassVar[bool] = True
    has_curve: ClassVar[bool] = False
    cost_formula: ClassVar[str] = ""

    def __init__(self, batch_size: int = 256) -> None:
        if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
        self.batch_size = batch_size

    # -- metadata --------------------------------------------------------------------------
    @classmethod
    def check_metadata(cls) -> None:
        """ValueError unless the class metadata is complete and consistent."""
        where = f"metric class {cls.__name__} ({cls.name!r})"
        if not isinstance(cls.name, str) or not cls.name:
            raise ValueError(f"{where}: name must be a non-empty string")
        if cls.category not in CATEGORIES:
            raise ValueError(f"{where}: category must be one of {CATEGORIES}, "
                             f"got {cls.category!r}")
        for flag in ("higher_is_better", "needs_method", "needs_ground_truth",
                     "shares_model_passes", "fast", "has_curve"):
            if not isinstance(getattr(cls, flag), bool):
                raise ValueError(f"{where}: {flag} must be a bool")
        keys = cls.ground_truth_keys
        if not isinstance(keys, tuple) or not all(isinstance(k, str) and k for k in keys):
            raise ValueError(f"{where}: ground_truth_keys must be a tuple of names")
        if cls.needs_ground_truth != bool(keys):
            raise ValueError(f"{where}: needs_ground_truth=True goes with the ground_truth_keys "
                             "it needs (and only then)")
        if not cls.cost_formula:
            raise ValueError(f"{where}: cost_formula must say what a sample costs")

    @classmethod
    def describe(cls) -> dict[str, Any]:
        """The class metadata as a plain (JSON-serialisable) dict, for reports and planners."""
        doc = (cls.__doc__ or "").strip().splitlines()
        return {
            "name": cls.name,
            "category": cls.category,
            "higher_is_better": cls.higher_is_better,
            "needs_method": cls.needs_method,
            "needs_ground_truth": cls.needs_ground_truth,
            "ground_truth_keys": list(cls.ground_truth_keys),
            "shares_model_passes": cls.shares_model_passes,
            "fast": cls.fast,
            "has_curve": cls.has_curve,
            "cost": cls.cost_formula,
            "summary": doc[0] if doc else "",
        }

    info = describe

    def forward_passes(self, **info: Any) -> float:
        """Forward passes of the model per sample that the metric runs itself, for its options
        (keyword facts ``info`` as in :meth:`cost`). Batched: a pass is one row."""
        raise NotImplementedError(f"{type(self).__name__} does not state its forward passes")

    def method_calls(self, **info: Any) -> float:
        """Calls of the attribution method per sample (0 for metrics that only use the given
        maps)."""
        self._cost_info(info)
        return 0.0

    def cost(self, **info: Any) -> float:
        """Estimated cost per sample in forward-pass equivalents:
        ``forward_passes + method_calls * method_cost``.

        ``info`` (every key optional, the same set for every metric, :data:`COST_INFO`):
        ``model`` (the model to evaluate: sanity checks count its cascade layers from it),
        ``n_layers`` (the number of cascade steps, instead of ``model``), ``method_cost``
        (forward-pass equivalents of one method call per sample, default 1.0; e.g. about 2
        for a gradient method, ``2 * nt_samples`` for SmoothGrad).
        """
        info = self._cost_info(info)
        return float(self.forward_passes(**info)
                     + self.method_calls(**info) * info.get("method_cost", 1.0))

    @staticmethod
    def _cost_info(info: dict[str, Any]) -> dict[str, Any]:
        unknown = sorted(set(info) - set(COST_INFO))
        if unknown:
            raise ValueError(f"unknown cost info {unknown}; known: {list(COST_INFO)}")
        mc = info.get("method_cost", 1.0)
        if isinstance(mc, bool) or not isinstance(mc, (int, float)) or not mc > 0:
            raise ValueError(f"method_cost must be a positive number, got {mc!r}")
        nl = info.get("n_layers")
        if nl is not None and (isinstance(nl, bool) or not isinstance(nl, int) or nl < 1):
            raise ValueError(f"n_layers must be a positive int, got {nl!r}")
        if info.get("model") is not None and not isinstance(info["model"], nn.Module):
            raise TypeError(f"model must be an nn.Module, got {type(info['model']).__name__}")
        return info

    # -- the protocol ----------------------------------------------------------------------
    def compute(self, model: nn.Module, inputs: Tensor, targets: Any, attributions: Tensor, *,
                method: Attribution | None = None,
                ground_truth: Mapping[str, Tensor] | None = None) -> MetricResult:
        """Scores (N,) and, for curve metrics, the curve, from ONE computation.

        Validates inputs, targets, the map, ``method`` (metrics with ``needs_method``) and
        ``ground_truth`` (checked whenever given; required with ``needs_ground_truth``) first,
        then runs :meth:`_compute` with the model guarded (eval mode, no parameter gradients,
        everything restored afterwards).
        """
        t = self._check_batch(model, inputs, targets)
        self._check_map(attributions, inputs)
        method = self._check_method(model, method)
        gt = self._check_ground_truth(ground_truth, inputs)
        with model_guard(model):
            result = self._compute(model, inputs.detach(), t, attributions.detach(),
                                   method=method, ground_truth=gt)
        return self._check_result(result, inputs.shape[0])

    def compute_many(self, model: nn.Module, inputs: Tensor, targets: Any,
                     attributions: Mapping[str, Tensor], *,
                     methods: Mapping[str, Attribution] | None = None,
                     ground_truth: Mapping[str, Tensor] | None = None
                     ) -> dict[str, MetricResult]:
        """``{name: compute(model, inputs, targets, attributions[name],
        method=methods[name])}`` for several maps of the same batch (e.g. one per method),
        exactly; metrics with ``shares_model_passes`` compute the model passes that do not
        depend on the map once for all maps. Errors name the offending map."""
        if not isinstance(attributions, Mapping):
            raise TypeError("attributions must map names to maps (a dict), got "
                            f"{type(attributions).__name__}")
        if not attributions:
            raise ValueError("attributions must map at least one name to a map")
        t = self._check_batch(model, inputs, targets)
        for name, a in attributions.items():
            try:
                self._check_map(a, inputs)
            except (TypeError, ValueError) as err:
                raise type(err)(f"attributions[{name!r}]: {err}") from None
        bound: dict[str, Attribution | None] = {name: None for name in attributions}
        if self.needs_method:
            if methods is None:
                raise ValueError(f"metric {self.name!r} needs the attribution method of each "
                                 "map (methods={name: method})")
            missing = [name for name in attributions if name not in methods]
            if missing:
                raise ValueError(f"metric {self.name!r}: no method for the map(s) {missing} "
                                 "in methods")
            for name in attributions:
                try:
                    bound[name] = self._check_method(model, methods[name])
                except (TypeError, ValueError) as err:
                    raise type(err)(f"methods[{name!r}]: {err}") from None
        gt = self._check_ground_truth(ground_truth, inputs)
        with model_guard(model):
            results = self._compute_many(model, inputs.detach(), t,
                                         {k: a.detach() for k, a in attributions.items()},
                                         methods=bound, ground_truth=gt)
        if set(results) != set(attributions):
            raise RuntimeError(f"metric {self.name!r} returned results for {sorted(results)}, "
                               f"not for {sorted(attributions)}")
        return {name: self._check_result(results[name], inputs.shape[0])
                for name in attributions}

    def evaluate(self, model: nn.Module, inputs: Tensor, targets: Any, attributions: Tensor,
                 method: Attribution | None = None, *,
                 ground_truth: Mapping[str, Tensor] | None = None) -> Tensor:
        """Per-sample scores (N,): ``compute(...).scores``."""
        return self.compute(model, inputs, targets, attributions, method=method,
                            ground_truth=ground_truth).scores

    def evaluate_many(self, model: nn.Module, inputs: Tensor, targets: Any,
                      attributions: Mapping[str, Tensor], *,
                      methods: Mapping[str, Attribution] | None = None,
                      ground_truth: Mapping[str, Tensor] | None = None) -> dict[str, Tensor]:
        """Scores of several maps: ``{name: result.scores}`` of :meth:`compute_many`."""
        return {name: r.scores for name, r in self.compute_many(
            model, inputs, targets, attributions, methods=methods,
            ground_truth=ground_truth).items()}

    # -- hooks -----------------------------------------------------------------------------
    def _compute(self, model: nn.Module, inputs: Tensor, targets: Tensor, attributions: Tensor,
                 *, method: Attribution | None = None,
                 ground_truth: dict[str, Tensor] | None = None) -> MetricResult:
        """The one computation, on validated, detached tensors with the model guarded;
        ``targets`` is a (N,) long tensor. Subclasses override this (or, for curves,
        :class:`CurveMetric`'s hooks).

        Default, for metrics written against the earlier API: the scores of an ``_evaluate``
        hook and, if the class defines its own ``curve(model, inputs, targets, attributions)``,
        that curve."""
        legacy = getattr(self, "_evaluate", None)
        if legacy is None:
            raise NotImplementedError(f"{type(self).__name__} must implement _compute")
        extra = {"method": method} if self.needs_method else {}
        scores = legacy(model, inputs, targets, attributions, **extra)
        own_curve = getattr(self, "curve", None)
        curve = own_curve(model, inputs, targets, attributions, **extra) \
            if own_curve is not None else None
        return MetricResult(scores, curve)

    def _compute_many(self, model: nn.Module, inputs: Tensor, targets: Tensor,
                      attributions: dict[str, Tensor], *,
                      methods: dict[str, Attribution | None],
                      ground_truth: dict[str, Tensor] | None = None) -> dict[str, MetricResult]:
        """Default: one :meth:`_compute` per map."""
        return {name: self._compute(model, inputs, targets, a, method=methods[name],
                                    ground_truth=ground_truth)
                for name, a in attributions.items()}

    def _check_ground_truth_values(self, ground_truth: dict[str, Tensor],
                                   inputs: Tensor) -> None:
        """Metric-specific checks of the ground-truth values (shapes, ranges); default none."""

    # -- validation ------------------------------------------------------------------------
    def _check(self, model: nn.Module, inputs: Tensor, targets: Any, attributions: Tensor) -> Tensor:
        """Validate the batch and one map; returns the (N,) targets."""
        t = self._check_batch(model, inputs, targets)
        self._check_map(attributions, inputs)
        return t

    @staticmethod
    def _check_batch(model: nn.Module, inputs: Tensor, targets: Any) -> Tensor:
        check_inputs(model, inputs)
        t = resolve_target(targets, inputs.shape[0], inputs.device)
        if t is None:
            raise ValueError("metrics need explicit targets (the class each map explains)")
        return t

    @staticmethod
    def _check_map(attributions: Tensor, inputs: Tensor) -> None:
        if not isinstance(attributions, Tensor):
            raise TypeError("attributions must be a torch.Tensor")
        if attributions.shape != inputs.shape:
            raise ValueError(f"attributions of shape {tuple(attributions.shape)} do not match "
                             f"inputs of shape {tuple(inputs.shape)}")
        if not torch.isfinite(attributions).all():
            raise ValueError("attributions contain NaN or inf values")

    def _check_method(self, model: nn.Module, method: Any) -> Attribution | None:
        if not self.needs_method:
            return None  # not used: never called
        if method is None:
            raise ValueError(f"metric {self.name!r} needs the attribution method (method=...)")
        if not isinstance(method, Attribution):
            raise TypeError(f"method must be an attrlab Attribution, got {type(method).__name__}")
        if method.model is not model:
            raise ValueError("method.model must be the model being evaluated")
        return method

    def _check_ground_truth(self, ground_truth: Any, inputs: Tensor) -> dict[str, Tensor] | None:
        """Validate ``ground_truth`` (a mapping of per-sample tensors, leading size N) and
        move it to the inputs' device; None if not given (a ValueError naming the metric and
        the keys if the metric needs it)."""
        n = inputs.shape[0]
        if ground_truth is None:
            if self.needs_ground_truth:
                raise ValueError(f"metric {self.name!r} needs ground truth: ground_truth="
                                 f"{{{', '.join(repr(k) for k in self.ground_truth_keys)}: "
                                 "per-sample tensors}")
            return None
        if not isinstance(ground_truth, Mapping):
            raise TypeError("ground_truth must map names to per-sample tensors (a dict), got "
                            f"{type(ground_truth).__name__}")
        out: dict[str, Tensor] = {}
        for key, value in ground_truth.items():
            if not isinstance(key, str):
                raise TypeError(f"ground_truth keys must be strings, got {key!r}")
            if not isinstance(value, Tensor):
                raise TypeError(f"ground_truth[{key!r}] must be a torch.Tensor, got "
                                f"{type(value).__name__}")
            if value.dim() == 0 or value.shape[0] != n:
                raise ValueError(f"ground_truth[{key!r}] has shape {tuple(value.shape)}: its "
                                 f"leading dimension must be the batch size N = {n}")
            out[key] = value.detach().to(inputs.device)
        missing = [k for k in self.ground_truth_keys if k not in out]
        if missing:
            raise ValueError(f"metric {self.name!r} needs ground_truth[{missing[0]!r}] "
                             f"(given: {sorted(out) or 'none'})")
        self._check_ground_truth_values(out, inputs)
        return out

    def _check_result(self, result: MetricResult, n: int) -> MetricResult:
        if not isinstance(result, MetricResult) or result.scores.shape != (n,):
            raise RuntimeError(f"metric {self.name!r} returned "
                               f"{getattr(getattr(result, 'scores', None), 'shape', result)!r}, "
                               f"not a MetricResult with (N,) = ({n},) scores")
        if self.has_curve and result.curve is None:
            raise RuntimeError(f"curve metric {self.name!r} returned no curve")
        return result


class CurveMetric(Metric):
    """A metric whose score summarises a per-sample curve: subclasses implement ``_curve``
    (the one computation, returning ``(x (K,), y (N, K))``) and ``summarize`` (the score
    from that curve), and ``compute`` returns both from one run."""

    has_curve = True

    def curve(self, model: nn.Module, inputs: Tensor, targets: Any, attributions: Tensor,
              method: Attribution | None = None, *,
              ground_truth: Mapping[str, Tensor] | None = None) -> tuple[Tensor, Tensor]:
        """``(x (K,), y (N, K))``: ``compute(...).curve``."""
        return self.compute(model, inputs, targets, attributions, method=method,
                            ground_truth=ground_truth).curve

    def evaluate_with_curve(self, model: nn.Module, inputs: Tensor, targets: Any,
                            attributions: Tensor, method: Attribution | None = None, *,
                            ground_truth: Mapping[str, Tensor] | None = None
                            ) -> tuple[Tensor, tuple[Tensor, Tensor]]:
        """``(scores, (x, y))`` of one :meth:`compute` (the earlier spelling)."""
        r = self.compute(model, inputs, targets, attributions, method=method,
                         ground_truth=ground_truth)
        return r.scores, r.curve

    def summarize(self, x: Tensor, y: Tensor) -> Tensor:
        """The (N,) scores of a curve ``(x (K,), y (N, K))``."""
        raise NotImplementedError

    def _curve(self, model: nn.Module, inputs: Tensor, targets: Tensor, attributions: Tensor,
               *, method: Attribution | None = None,
               ground_truth: dict[str, Tensor] | None = None) -> tuple[Tensor, Tensor]:
        raise NotImplementedError

    def _compute(self, model: nn.Module, inputs: Tensor, targets: Tensor, attributions: Tensor,
                 *, method: Attribution | None = None,
                 ground_truth: dict[str, Tensor] | None = None) -> MetricResult:
        x, y = self._curve(model, inputs, targets, attributions, method=method,
                           ground_truth=ground_truth)
        return MetricResult(self.summarize(x, y), (x, y))
