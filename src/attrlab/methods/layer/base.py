"""Layer attribution: the shared base of the methods that attribute to a layer's activations.

Captum's ``Layer*`` methods attribute the target output to the output (or, with
``attribute_to_layer_input=True``, the input) of one layer instead of to the model input.
attrlab does it with one forward hook on that layer (a forward pre-hook for its input) that
swaps the layer's value for leaf tensors of our own, so the gradient is taken with respect to
the layer's activations and never with respect to the model input. Hence inputs may be token
ids (a LongTensor) when the layer is an ``nn.Embedding`` or comes after it.

* A layer's value may be a tensor or a (nested) tuple/list of them, e.g. an ``nn.LSTM``'s
  ``(out, (h, c))``: every floating tensor in it is attributed and the result has the same
  structure (Captum returns a tuple for a tuple); ``None`` and other non-tensor entries pass
  through and get ``None``. A non-floating tensor (the token ids going *into* an embedding)
  cannot be attributed: a ``ValueError`` says so.
* A layer called more than once in a forward pass (a reused module) raises a ``ValueError``
  at its second call; a layer the forward pass never reaches raises one too.
* Hooks are removed on exit (also on errors) and the model's modes/``requires_grad`` are
  restored (:func:`~attrlab.core.hooks.model_guard`, :class:`~attrlab.core.hooks.HookSet`).

Layer methods have their own registry (:func:`get`, :func:`available`), separate from
:mod:`attrlab.methods`'s: their results are layer-shaped, not input-shaped, so runners that
expect input-shaped maps (benchmarks, ``attrlab explain``, metrics) never pick them up.
"""

from __future__ import annotations

import contextlib
import numbers
from typing import Any, Callable, Iterator

import torch
from torch import Tensor, nn

from ...core.checks import (
    TargetLike,
    check_inputs,
    check_like,
    check_target_range,
    get_module,
    select_target,
)
from ...core.hooks import HookSet
from ...core.registry import Registry
from ..base import Attribution, Option, boolean

_LAYER_METHODS: Registry = Registry("layer method")
register = _LAYER_METHODS.register
available = _LAYER_METHODS.available
method_class = _LAYER_METHODS.get_class


def get(name: str, model: nn.Module, layer: str | nn.Module | None = None,
        **options: Any) -> "LayerAttribution":
    """Build the registered layer method ``name`` for ``model`` at ``layer`` (a module or its
    dotted name) with its options, e.g. ``get("layer_ig", model, "embedding", n_steps=32)``."""
    cls = method_class(name)
    return cls(model, **options) if layer is None else cls(model, layer, **options)


# ------------------------------------------------------------------------ value structures

def leaves(value: Any) -> list[Any]:
    """The entries of a (nested) tuple/list, depth first; a single value is one leaf."""
    if isinstance(value, (tuple, list)):
        return [leaf for v in value for leaf in leaves(v)]
    return [value]


def rebuild(value: Any, new: Iterator[Any]) -> Any:
    """``value``'s structure with its leaves replaced, in order, by the items of ``new``."""
    if isinstance(value, (tuple, list)):
        items = [rebuild(v, new) for v in value]
        return type(value)(*items) if hasattr(value, "_fields") else type(value)(items)
    return next(new)


def is_float_tensor(v: Any) -> bool:
    return isinstance(v, Tensor) and v.is_floating_point()


# ------------------------------------------------------------------------------ the hook

