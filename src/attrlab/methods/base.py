"""Base classes and the method registry.

The API mirrors Captum's so that a Captum user can switch in minutes::

    method = attrlab.methods.get("ig", model, n_steps=50)
    maps = method.attribute(inputs, target=labels, baselines=0.0)

Contract of :meth:`Attribution.attribute` for every registered method:

* The method wraps a forward function: an ``nn.Module`` or any callable returning (N, K)
  outputs or (N,) (one value per sample, read as (N, 1)); the model guard below applies to
  the module behind it (the callable itself, or the ``__self__`` of a bound method).
* ``inputs`` is a floating (N, ...) batch, or for ``multi_input`` methods a tuple of them
  (a model taking several inputs, as in Captum); ``target`` an int, a per-sample
  sequence/tensor or ``None`` for the predicted class. ``additional_forward_args`` go to the
  forward function after the inputs; their per-sample tensors follow every expansion.
* The result has exactly ``inputs.shape`` (a tuple of maps for a tuple of inputs;
  channel-less maps such as Grad-CAM or FullGrad are broadcast over channels; their
  layer-shaped form is available separately).
* The model is left as it was: ``training`` flags, ``requires_grad`` and parameters are
  restored and no hook remains, also when the call raises.

Subclasses declare their options once (``options = {"n_steps": Option(50, positive_int)}``)
and implement ``_attribute(inputs, target, additional_forward_args, **options)`` where
``target`` is already a LongTensor of shape (N,), ``additional_forward_args`` a tuple and every
declared option arrives resolved and validated; ``inputs`` is a tuple of tensors for
``multi_input = True`` methods (which return a tuple of maps), else one tensor. The model is
called through :meth:`Attribution.forward` (``self.forward(*inputs, *args)``); batch
expansions apply :func:`expand_args` / :func:`map_batched` to the args. Methods that need data
(``needs_data = True``) implement ``fit(data)``, ``state_dict()`` and ``load_state_dict()``.
"""

from __future__ import annotations

import contextlib
import contextvars
import copy
import inspect
import math
import numbers
from dataclasses import dataclass
from typing import Any, Callable, ClassVar, Mapping

import torch
from torch import Tensor, nn

from ..core.checks import (
    TargetLike,
    check_batch_size,
    check_input_tuple,
    check_like,
    resolve_target,
    select_target,
)
from ..core.hooks import model_guard
from ..core.registry import Registry

_METHODS: Registry = Registry("method")
_REGISTRY = _METHODS.items
register = _METHODS.register
available = _METHODS.available
method_class = _METHODS.get_class


def get(name: str, model: Callable[..., Tensor], **options: Any) -> "Attribution":
    """Build the registered method ``name`` for ``model`` (an ``nn.Module`` or any forward
    callable) with its constructor options."""
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


class ModelInputError(ValueError):
    """The forward function raised a shape error on the batch it was given (``shapes``)."""

    def __init__(self, shapes: str, message: str, first: str | None = None) -> None:
        super().__init__(message)
        self.shapes, self.first = shapes, first or message
        self.outer = first is not None  # already names the user's input shapes


# ------------------------------------------------------------------------------------ method

