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

Subclasses declare their options once (``options = {"n_steps": Option(50, positive_int)}``)
and implement ``_attribute(inputs, target, **options)`` where ``target`` is already a
LongTensor of shape (N,) and every declared option arrives resolved and validated. Methods
that need data (``needs_data = True``) implement ``fit(data)``, ``state_dict()`` and
``load_state_dict()``.
"""

from __future__ import annotations

import copy
import math
import numbers
from dataclasses import dataclass
from typing import Any, Callable, ClassVar, Mapping

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


# ----------------------------------------------------------------------------------- options

Check = Callable[[str, Any], Any]


@dataclass(frozen=True)
class Option:
    """One declared option of a method: its default and the check that validates (and may
    normalise) a value, raising ``ValueError`` with the option's name otherwise."""

    default: Any
    check: Check | None = None
    doc: str = ""

    def validate(self, name: str, value: Any) -> Any:
        return value if self.check is None else self.check(name, value)


def positive_int(name: str, value: Any) -> int:
    """A positive int (``bool`` is refused)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}")
    return int(value)


def batch_size_or_none(name: str, value: Any) -> int | None:
    """``None`` (everything in one batch) or a positive int."""
    return check_batch_size(name, value)


def number_in(lo: float, hi: float, lo_open: bool = False, hi_open: bool = False) -> Check:
    """A check for a finite real number in [lo, hi] (open ends where asked)."""

    def check(name: str, value: Any) -> float:
        ok = isinstance(value, numbers.Real) and not isinstance(value, bool) \
            and math.isfinite(float(value))
        if ok:
            v = float(value)
            ok = (v > lo if lo_open else v >= lo) and (v < hi if hi_open else v <= hi)
        if not ok:
            raise ValueError(f"{name} must be a number in {'(' if lo_open else '['}{lo}, {hi}"
                             f"{')' if hi_open else ']'}, got {value!r}")
        return float(value)

    return check


def one_of(*choices: Any) -> Check:
    """A check for one of ``choices``."""

    def check(name: str, value: Any) -> Any:
        if value not in choices:
            raise ValueError(f"{name} must be one of {', '.join(map(repr, choices))}; "
                             f"got {value!r}")
        return value

    return check


def boolean(name: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"{name} must be True or False, got {value!r}")
    return value


def generator_or_none(name: str, value: Any) -> torch.Generator | None:
    if value is not None and not isinstance(value, torch.Generator):
        raise TypeError(f"{name} must be a torch.Generator or None, got {type(value).__name__}")
    return value


# ------------------------------------------------------------------------------------ method

class Attribution:
    """An attribution method bound to a model.

    Options are declared once per class in ``options`` (name -> :class:`Option`), inherited and
    extended by subclasses. The constructor takes them as the method's defaults, ``bind`` makes
    a copy with other defaults, and ``attribute`` takes them per call; the base merges
    (call > bound > declared default) and validates them in one place, and ``_attribute``
    receives every declared option as a keyword argument, resolved. Constructor parameters
    that are not options (a wrapped ``base`` method, Grad-CAM's ``layer``) are structural and
    fixed at construction.

    Metadata (class attributes, read by runners and reports; no runner branches on a name):
    ``signed`` (maps can be negative), ``random`` (draws noise: takes ``generator=``),
    ``needs_data`` (must be :meth:`fit` on data first, unless its data comes as an option),
    ``input_kinds`` (input layouts it supports), ``reference`` (paper) and :meth:`cost`
    (forward+backward passes per sample as a function of the options).
    """

    name: ClassVar[str] = ""
    signed: ClassVar[bool] = True
    random: ClassVar[bool] = False
    needs_data: ClassVar[bool] = False
    input_kinds: ClassVar[tuple[str, ...]] = ("image", "flat", "sequence")
    reference: ClassVar[str] = ""
    options: ClassVar[dict[str, Option]] = {}
    # attribute holding a wrapped method: call options it declares pass through to it
    wraps: ClassVar[str | None] = None

    def __init__(self, model: nn.Module, **options: Any) -> None:
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        self.model = model
        self.defaults: dict[str, Any] = {}
        self.defaults = self.resolve_options(options)

    # -- options ---------------------------------------------------------------------------
    @classmethod
    def option_specs(cls) -> dict[str, Option]:
        """Every declared option of the class, base classes first."""
        specs: dict[str, Option] = {}
        for klass in reversed(cls.__mro__):
            specs.update(vars(klass).get("options", {}))
        return specs

    def resolve_options(self, given: Mapping[str, Any]) -> dict[str, Any]:
        """The method's defaults overridden by ``given``, every given value validated; an
        undeclared key is a ``ValueError`` listing the declared ones."""
        specs = self.option_specs()
        unknown = sorted(set(given) - set(specs))
        inner = self.__dict__.get(self.wraps) if self.wraps else None
        if unknown and inner is None:
            raise ValueError(f"{self.name or type(self).__name__}: unknown option(s) "
                             f"{', '.join(unknown)}; its options are: "
                             f"{', '.join(sorted(specs)) or '(none)'}")
        out = {k: self.defaults.get(k, spec.default) for k, spec in specs.items()}
        for key, value in given.items():
            if key in specs:
                out[key] = specs[key].validate(key, value)
        if self.wraps:
            # a wrapper passes the wrapped method's options on; that method validates them
            forwarded = {**self.defaults.get("forwarded", {}), **{k: given[k] for k in unknown}}
            if forwarded:
                inner.resolve_options(forwarded)
            out["forwarded"] = forwarded
        return out

    @property
    def bound_options(self) -> dict[str, Any]:
        """The options this instance uses when ``attribute`` is not given them."""
        return dict(self.defaults)

    def bind(self, **options: Any) -> "Attribution":
        """A copy of this method whose ``attribute`` uses ``options`` by default (e.g. DeepSHAP
        ``baselines``), so code that only calls ``attribute(x, target)`` (metrics that
        recompute maps) gets them too. Options given to ``attribute`` still win."""
        bound = copy.copy(self)
        bound.defaults = self.resolve_options(options)
        return bound

    @classmethod
    def cost(cls, **options: Any) -> float:
        """Forward+backward passes per sample with these options (1 for a gradient method)."""
        return 1.0

    @classmethod
    def describe(cls) -> dict[str, Any]:
        """The registry metadata of the method as a plain dict."""
        doc = (cls.__doc__ or "").strip().splitlines()
        return {"name": cls.name, "signed": cls.signed, "random": cls.random,
                "needs_data": cls.needs_data, "input_kinds": list(cls.input_kinds),
                "reference": cls.reference, "summary": doc[0] if doc else "",
                "options": {k: o.default if isinstance(o.default, (int, float, str, bool,
                                                                   type(None))) else repr(o.default)
                            for k, o in cls.option_specs().items()},
                "cost_at_defaults": cls.cost()}

    def seeded(self, seed: int) -> dict[str, Any]:
        """Call options that make a random method draw from a CPU generator seeded with
        ``seed`` (``{}`` for deterministic methods): runners seed each unit of work this way."""
        return {"generator": torch.Generator().manual_seed(seed)} if self.random else {}

    # -- data ------------------------------------------------------------------------------
    @property
    def fitted(self) -> bool:
        """Whether the method has what it needs from data (always true unless ``needs_data``)."""
        return True

    def fit(self, data: Any, *, generator: torch.Generator | None = None) -> "Attribution":
        """Learn what the method needs from ``data`` (a dataset with ``len`` and
        ``tensors(indices)``, or a tensor batch); returns ``self``. Methods that need nothing
        from data refuse, so a runner never fits them by accident."""
        raise TypeError(f"{type(self).__name__} learns nothing from data (needs_data=False)")

    def state_dict(self) -> dict[str, Any]:
        """What :meth:`fit` learned, as tensors and plain values (``torch.save``-able and
        loadable with ``weights_only=True``); empty for methods that need no data."""
        return {}

    def load_state_dict(self, state: Mapping[str, Any]) -> "Attribution":
        """Restore what :meth:`state_dict` returned; returns ``self``."""
        if state:
            raise ValueError(f"{type(self).__name__} has no fitted state; got keys "
                             f"{sorted(state)}")
        return self

    # -- public API --------------------------------------------------------------------------
    def attribute(self, inputs: Tensor, target: TargetLike = None,
                  return_convergence_delta: bool = False, **options: Any):
        """Attribute the ``target`` output of the model to ``inputs``; same shape as inputs.

        ``options`` override the method's declared options for this call (validated first).
        With ``return_convergence_delta=True`` (methods with a completeness property only)
        returns ``(attributions, delta)``, delta per sample as in Captum:
        sum(attributions) - (f_t(x) - f_t(baseline)).
        """
        opts = self.resolve_options(options)
        if not self.fitted and not self._has_data(opts):
            raise ValueError(f"{self.name or type(self).__name__} must be fitted first: call "
                             ".fit(data)" + self._data_hint())

        def run(x: Tensor, t: Tensor):
            out = self._attribute(x, t, **opts)
            if out.shape != x.shape:
                out = out.expand_as(x)
            if return_convergence_delta:
                return out, self._convergence_delta(x, t, out, opts)
            return out

        return self.guarded(inputs, target, run)

    def _has_data(self, options: Mapping[str, Any]) -> bool:
        """Whether the call's options carry the data a ``needs_data`` method would fit."""
        return False

    def _data_hint(self) -> str:
        return ""

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

    def __getattr__(self, key: str) -> Any:
        # declared options read as attributes (``ig.n_steps``), as the constructor set them
        defaults = self.__dict__.get("defaults")
        if defaults is not None and key in defaults:
            return defaults[key]
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {key!r}")

    def __repr__(self) -> str:
        return f"{type(self).__name__}(model={type(self.model).__name__})"


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
