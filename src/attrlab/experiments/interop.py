"""Working with Quantus (0.5/0.6) and Captum users' code.

* :func:`explain_func`: any attrlab method as a Quantus ``explain_func``
  (``quantus.PixelFlipping(...)(model, x, y, explain_func=explain_func,
  explain_func_kwargs={"method": "ig", "n_steps": 16})``); numpy in, numpy out, built
  afresh on the model Quantus passes (a randomised copy in MPRT);
* :class:`QuantusStyle`: any attrlab metric called the Quantus way
  (``metric(model=, x_batch=, y_batch=, a_batch=, explain_func=, device=)`` -> a list of
  per-sample scores), so maps made by Captum or anything else are scored by attrlab metrics;
* :func:`register_quantus_metric`: a Quantus metric as an attrlab metric, so the harness
  (``attrlab.bench.run(..., metrics=[name])``) runs it next to attrlab's own.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping

import numpy as np
import torch
from torch import Tensor, nn


def _tensor(a: Any, device: torch.device | str | None, dtype=torch.float32) -> Tensor:
    t = a if isinstance(a, Tensor) else torch.as_tensor(np.asarray(a))
    return t.to(device=device or "cpu", dtype=dtype)


def _device_of(model: nn.Module, device: Any) -> torch.device:
    if device is not None:
        return torch.device(device)
    p = next(iter(model.parameters()), None)
    return p.device if p is not None else torch.device("cpu")


def explain_func(model: nn.Module, inputs: Any, targets: Any, method: str = "saliency",
                 device: Any = None, method_options: Mapping[str, Any] | None = None,
                 seed: int = 0, **options: Any) -> np.ndarray:
    """Attributions of ``model`` for ``inputs`` (numpy or tensor, (N, C, H, W)) to
    ``targets`` with the attrlab method ``method``, as a float32 numpy array of the inputs'
    shape: the signature Quantus calls (``explain_func(model=, inputs=, targets=,
    **explain_func_kwargs)``; Quantus also passes ``device``). Method options come as keyword
    arguments or ``method_options``; random methods draw from a generator seeded with
    ``seed``. Keys Quantus adds that are no method option (``softmax``, ``channel_first``,
    ...) are refused by name so that a typo is not silently ignored."""
    from .. import methods

    opts = {**(method_options or {}), **options}
    dev = _device_of(model, device)
    x = _tensor(inputs, dev)
    t = _tensor(targets, dev, torch.long).view(-1)
    m = methods.get(method, model, **opts)
    a = m.attribute(x, target=t, **m.seeded(seed))
    return a.detach().float().cpu().numpy()


class QuantusStyle:
    """An attrlab metric (``attrlab.metrics.get(name, **options)``) called as Quantus calls
    its metrics: ``metric(model=, x_batch=, y_batch=, a_batch=None, explain_func=None,
    explain_func_kwargs=None, device=None)`` returns the per-sample scores as a list (the
    last result, curve included, stays in ``last``). Without ``a_batch`` the maps come from
    ``explain_func(model=, inputs=, targets=, **explain_func_kwargs)``. Metrics that call
    the method again (``needs_method``: sanity checks, MIA) need the attrlab bridge
    :func:`explain_func` with ``explain_func_kwargs={"method": NAME, ...}``."""

    def __init__(self, name: str, **options: Any) -> None:
        from .. import metrics

        self.name = name
        self.metric = metrics.get(name, **options)
        self.last = None

    def __call__(self, model: nn.Module, x_batch: Any, y_batch: Any, a_batch: Any = None,
                 explain_func: Callable | None = None,
                 explain_func_kwargs: Mapping[str, Any] | None = None, device: Any = None,
                 **_quantus_options: Any) -> list[float]:
        from .. import methods

        kwargs = dict(explain_func_kwargs or {})
        dev = _device_of(model, device)
        x = _tensor(x_batch, dev)
        y = _tensor(y_batch, dev, torch.long).view(-1)
        if a_batch is None:
            if explain_func is None:
                raise ValueError("give a_batch (the maps) or an explain_func")
            a_batch = explain_func(model=model, inputs=x.cpu().numpy(), targets=y.cpu().numpy(),
                                   **kwargs)
        a = _tensor(a_batch, dev)
        if a.shape != x.shape and a.dim() == x.dim() and a.shape[1] == 1:
            a = a.expand_as(x)  # Quantus's channel-reduced maps
        method = None
        if self.metric.needs_method:
            if explain_func is not explain_func_bridge or "method" not in kwargs:
                raise ValueError(f"{self.name} calls the attribution method again: pass "
                                 "explain_func=attrlab.experiments.interop.explain_func with "
                                 "explain_func_kwargs={'method': NAME, ...}")
            opts = {k: v for k, v in kwargs.items() if k not in ("method", "device", "seed")}
            method = methods.get(kwargs["method"], model, **opts)
        self.last = self.metric.compute(model, x, y, a, method=method)
        return [float(v) for v in self.last.scores.cpu()]


explain_func_bridge = explain_func


def register_quantus_metric(name: str, make: Callable[[], Any], higher_is_better: bool,
                            category: str = "faithfulness", call_kwargs: Mapping | None = None,
                            needs_method: bool = False, forward_passes: float = 1.0) -> type:
    """Register a Quantus metric as the attrlab metric ``name`` (for ``attrlab.metrics.get``
    and the harness). ``make()`` builds the Quantus metric (``lambda:
    quantus.PixelFlipping(features_in_step=4, disable_warnings=True)``); its
    ``__call__(model=, x_batch=, y_batch=, a_batch=, device=, **call_kwargs)`` gives one
    score per sample (a list or array; a per-sample curve is summarised by its mean). Quantus
    does not declare a direction, so ``higher_is_better`` is required; ``needs_method=True``
    passes the method to Quantus as an ``explain_func`` (MPRT, robustness metrics);
    ``forward_passes`` per sample is what the caller states for the cost estimate. Returns
    the registered class."""
    from ..metrics.base import Metric, MetricResult, register

    extra = dict(call_kwargs or {})

    class _Quantus(Metric):
        __doc__ = (f"Quantus metric {name!r} run through attrlab "
                   f"({'higher' if higher_is_better else 'lower'} is better).")

        def _compute(self, model, inputs, targets, attributions, *, method=None,
                     ground_truth=None) -> MetricResult:
            q = make()
            kw = {}
            if needs_method:
                kw = {"explain_func": explain_func,
                      "explain_func_kwargs": {"method": method.name, **method.bound_options}}
            out = q(model=model, x_batch=inputs.detach().cpu().numpy(),
                    y_batch=targets.detach().cpu().numpy(),
                    a_batch=attributions.detach().cpu().numpy(),
                    device=str(inputs.device), **kw, **extra)
            rows = [float(np.mean(np.asarray(v, dtype=float))) for v in out]
            return MetricResult(torch.tensor(rows, dtype=torch.float32))

        def forward_passes(self, **info: Any) -> float:
            return float(forward_passes)

    _Quantus.name = name
    _Quantus.higher_is_better = bool(higher_is_better)
    _Quantus.category = category
    _Quantus.needs_method = bool(needs_method)
    _Quantus.fast = False
    _Quantus.cost_formula = f"as Quantus computes it ({forward_passes:g} passes per sample " \
                            "as stated at registration)"
    _Quantus.__name__ = f"Quantus_{name}"
    return register(_Quantus)


__all__ = ["QuantusStyle", "explain_func", "register_quantus_metric"]