@contextlib.contextmanager
def tap_layer(layer: nn.Module, name: str, to_input: bool,
              replace: Callable[[Any], Any]) -> Iterator[dict[str, int]]:
    """During the body, hand the layer's output (its positional input with ``to_input``: the
    tensor for one argument, the tuple of them otherwise) to ``replace`` and let the network
    continue with what ``replace`` returns. Yields a dict whose ``"calls"`` counts the layer's
    calls; a second call raises ``ValueError`` (a reused layer has no single activation)."""
    state = {"calls": 0}

    def once(value: Any) -> Any:
        state["calls"] += 1
        if state["calls"] > 1:
            raise ValueError(f"layer {name!r} is called more than once in one forward pass "
                             "(a reused module): its activation is not unique; choose a layer "
                             "that runs once")
        return replace(value)

    with HookSet() as hooks:
        if to_input:
            def pre(_module: nn.Module, args: tuple) -> tuple:
                if not args:
                    raise ValueError(f"layer {name!r} gets no positional input (keyword "
                                     "arguments only): cannot attribute to its input")
                new = once(args[0] if len(args) == 1 else args)
                return (new,) if len(args) == 1 else tuple(new)

            hooks.forward_pre(layer, pre)
        else:
            hooks.forward(layer, lambda _m, _i, out: once(out))
        yield state


def _check_called(state: dict[str, int], name: str) -> None:
    if state["calls"] == 0:
        raise ValueError(f"layer {name!r} was not called in the forward pass; choose a layer "
                         "the model uses")


def _clone_leaves(value: Any) -> Any:
    return rebuild(value, iter([v.clone() if isinstance(v, Tensor) else v
                                for v in leaves(value)]))


def layer_values(attr: Attribution, layer: nn.Module, name: str, inputs: Tensor,
                 to_input: bool, args: tuple = ()) -> Any:
    """The layer's output (input with ``to_input``) for ``inputs``, detached, in one forward
    pass without gradients. The network continues with a copy, so an in-place op after the
    layer (or an in-place layer, for its input) cannot overwrite what is returned."""
    holder: dict[str, Any] = {}

    def keep(value: Any) -> Any:
        holder["value"] = value
        return _clone_leaves(value)

    with torch.no_grad(), tap_layer(layer, name, to_input, keep) as state:
        attr.forward(inputs, *args)
    _check_called(state, name)
    return holder["value"]


def layer_gradients(attr: Attribution, layer: nn.Module, name: str, inputs: Tensor,
                    target: Tensor, to_input: bool,
                    make: Callable[[Any], Any] | None = None,
                    mode: contextlib.AbstractContextManager | None = None,
                    args: tuple = ()) -> tuple[Any, Any]:
    """Gradient of the selected logits ``f(x)[i, target[i]]`` with respect to the layer's
    activations, in one forward and one backward pass; returns ``(gradients, activations)``,
    both with the structure of the layer's value (``None`` for its non-tensor entries).

    The hook replaces the activations by detached leaf tensors (by ``make(value)`` when given:
    Integrated Gradients' path points) and passes copies of them on, so the gradient is taken
    at the layer whatever the inputs' dtype; ``args`` follow the inputs into the model.
    ``mode`` (a backward-rule
    :class:`~attrlab.core.rules.NonlinearityRules`) is active during the forward pass.
    A tensor entry the output does not depend on gets a zero gradient.
    """
    where = "input" if to_input else "output"
    holder: dict[str, Any] = {}

    def swap(value: Any) -> Any:
        new = value if make is None else make(value)
        items = []
        for v in leaves(new):
            if isinstance(v, Tensor):
                if not v.is_floating_point():
                    hint = (" (an nn.Embedding's input is token ids: attribute to its output)"
                            if isinstance(layer, nn.Embedding) else "")
                    raise ValueError(f"the {where} of layer {name!r} is a {v.dtype} tensor; "
                                     f"only floating activations can be attributed{hint}")
                v = v.detach().requires_grad_(True)
            items.append(v)
        if not any(isinstance(v, Tensor) for v in items):
            raise ValueError(f"the {where} of layer {name!r} holds no tensor "
                             f"({type(value).__name__})")
        holder["value"] = rebuild(new, iter(items))
        return _clone_leaves(holder["value"])

    with torch.enable_grad():
        with tap_layer(layer, name, to_input, swap) as state:
            with mode if mode is not None else contextlib.nullcontext():
                out = attr.forward(inputs, *args)
        _check_called(state, name)
        check_target_range(target, out.shape[1])
        sel = out.gather(1, target.view(-1, 1)).squeeze(1)
        acts = leaves(holder["value"])
        wrt = [v for v in acts if isinstance(v, Tensor)]
        grads = (torch.autograd.grad(sel.sum(), wrt, allow_unused=True)
                 if sel.requires_grad else [None] * len(wrt))
    it = iter(torch.zeros_like(v) if g is None else g for v, g in zip(wrt, grads))
    grad_leaves = [next(it) if isinstance(v, Tensor) else None for v in acts]
    structure = holder["value"]
    return (rebuild(structure, iter(grad_leaves)),
            rebuild(structure, iter([v.detach() if isinstance(v, Tensor) else None
                                     for v in acts])))


