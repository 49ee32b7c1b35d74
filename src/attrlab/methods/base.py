"""Base classes and the method registry.

The API mirrors Captum's so that a Captum user can switch in minutes::

    method = attrlab.methods.get("ig", model, n_steps=50)
    maps = method.attribute(inputs, target=labels, baselines=0.0)

Contract of :meth:`Attribution.attribute` for every registered method:

* ``inputs`` is a floating (N, ...) batch; ``target`` an int, a per-sample sequence/tensor or
  ``None`` for the predicted class.
* The result has exactly ``inputs.shape`` (channel-less maps such as Grad-CAM or FullGrad
  are broadcast over channels; their layer-shaped form is available separately).
* The model is left as it was: ``training`` flags, ``requires_grad`` and parameters are
  restored and no hook remains, also when the call raises.

Subclasses implement ``_attribute(inputs, target, **options)`` where ``target`` is already a
LongTensor of shape (N,). Methods that must be fitted on data first derive from
:class:`FittedAttribution` and implement ``fit(loader)``.
"""

from __future__ import annotations

import copy
from typing import Any, Callable, ClassVar

import torch
from torch import Tensor, nn

from ..core.checks import (
    TargetLike,
    check_batch_size,
    check_inputs,
    check_target_range,
    resolve_target,
)
from ..core.hooks import model_guard
from ..core.registry import Registry

_METHODS: Registry = Registry("method")
_REGISTRY = _METHODS.items
register = _METHODS.register
available = _METHODS.available
method_class = _METHODS.get_class


def get(name: str, model: nn.Module, **options: Any) -> "Attribution":
    """Build the registered method ``name`` for ``model`` with its constructor options."""
    return method_class(name)(model, **options)


class Attribution:
    """An attribution method bound to a model.

    ``signed`` tells whether maps can be negative (diverging colour map) or are non-negative
    by construction (sequential colour map).
    """

    name: ClassVar[str] = ""
    signed: ClassVar[bool] = True
    bound_options: dict[str, Any] = {}

    def __init__(self, model: nn.Module) -> None:
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        self.model = model

    # -- public API --------------------------------------------------------------------------
    def attribute(self, inputs: Tensor, target: TargetLike = None,
                  return_convergence_delta: bool = False, **options: Any):
        """Attribute the ``target`` output of the model to ``inputs``; same shape as inputs.

        With ``return_convergence_delta=True`` (methods with a completeness property only)
        returns ``(attributions, delta)``, delta per sample as in Captum:
        sum(attributions) - (f_t(x) - f_t(baseline)).
        """
        options = {**self.bound_options, **options}

        def run(x: Tensor, t: Tensor):
            out = self._attribute(x, t, **options)
            if out.shape != x.shape:
                out = out.expand_as(x)
            if return_convergence_delta:
                return out, self._convergence_delta(x, t, out, options)
            return out

        return self.guarded(inputs, target, run)

    def bind(self, **options: Any) -> "Attribution":
        """A copy of this method whose ``attribute`` uses ``options`` by default (e.g. DeepSHAP
        ``baselines``), so code that only calls ``attribute(x, target)`` (metrics that
        recompute maps) gets them too. Options given to ``attribute`` still win."""
        bound = copy.copy(self)
        bound.bound_options = {**self.bound_options, **options}
        return bound

    def guarded(self, inputs: Tensor, target: TargetLike, fn: Callable[[Tensor, Tensor], Any]):
        """Validate ``inputs``/``target``, then run ``fn(inputs, target_tensor)`` with the
        model in eval mode and parameter gradients off (restored afterwards)."""
        check_inputs(self.model, inputs)
        t = resolve_target(target, inputs.shape[0], inputs.device)
        with model_guard(self.model):
            if t is None:
                t = self.predict(inputs)
            return fn(inputs.detach(), t)

    def predict(self, inputs: Tensor) -> Tensor:
        """Predicted class per sample (one forward pass without gradients)."""
        with torch.no_grad():
            return self.forward(inputs).argmax(1)

    def forward(self, inputs: Tensor) -> Tensor:
        """Model output as (N, num_classes) logits; checks the shape once."""
        try:
            out = self.model(inputs)
        except RuntimeError as err:
            if not any(w in str(err) for w in ("shape", "size", "channels", "dimension")):
                raise
            raise ValueError(f"the model cannot take inputs of shape {tuple(inputs.shape)}: "
                             f"{str(err).splitlines()[0]}") from err
        if not isinstance(out, Tensor) or out.dim() != 2:
            shape = tuple(out.shape) if isinstance(out, Tensor) else type(out).__name__
            raise ValueError(f"the model must return (N, num_classes) logits; got {shape}")
        return out

    def _attribute(self, inputs: Tensor, target: Tensor, **options: Any) -> Tensor:
        raise NotImplementedError

    def _convergence_delta(self, inputs: Tensor, target: Tensor, attributions: Tensor,
                           options: dict) -> Tensor:
        raise TypeError(f"{type(self).__name__} does not support return_convergence_delta")

    def __repr__(self) -> str:
        return f"{type(self).__name__}(model={type(self.model).__name__})"


class FittedAttribution(Attribution):
    """A method that learns from data before it can attribute (``fit(loader)`` first)."""

    fitted: bool = False

    def fit(self, loader: Any) -> "FittedAttribution":
        raise NotImplementedError

    def attribute(self, inputs: Tensor, target: TargetLike = None, **options: Any) -> Tensor:
        if not self.fitted:
            raise RuntimeError(f"{type(self).__name__} must be fitted first: call .fit(loader)")
        return super().attribute(inputs, target, **options)


def target_gradient(
    forward: Callable[[Tensor], Tensor], inputs: Tensor, target: Tensor
) -> tuple[Tensor, Tensor]:
    """Gradient of ``forward(x)[i, target[i]]`` w.r.t. x for every sample, in one pass.

    Returns ``(gradient, selected outputs)``. Samples are independent in eval mode, so the
    gradient of the sum of the selected logits is the per-sample gradient.
    """
    x = inputs.detach().requires_grad_(True)
    with torch.enable_grad():
        out = forward(x)
        check_target_range(target, out.shape[1])
        sel = out.gather(1, target.view(-1, 1)).squeeze(1)
        (grad,) = torch.autograd.grad(sel.sum(), x)
    return grad, sel.detach()


def chunks(n: int, size: int | None) -> list[slice]:
    """Slices covering range(n) in pieces of at most ``size`` (all at once for None)."""
    check_batch_size("internal_batch_size", size)
    step = n if size is None else size
    return [slice(i, min(i + step, n)) for i in range(0, n, step)]