LOW_PRECISION = (torch.float16, torch.bfloat16)

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
    ``input_kinds`` (input layouts it supports), ``reference`` (paper), :meth:`cost`
    (forward+backward passes per sample as a function of the options) and ``default_set``
    (whether runners include it when no methods are named; methods that must be trained or
    calibrated first opt out, so a default run stays quick and its leaderboard stable).
    """

    name: ClassVar[str] = ""
    signed: ClassVar[bool] = True
    random: ClassVar[bool] = False
    needs_data: ClassVar[bool] = False
    default_set: ClassVar[bool] = True
    input_kinds: ClassVar[tuple[str, ...]] = ("image", "flat", "sequence")
    reference: ClassVar[str] = ""
    options: ClassVar[dict[str, Option]] = {}
    # attribute holding a wrapped method: call options it declares pass through to it
    wraps: ClassVar[str | None] = None
    # takes a tuple of input tensors (a multi-input model); _attribute then gets tuples
    multi_input: ClassVar[bool] = False
    # low-precision model dtypes (the inputs' dtype) whose maps hold: the method computes in
    # float32 and only the model runs in that dtype; other low-precision dtypes are refused
    # (methods that rank, threshold or select on gradients, which that rounding changes)
    low_precision: ClassVar[tuple[torch.dtype, ...]] = LOW_PRECISION

    def __init__(self, model: Callable[..., Tensor], **options: Any) -> None:
        if not callable(model):
            raise TypeError(f"model must be callable (a torch.nn.Module or a function "
                            f"returning the model's outputs), got {type(model).__name__}")
        self.forward_func = uncompiled(model)
        self.model: nn.Module | None = module_of(self.forward_func)
        self.defaults: dict[str, Any] = {}
        self.defaults = self.resolve_options(options)

    def require_module(self) -> nn.Module:
        """The module behind the forward function, for methods that look into its layers
        (Grad-CAM, FullGrad): ``TypeError`` when a plain function exposes none."""
        if self.model is None:
            raise TypeError(f"{self.name or type(self).__name__} looks into the model's layers: "
                            "it needs an nn.Module (or a bound method of one), got "
                            f"{type(self.forward_func).__name__}")
        return self.model

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
                "cost_at_defaults": cls.cost(), "default_set": cls.default_set}

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
    def attribute(self, inputs: InputsLike, target: TargetLike = None,
                  return_convergence_delta: bool = False, *,
                  additional_forward_args: Any = None, **options: Any):
        """Attribute the ``target`` output of the model to ``inputs``; same shape as inputs.

        ``inputs`` is a tensor or, for a model taking several inputs (``multi_input``
        methods), a tuple of tensors sharing dimension 0; the result is then a tuple of maps
        shaped like each input. ``additional_forward_args`` (a value or a tuple of values) are
        passed to the model after the inputs, ``forward_func(*inputs, *args)``; tensors among
        them whose dimension 0 is the batch size N (an attention mask) follow every
        expansion of the batch a method makes (path points, noisy copies, baselines).
        ``options`` override the method's declared options for this call (validated first).
        With ``return_convergence_delta=True`` (methods where :meth:`has_convergence_delta`)
        returns ``(attributions, delta)``, delta per sample as in Captum:
        sum(attributions) - (f_t(x) - f_t(baseline)).
        """
        opts = self.resolve_options(options)
        if not self.fitted and not self._has_data(opts):
            raise ValueError(f"{self.name or type(self).__name__} must be fitted first: call "
                             ".fit(data)" + self._data_hint())
        xs, is_tuple = self.validate_inputs(inputs)
        if len(xs) > 1 and not self.multi_input:
            raise ValueError(f"{self.name or type(self).__name__} takes a single input tensor; "
                             f"got a tuple of {len(xs)} inputs")
        if return_convergence_delta and not self.has_convergence_delta():
            raise TypeError(f"{type(self).__name__} does not support return_convergence_delta")
        args = as_args(additional_forward_args)

        def run(xs: tuple[Tensor, ...], t: Tensor):
            x_in = xs if self.multi_input else xs[0]
            if return_convergence_delta:
                out, delta = self._attribute_and_delta(x_in, t, args, opts)
            else:
                out = self._attribute(x_in, t, **self._with_args(args, opts))
            outs = out if isinstance(out, tuple) else (out,)
            outs = tuple(o if o.shape == x.shape else o.expand_as(x) for o, x in zip(outs, xs))
            res = outs if is_tuple else outs[0]
            return (res, delta) if return_convergence_delta else res

        return self.guarded(xs, target, run, additional_forward_args=args)

    def _with_args(self, args: tuple, options: dict) -> dict:
        """The keyword arguments of ``_attribute``: the options, and the forward args when
        ``_attribute`` takes ``additional_forward_args`` (a subclass written without it
        still works, but refuses args)."""
        params = inspect.signature(self._attribute).parameters
        if "additional_forward_args" in params or any(
                p.kind is p.VAR_KEYWORD for p in params.values()):
            return {**options, "additional_forward_args": args}
        if args:
            raise ValueError(f"{self.name or type(self).__name__} does not take "
                             "additional_forward_args")
        return options

    def _has_data(self, options: Mapping[str, Any]) -> bool:
        """Whether the call's options carry the data a ``needs_data`` method would fit."""
        return False

    def _data_hint(self) -> str:
        return ""

    def guard(self) -> contextlib.AbstractContextManager:
        """:func:`~attrlab.core.hooks.model_guard` on the module behind the forward function
        (the function itself, or the module of a bound method); nothing for a function that
        exposes no module."""
        return model_guard(self.model) if self.model is not None else contextlib.nullcontext()

    def validate_inputs(self, inputs: InputsLike) -> tuple[tuple[Tensor, ...], bool]:
        """Check ``inputs`` (a floating tensor or a tuple of them sharing dimension 0, see
        :func:`~attrlab.core.checks.check_input_tuple`); returns ``(inputs as a tuple,
        whether a tuple was given)``. Methods that take other inputs (layer methods: token
        ids) override this one check."""
        return check_input_tuple(inputs)

    def guarded(self, inputs: InputsLike, target: TargetLike, fn: Callable[[Any, Tensor], Any],
                additional_forward_args: Any = None):
        """Validate ``inputs`` (:meth:`validate_inputs`) and ``target``, then run
        ``fn(inputs, target_tensor)`` (inputs detached, in the form given) under
        :meth:`guard`: the model in eval mode and parameter gradients off (restored
        afterwards). ``target=None`` is the predicted class, computed with
        ``additional_forward_args``."""
        if torch.is_inference_mode_enabled():  # attributions need autograd: run outside it
            with torch.inference_mode(False):
                return self.guarded(inputs, target, fn, additional_forward_args)
        xs, is_tuple = self.validate_inputs(inputs)
        t = resolve_target(target, xs[0].shape[0], xs[0].device)
        # inference tensors (made under torch.inference_mode) cannot enter autograd: copies
        xs = tuple(x.clone() if x.is_inference() else x.detach() for x in xs)
        t = t.clone() if t is not None and t.is_inference() else t
        low = next((x.dtype for x in xs if x.dtype in LOW_PRECISION), None)
        if low is not None and low not in type(self).low_precision:
            raise ValueError(f"{self.name or type(self).__name__} does not support {low} models: "
                             "it ranks, thresholds or selects on the model's gradients, which "
                             f"{low} rounding changes (maps far off the float32 model's); "
                             "attribute a float32 copy, copy.deepcopy(model).float(), "
                             "with float32 inputs")
        token = _MODEL_DTYPE.set(low) if low is not None and _MODEL_DTYPE.get() is None \
            else None
        try:
            with self.guard():
                if token is not None:  # the method computes in float32, the model in `low`
                    xs = tuple(x.float() if x.dtype in LOW_PRECISION else x for x in xs)
                if t is None:
                    t = self.predict(xs, as_args(additional_forward_args))
                out = fn(xs if is_tuple else xs[0], t)
                return out if token is None else _cast_floats(out, low)
        except ModelInputError as err:
            given = ", ".join(str(tuple(x.shape)) for x in xs)
            if err.shapes == given or err.outer:
                raise
            raise ModelInputError(err.shapes, f"{err.first}; the method built that batch from "
                                  f"inputs of shape {given} (inputs must be batched, (N, ...))",
                                  err.first) from err
        finally:
            if token is not None:
                _MODEL_DTYPE.reset(token)

    def predict(self, inputs: InputsLike, additional_forward_args: Any = ()) -> Tensor:
        """Predicted class per sample (one forward pass without gradients); 0 for a model
        with one output per sample."""
        xs = inputs if isinstance(inputs, tuple) else (inputs,)
        with torch.no_grad():
            return self.forward(*xs, *as_args(additional_forward_args)).argmax(1)

    def forward(self, *inputs: Any) -> Tensor:
        """``forward_func(*inputs)`` as (N, num_classes) outputs: a (N,) output (one value per
        sample) becomes (N, 1); any other shape, and a shape error raised inside the model, is
        a ``ValueError`` naming the shapes it was given."""
        low = _MODEL_DTYPE.get()
        if low is not None:  # a low-precision model: only its forward runs in `low`
            inputs = tuple(i.to(low) if isinstance(i, Tensor) and i.dtype == torch.float32
                           else i for i in inputs)
        try:
            out = self.forward_func(*inputs)
            if low is not None and isinstance(out, Tensor) and out.dtype == low:
                out = out.float()
        except (RuntimeError, ValueError) as err:
            self._check_dtypes(inputs, err)
            words = ("shape", "size", "channels", "dimension", "D input")
            if not any(w in str(err) for w in words):
                raise
            shapes = ", ".join(str(tuple(x.shape)) for x in inputs if isinstance(x, Tensor))
            raise ModelInputError(shapes, f"the model cannot take inputs of shape {shapes}: "
                                  f"{str(err).splitlines()[0]}") from err
        if not isinstance(out, Tensor) and isinstance(getattr(out, "logits", None), Tensor):
            out = out.logits  # a Hugging Face ModelOutput
        if isinstance(out, Tensor) and out.dim() == 1:
            out = out.unsqueeze(1)
        if not isinstance(out, Tensor) or out.dim() != 2:
            shape = tuple(out.shape) if isinstance(out, Tensor) else type(out).__name__
            raise ValueError(f"the model must return (N, num_classes) logits or (N,) outputs; "
                             f"got {shape}")
        return out

    def _check_dtypes(self, inputs: tuple, err: Exception) -> None:
        """After the model raised ``err``: a ``TypeError`` naming both dtypes when the inputs'
        floating dtype is not the model's parameters' (torch's own message names neither
        the inputs nor the fix)."""
        params = [] if self.model is None else [
            p.dtype for p in self.model.parameters() if p.is_floating_point()]
        given = {i.dtype for i in inputs if isinstance(i, Tensor) and i.is_floating_point()}
        if params and given and given != {params[0]} and "type" in str(err):
            names = ", ".join(sorted(str(d) for d in given))
            raise TypeError(f"the inputs are {names} but the model's parameters are "
                            f"{params[0]}: pass inputs of the model's dtype "
                            f"(x.to({params[0]}))") from err

    def _attribute(self, inputs: Any, target: Tensor, **options: Any) -> Any:
        raise NotImplementedError

    # -- convergence delta ---------------------------------------------------------------------
    def has_convergence_delta(self) -> bool:
        """Whether ``attribute(..., return_convergence_delta=True)`` is supported (Captum)."""
        return type(self)._convergence_delta is not Attribution._convergence_delta \
            or type(self)._attribute_and_delta is not Attribution._attribute_and_delta

    def _attribute_and_delta(self, inputs: Any, target: Tensor, args: tuple,
                             options: dict) -> tuple[Any, Tensor]:
        """Attributions and their convergence delta; by default the attributions of
        :meth:`_attribute` and :meth:`_convergence_delta` of them."""
        out = self._attribute(inputs, target, **self._with_args(args, options))
        return out, self._convergence_delta(inputs, target, out, options, args)

    def _convergence_delta(self, inputs: Any, target: Tensor, attributions: Any,
                           options: dict, args: tuple = ()) -> Tensor:
        raise TypeError(f"{type(self).__name__} does not support return_convergence_delta")

    def compute_convergence_delta(self, attributions: InputsLike, start_point: Any,
                                  end_point: InputsLike, target: TargetLike = None,
                                  additional_forward_args: Any = None) -> Tensor:
        """Captum's completeness error per sample, shape (N,):
        sum(attributions) - (f_t(end_point) - f_t(start_point)), the sum taken over every
        entry of every input. ``end_point`` are the inputs (a tensor or a tuple),
        ``start_point`` the baselines (numbers or tensors broadcasting to them, or a tuple of
        such; None is zero). ``target=None`` is the class predicted at ``end_point``
        (Captum: the output itself, the same for a model with one output per sample)."""
        xs, is_tuple = check_input_tuple(end_point)
        attrs = attributions if isinstance(attributions, tuple) else (attributions,)
        if len(attrs) != len(xs) or any(not isinstance(a, Tensor) or a.shape[0] != x.shape[0]
                                        for a, x in zip(attrs, xs)):
            raise ValueError("attributions must be a tensor (or a tuple of tensors) per input, "
                             "with the inputs' batch size")
        bases = format_baselines(xs, start_point)
        args = as_args(additional_forward_args)
        return self.guarded(xs, target, lambda x, t: completeness_delta(
            self.forward, attrs, bases, x, t, args), additional_forward_args=args)

    def _wrap(self, model: Callable[..., Tensor], base: "str | Attribution",
              options: Mapping[str, Any]) -> dict[str, Any]:
        """For wrappers (``wraps = "base"``): build or check the wrapped method and set it as
        ``self.base``; ``options`` the wrapper does not declare go to the wrapped method's
        constructor. Returns the wrapper's own options for ``Attribution.__init__``."""
        own = {k: v for k, v in options.items() if k in self.option_specs()}
        rest = {k: v for k, v in options.items() if k not in own}
        if isinstance(base, Attribution):
            if rest:
                raise ValueError(f"options {sorted(rest)} are for the base method: pass them "
                                 "to it or as attribute() options")
            self.base = base
        else:
            self.base = get(base, model, **rest)
        if self.base.forward_func != uncompiled(model):
            raise ValueError("the base method must be built on the same model")
        return own

    def __getattr__(self, key: str) -> Any:
        # declared options read as attributes (``ig.n_steps``), as the constructor set them
        defaults = self.__dict__.get("defaults")
        if defaults is not None and key in defaults:
            return defaults[key]
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {key!r}")

    def __repr__(self) -> str:
        return f"{type(self).__name__}(model={type(self.forward_func).__name__})"