def map_leaves(fn: Callable[..., Tensor], *values: Any) -> Any:
    """Apply ``fn`` to the corresponding tensor leaves of structures that share one structure
    (``None`` where the first has no tensor)."""
    cols = [leaves(v) for v in values]
    out = [fn(*row) if isinstance(row[0], Tensor) else None for row in zip(*cols)]
    return rebuild(values[0], iter(out))


def batch_first(value: Any, n: int, name: str, where: str, method: str) -> None:
    """Refuse activations whose first dimension is not the batch (an LSTM's ``(h, c)``):
    methods that interpolate or split the batch need it there."""
    for v in leaves(value):
        if isinstance(v, Tensor) and (v.dim() == 0 or v.shape[0] != n):
            raise ValueError(f"{method}: a tensor in the {where} of layer {name!r} has shape "
                             f"{tuple(v.shape)}, whose first dimension is not the batch "
                             f"({n}); choose a layer with batch-first activations")


# ------------------------------------------------------------------------------ checks

def check_layer_inputs(model: nn.Module, inputs: Tensor) -> None:
    """Floating inputs get the checks of every method; integer inputs are token ids: a batched
    (N, ...) LongTensor, in range when the model starts with an ``nn.Embedding``."""
    if isinstance(inputs, Tensor) and inputs.is_floating_point():
        check_inputs(model, inputs)
        return
    if not isinstance(inputs, Tensor):
        raise TypeError(f"inputs must be a torch.Tensor, got {type(inputs).__name__}")
    if inputs.dtype == torch.bool or inputs.is_complex():
        raise TypeError(f"inputs must be floating or integer token ids, got dtype {inputs.dtype}")
    if inputs.dim() < 2:
        raise ValueError(f"inputs must be batched, shape (N, ...); got shape "
                         f"{tuple(inputs.shape)}")
    if inputs.shape[0] == 0:
        raise ValueError("inputs is an empty batch (N = 0)")
    check_token_range(model, inputs, "inputs")


def first_leaf(model: nn.Module) -> nn.Module | None:
    """The model's first leaf module in registration order (the embedding of a text model)."""
    return next((m for m in model.modules() if next(m.children(), None) is None), None)


def check_token_range(model: nn.Module, ids: Tensor, what: str) -> None:
    first = first_leaf(model)
    if isinstance(first, nn.Embedding) and ids.numel():
        lo, hi = int(ids.min()), int(ids.max())
        if lo < 0 or hi >= first.num_embeddings:
            raise ValueError(f"{what} hold token ids in [{lo}, {hi}] but the model's embedding "
                             f"has {first.num_embeddings} entries")


def layer_baselines(model: nn.Module, inputs: Tensor, baselines: Any) -> Tensor:
    """The reference input x' in input space, expanded to the inputs' shape: zeros for
    ``None``; for token ids an int (a pad id) or an integer tensor broadcasting to them."""
    if inputs.is_floating_point():
        if baselines is None:
            return torch.zeros_like(inputs)
        return check_like("baselines", baselines, inputs).expand_as(inputs)
    if baselines is None:
        return torch.zeros_like(inputs)
    if isinstance(baselines, numbers.Integral) and not isinstance(baselines, bool):
        base = torch.full_like(inputs, int(baselines))
    elif isinstance(baselines, Tensor) and not (baselines.is_floating_point()
                                                or baselines.is_complex()
                                                or baselines.dtype == torch.bool):
        try:
            base = baselines.to(inputs.device, inputs.dtype).expand_as(inputs)
        except RuntimeError as err:
            raise ValueError(f"baselines of shape {tuple(baselines.shape)} does not broadcast "
                             f"to inputs of shape {tuple(inputs.shape)}") from err
    else:
        raise TypeError("for token-id inputs, baselines must be an int (e.g. the pad id) or an "
                        f"integer tensor of ids, got {type(baselines).__name__}"
                        + (f" of dtype {baselines.dtype}" if isinstance(baselines, Tensor)
                           else ""))
    check_token_range(model, base, "baselines")
    return base


# ------------------------------------------------------------------------------ the base

def last_conv_name(model: nn.Module) -> str:
    """Name of the last Conv module, Grad-CAM's usual layer."""
    names = [n for n, m in model.named_modules() if isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Conv3d))]
    if not names:
        raise ValueError("the model has no convolution; pass layer= explicitly")
    return names[-1]


def _is_attention(module: nn.Module) -> bool:
    return isinstance(module, nn.MultiheadAttention) or "attention" in type(module).__name__.lower() \
        or type(module).__name__ == "Attention"


def feature_block_layer(model: nn.Module, run: Callable[[], Any],
                        token_layout: bool = False) -> str:
    """Grad-CAM's default layer, found from one forward pass ``run()`` of ``model``.

    A CNN: the output of the last feature block, i.e. among the module calls after the last
    convolution, up to the first pooling module or flattened output, the one completing last
    whose output has the convolution's spatial size (any channel count) and which is called
    once: ``layer4`` on a ResNet (the block's output after the residual add and ReLU, as
    pytorch-grad-cam's ``model.layer4[-1]``), the rectified last conv ``features.29`` on a
    VGG16 (the Grad-CAM paper's ``relu5_3``), ``features`` on a DenseNet, ConvNeXt,
    EfficientNet or MobileNet. A model with attention
    blocks after its last convolution (ViT, Swin: the convolution is the patch embedding) is
    refused unless ``token_layout``: then the layer is the first normalisation of the last
    attention block (pytorch-grad-cam's ``blocks[-1].norm1``), whose token output a
    ``reshape_transform`` turns into a map. ``ValueError`` when there is no such layer."""
    from ...core.hooks import trace_calls

    with trace_calls(model) as calls:
        with torch.no_grad():
            run()
    counts: dict[str, int] = {}
    for name, _, _ in calls:
        counts[name] = counts.get(name, 0) + 1
    attention = [i for i, (_, m, _) in enumerate(calls) if _is_attention(m)]
    if token_layout:
        if not attention:
            raise ValueError("reshape_transform is for token models (ViT, Swin) but this model "
                             "has no attention block; pass layer= explicitly")
        block = calls[attention[-1]][0].rpartition(".")[0]
        norms = [n for n, m, _ in calls[:attention[-1]]
                 if n.startswith(block + ".") and "norm" in type(m).__name__.lower()
                 and counts[n] == 1]
        if not norms:
            raise ValueError(f"no normalisation layer before the attention of block {block!r}; "
                             "pass layer= explicitly")
        return norms[0]
    convs = [i for i, (_, m, s) in enumerate(calls)
             if isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Conv3d)) and s is not None]
    if not convs:
        raise ValueError("the model has no convolution; pass layer= explicitly")
    last = convs[-1]
    shape = calls[last][2]
    choice = calls[last][0]
    for name, module, s in calls[last + 1:]:
        if s is None or len(s) < len(shape) or "pool" in type(module).__name__.lower():
            break  # flattened or pooled: the feature maps end here
        if s[2:] == shape[2:] and counts[name] == 1:
            choice = name  # any channel count (DenseNet's concatenation), same resolution
    idx = max(i for i, c in enumerate(calls) if c[0] == choice)
    if any(i > idx for i in attention):
        raise ValueError(
            f"the last convolution ({calls[last][0]!r}) is followed by attention blocks: this "
            "looks like a vision transformer (ViT, Swin), where it is the patch embedding. "
            "Pass reshape_transform='vit' (tokens (N, 1 + h*w, C)) or 'channels_last' (Swin's "
            "(N, h, w, C)) to use the last attention block's first norm, or layer=NAME")
    return choice