# ------------------------------------------------------------------- inputs and forward args

InputsLike = Tensor | tuple[Tensor, ...]


# While a method runs on inputs of a low-precision dtype (the model's), that dtype: the method
# then computes in float32 (paths, masks, optimiser state, rule multipliers outside the model)
# and Attribution.forward casts the model's float32 inputs to it and its outputs back;
# the maps are returned in the inputs' dtype. A ContextVar: per thread, shared by nested calls
# (a wrapper's base method sees float32 inputs but the model still needs `low`).
_MODEL_DTYPE: contextvars.ContextVar = contextvars.ContextVar("attrlab_model_dtype",
                                                              default=None)


def _cast_floats(value: Any, dtype: torch.dtype) -> Any:
    """``value`` (a tensor or a tuple of them, nested) with float32 tensors cast to ``dtype``."""
    if isinstance(value, tuple):
        return tuple(_cast_floats(v, dtype) for v in value)
    if isinstance(value, Tensor) and value.dtype == torch.float32:
        return value.to(dtype)
    return value


def uncompiled(forward_func: Callable) -> Callable:
    """The original module of a ``torch.compile``'d one (``OptimizedModule._orig_mod``), else
    ``forward_func`` itself. Attributions run the module uncompiled: a graph compiled before
    attrlab registered its hooks (FullGrad, Grad-CAM, DGA) or rule mode (GBP, DeepLIFT)
    bypasses them, and the maps were silently wrong. The parameters are shared, so the
    compiled module is explained as it is; the user's compiled module is not touched."""
    while isinstance(forward_func, nn.Module) and isinstance(
            getattr(forward_func, "_orig_mod", None), nn.Module):
        forward_func = forward_func._orig_mod
    return forward_func


def module_of(forward_func: Callable) -> nn.Module | None:
    """The module a forward function belongs to: the function itself if it is an
    ``nn.Module``, the ``__self__`` of a bound method of one, else None."""
    if isinstance(forward_func, nn.Module):
        return forward_func
    owner = getattr(forward_func, "__self__", None)
    return owner if isinstance(owner, nn.Module) else None


def as_args(additional_forward_args: Any) -> tuple:
    """Captum's ``additional_forward_args`` as a tuple: None -> (), a tuple as it is, any
    other value -> (value,)."""
    if additional_forward_args is None:
        return ()
    if isinstance(additional_forward_args, tuple):
        return additional_forward_args
    return (additional_forward_args,)


def map_batched(args: tuple, n: int, fn: Callable[[Tensor], Tensor]) -> tuple:
    """``fn`` applied to every tensor of ``args`` whose dimension 0 is the batch size ``n``
    (per-sample tensors such as an attention mask); every other value is left as it is."""
    return tuple(fn(a) if isinstance(a, Tensor) and a.dim() and a.shape[0] == n else a
                 for a in args)


def expand_args(args: tuple, n: int, k: int, interleave: bool) -> tuple:
    """Per-sample tensors of ``args`` (dimension 0 = ``n``) expanded to ``n * k`` rows, as the
    method expands its inputs: ``interleave`` gives row ``i * k + s`` = sample i
    (``repeat_interleave``: noisy copies, DeepSHAP's baselines), otherwise row ``s * n + i``
    (``repeat``: IG's path points, DeepLIFT's [inputs; baselines])."""
    if interleave:
        return map_batched(args, n, lambda a: a.repeat_interleave(k, 0))
    return map_batched(args, n, lambda a: a.repeat((k,) + (1,) * (a.dim() - 1)))