def module_name(model: nn.Module, module: nn.Module) -> str:
    return next((n for n, m in model.named_modules() if m is module), type(module).__name__)


class LayerAttribution(Attribution):
    """An attribution to the activations of one ``layer`` (a module or its dotted name).

    ``attribute(inputs, target, **options)`` returns a tensor shaped like the layer's output
    (its input with ``attribute_to_layer_input=True``), or a structure of them for a layer
    whose value is a tuple. Inputs may be floating or integer token ids.
    """

    input_kinds = ("image", "flat", "sequence", "tokens")
    options = {"attribute_to_layer_input": Option(
        False, boolean, "attribute to the layer's input instead of its output (Captum's "
                        "attribute_to_layer_input)")}

    def __init__(self, model: nn.Module, layer: str | nn.Module, **options: Any) -> None:
        super().__init__(model, **options)
        self.layer = get_module(model, layer)
        self.layer_name = layer if isinstance(layer, str) else module_name(model, self.layer)

    def attribute(self, inputs: Tensor, target: TargetLike = None,
                  return_convergence_delta: bool = False, **options: Any):
        """Attribute the ``target`` output to the layer's activations (see the class).

        With ``return_convergence_delta=True`` (methods with a completeness property) returns
        ``(attributions, delta)``, delta per sample: the sum of all attributions minus
        (f_t(x) - f_t(x')).
        """
        opts = self.resolve_options(options)

        def run(x: Tensor, t: Tensor):
            out = self._attribute(x, t, **opts)
            if return_convergence_delta:
                return out, self._convergence_delta(x, t, out, opts)
            return out

        return self.guarded(inputs, target, run)

    def validate_inputs(self, inputs: Tensor) -> tuple[tuple[Tensor, ...], bool]:
        """One tensor: floating inputs, or token ids (:func:`check_layer_inputs`)."""
        check_layer_inputs(self.model, inputs)
        return (inputs,), False

    # helpers for the methods
    def values(self, inputs: Tensor, to_input: bool) -> Any:
        return layer_values(self, self.layer, self.layer_name, inputs, to_input)

    def gradients(self, inputs: Tensor, target: Tensor, to_input: bool, **kw: Any):
        return layer_gradients(self, self.layer, self.layer_name, inputs, target, to_input, **kw)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(model={type(self.model).__name__}, layer={self.layer_name!r})"


class LayerBaselineMixin:
    """``baselines`` in input space and the summation-to-delta check of layer IG/DeepLIFT."""

    def _convergence_delta(self, inputs: Tensor, target: Tensor, attributions: Any,
                           options: dict) -> Tensor:
        """sum(all attributions) - (f_t(x) - f_t(x')), per sample."""
        base = layer_baselines(self.model, inputs, options.get("baselines"))
        with torch.no_grad():
            fx = select_target(self.forward(inputs), target)
            fb = select_target(self.forward(base), target)
        total = sum(v.flatten(1).sum(1) for v in leaves(attributions) if isinstance(v, Tensor))
        return total - (fx - fb)


BASELINES = Option(None, None, "reference input x' in input space (a number, a tensor "
                   "broadcasting to the inputs; for token ids an int pad id or a tensor of "
                   "ids; default 0); the layer's value for it is the reference activation")
MULTIPLY = Option(True, boolean, "multiply by the activation (difference), as Captum's "
                  "multiply_by_inputs")