def format_baselines(inputs: tuple[Tensor, ...], baselines: Any) -> tuple[Tensor, ...]:
    """Baselines for a tuple of inputs: None (zeros), one number for every input, or one
    number or tensor (broadcasting to its input) per input; checked as
    :func:`~attrlab.core.checks.check_like`. A single tensor is allowed for a single input."""
    if baselines is None:
        return tuple(torch.zeros_like(x) for x in inputs)
    if not isinstance(baselines, tuple):
        if len(inputs) > 1 and isinstance(baselines, Tensor) and baselines.dim():
            raise ValueError(f"baselines for {len(inputs)} inputs must be a tuple of "
                             f"{len(inputs)} (a number or a tensor per input)")
        baselines = (baselines,) * len(inputs)
    if len(baselines) != len(inputs):
        raise ValueError(f"baselines has {len(baselines)} entries but there are "
                         f"{len(inputs)} inputs")
    name = "baselines" if len(inputs) == 1 else "baselines[{}]"
    return tuple(check_like(name.format(i), b, x)
                 for i, (b, x) in enumerate(zip(baselines, inputs)))


def completeness_delta(forward: Callable[..., Tensor], attributions: tuple[Tensor, ...],
                       baselines: tuple[Tensor, ...], inputs: tuple[Tensor, ...],
                       target: Tensor, args: tuple = ()) -> Tensor:
    """sum(attributions) - (f_t(inputs) - f_t(baselines)) per sample (no gradients);
    baselines broadcast to the inputs."""
    with torch.no_grad():
        fx = select_target(forward(*inputs, *args), target)
        bases = tuple(b.expand_as(x) for b, x in zip(baselines, inputs))
        fb = select_target(forward(*bases, *args), target)
    total = sum(a.flatten(1).sum(1) for a in attributions)
    return total - (fx - fb)


def target_gradient(
    forward: Callable[..., Tensor], inputs: InputsLike, target: Tensor, args: tuple = ()
) -> tuple[Any, Tensor]:
    """Gradient of ``forward(*inputs, *args)[i, target[i]]`` w.r.t. the inputs for every
    sample, in one pass. ``inputs`` is a tensor or a tuple of tensors (then the gradients are
    a tuple); an input the output does not depend on gets zeros.

    Returns ``(gradient(s), selected outputs)``. Samples are independent in eval mode, so the
    gradient of the sum of the selected logits is the per-sample gradient.
    """
    is_tuple = isinstance(inputs, tuple)
    xs = tuple(x.detach().requires_grad_(True) for x in (inputs if is_tuple else (inputs,)))
    with torch.enable_grad():
        out = forward(*xs, *args)
        sel = select_target(out, target)
        grads = torch.autograd.grad(sel.sum(), xs, allow_unused=True)
    grads = tuple(torch.zeros_like(x) if g is None else g for g, x in zip(grads, xs))
    return (grads if is_tuple else grads[0]), sel.detach()


def chunks(n: int, size: int | None) -> list[slice]:
    """Slices covering range(n) in pieces of at most ``size`` (all at once for None)."""
    check_batch_size("internal_batch_size", size)
    step = n if size is None else size
    return [slice(i, min(i + step, n)) for i in range(0, n, step)]
