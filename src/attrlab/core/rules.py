"""Backward rules for nonlinearities, chosen per torch function (as Zennit's rules and composites).

* A :class:`Rule` computes one intercepted torch function and attaches its own backward:
  :class:`Guided` (Guided Backprop), :class:`Rectified` (RectGrad), :class:`Rescale`
  (DeepLIFT for elementwise functions), :class:`MaxPoolRescale`, :class:`Softmax`,
  :class:`Product` (DeepLIFT for a product of two activations) and :class:`Unsupported`
  (refuses an op with a clear ``ValueError``). A rule is an object, so it may carry state
  (e.g. masks for a pruning rule); :meth:`Rule.begin` is called once per forward pass.
* A :class:`Composite` maps torch functions to rules; an op name such as ``"relu"`` stands for
  all its spellings (``F.relu``, ``torch.relu``, ``Tensor.relu``, ``relu_``, ``inplace=True``),
  which all get the same rule object. :func:`gbp_composite`, :func:`rectgrad_composite` and
  :func:`deeplift_composite` are the ready ones.
* :class:`NonlinearityRules` is the :class:`torch.overrides.TorchFunctionMode` that applies a
  composite while it is active and counts the calls per rule.

The mode works at the level of torch function calls, not module hooks, so it sees every call:
a ``ReLU`` module reused several times (torchvision ResNet), ``inplace=True`` activations and
functional ``F.relu`` calls in ``forward`` (torchvision DenseNet). In-place variants are
computed out of place; the function's return value is what the caller uses, so the result is
the same. Code that calls ``x.relu_()`` and then ignores the return value would go on with an
unmodified ``x``: the mode notices any later use of such a tensor (as an argument or as the
model's output) and raises a ``ValueError`` instead of returning a wrong map.
A rule applies only to calls on input-dependent tensors (``requires_grad``: the methods switch
parameter gradients off), so buffers and constants are left alone.

Fused ops hide their internal nonlinearities from the mode (it sees ``torch.lstm``, not the
gates inside): every ready composite refuses fused recurrent layers (``nn.LSTM``, ``nn.GRU``,
``nn.RNN`` and their cells) and fused attention (``F.scaled_dot_product_attention``,
``nn.MultiheadAttention``), and the DeepLIFT composite also refuses normalisations with
per-sample statistics (``layer_norm``, ``group_norm``, ...), batch-statistics batch norm and
division by an input-dependent tensor. Other nonlinear functions without a rule (reductions
such as ``amax``/``logsumexp``/norms, ``torch.where``/``maximum`` of two activations, custom
autograd functions) take their ordinary gradient; DeepLIFT's summation-to-delta then does not
hold exactly, which ``return_convergence_delta=True`` shows.
"""

from __future__ import annotations

import weakref
from collections import Counter
from typing import Any, Callable, Iterable, Mapping, Union

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor
from torch.overrides import TorchFunctionMode

Func = Callable[..., Any]

# ---------------------------------------------------------------------------------------------
# Op tables: every spelling of an op, and how to compute it out of place
# ---------------------------------------------------------------------------------------------

# op name -> [(spelling, out-of-place function, positional options after the input to keep)];
# positional options past that (``inplace``) and the ``inplace`` keyword are dropped.
_ELEMENTWISE_SPELLINGS: dict[str, list[tuple[Func, Func, int]]] = {
    "relu": [(f, F.relu, 0) for f in (F.relu, torch.relu, Tensor.relu, torch.relu_,
                                      Tensor.relu_, F.relu_)],
    "sigmoid": [(f, torch.sigmoid, 0) for f in (torch.sigmoid, Tensor.sigmoid, F.sigmoid,
                                                torch.sigmoid_, Tensor.sigmoid_)],
    "tanh": [(f, torch.tanh, 0) for f in (torch.tanh, Tensor.tanh, F.tanh, torch.tanh_,
                                          Tensor.tanh_)],
    "elu": [(F.elu, F.elu, 1), (F.elu_, F.elu, 1)],
    "leaky_relu": [(F.leaky_relu, F.leaky_relu, 1), (F.leaky_relu_, F.leaky_relu, 1)],
    "gelu": [(F.gelu, F.gelu, 1)],
    "silu": [(F.silu, F.silu, 0)],
    "softplus": [(F.softplus, F.softplus, 2)],
    # nn.Hardswish / nn.Hardsigmoid call F.hardswish / F.hardsigmoid (inplace positional);
    # nn.ReLU6 and nn.Hardtanh call F.hardtanh(x, min_val, max_val, inplace)
    "hardswish": [(F.hardswish, F.hardswish, 0)],
    "hardsigmoid": [(F.hardsigmoid, F.hardsigmoid, 0)],
    "relu6": [(F.relu6, F.relu6, 0)],
    "hardtanh": [(F.hardtanh, F.hardtanh, 2), (F.hardtanh_, F.hardtanh, 2)],
    "mish": [(F.mish, F.mish, 0)],
    "selu": [(F.selu, F.selu, 0), (torch.selu, F.selu, 0), (torch.selu_, F.selu, 0)],
    "celu": [(F.celu, F.celu, 1), (torch.celu, F.celu, 1), (torch.celu_, F.celu, 1)],
    "softsign": [(F.softsign, F.softsign, 0)],
    "logsigmoid": [(F.logsigmoid, F.logsigmoid, 0)],
    "exp": [(f, torch.exp, 0) for f in (torch.exp, Tensor.exp, torch.exp_, Tensor.exp_)],
    "log": [(f, torch.log, 0) for f in (torch.log, Tensor.log, torch.log_, Tensor.log_)],
    "sqrt": [(f, torch.sqrt, 0) for f in (torch.sqrt, Tensor.sqrt, torch.sqrt_, Tensor.sqrt_)],
    "square": [(f, torch.square, 0) for f in (torch.square, Tensor.square, torch.square_,
                                              Tensor.square_)],
    # a power with a fixed exponent (a tensor exponent that depends on the input is refused)
    "pow": [(f, torch.pow, 1) for f in (torch.pow, Tensor.pow, Tensor.pow_, Tensor.__pow__,
                                        Tensor.__ipow__)],
    "abs": [(f, torch.abs, 0) for f in (torch.abs, Tensor.abs, torch.abs_, Tensor.abs_,
                                        Tensor.__abs__)],
}
_ELEMENTWISE: dict[Func, tuple[Func, int]] = {
    f: (fn, keep) for spellings in _ELEMENTWISE_SPELLINGS.values() for f, fn, keep in spellings
}

_MAXPOOL_SPELLINGS: dict[str, list[tuple[Func, Func]]] = {
    "max_pool": [(f, f) for f in (F.max_pool1d, F.max_pool2d, F.max_pool3d)],
    "adaptive_max_pool": [(f, f) for f in (F.adaptive_max_pool1d, F.adaptive_max_pool2d,
                                           F.adaptive_max_pool3d)],
}
_MAXPOOLS: dict[Func, Func] = {f: fn for s in _MAXPOOL_SPELLINGS.values() for f, fn in s}

_SOFTMAX_F = (F.softmax, F.log_softmax)  # (input, dim, _stacklevel, dtype)
_SOFTMAX_T = (torch.softmax, Tensor.softmax, torch.log_softmax, Tensor.log_softmax)
_LOG_SOFTMAX = {F.log_softmax, torch.log_softmax, Tensor.log_softmax}

_MUL = (torch.mul, Tensor.mul, Tensor.mul_, Tensor.__mul__, Tensor.__rmul__, Tensor.__imul__)
_MATMUL = (torch.matmul, Tensor.matmul, Tensor.__matmul__, torch.bmm, Tensor.bmm)
_DIV = (torch.div, Tensor.div, Tensor.div_, Tensor.__truediv__, Tensor.__itruediv__,
        torch.true_divide, Tensor.true_divide)

OPS: dict[str, tuple[Func, ...]] = {
    **{name: tuple(f for f, *_ in s) for name, s in _ELEMENTWISE_SPELLINGS.items()},
    **{name: tuple(f for f, _ in s) for name, s in _MAXPOOL_SPELLINGS.items()},
    "softmax": (F.softmax, torch.softmax, Tensor.softmax),
    "log_softmax": (F.log_softmax, torch.log_softmax, Tensor.log_softmax),
    "mul": _MUL,
    "matmul": _MATMUL,
    "div": _DIV,
    "rdiv": (Tensor.__rtruediv__,),
    "lstm": (torch.lstm, torch.lstm_cell),
    "gru": (torch.gru, torch.gru_cell),
    "rnn": (torch.rnn_tanh, torch.rnn_relu, torch.rnn_tanh_cell, torch.rnn_relu_cell),
    "scaled_dot_product_attention": (F.scaled_dot_product_attention,),
    "multi_head_attention": (F.multi_head_attention_forward, torch._native_multi_head_attention,
                             torch._transformer_encoder_layer_fwd),
    "layer_norm": (F.layer_norm, torch.layer_norm),
    "group_norm": (F.group_norm, torch.group_norm),
    "instance_norm": (F.instance_norm, torch.instance_norm),
    "rms_norm": tuple(f for f in (getattr(F, "rms_norm", None), getattr(torch, "rms_norm", None))
                      if f is not None),
    "local_response_norm": (F.local_response_norm,),
    "normalize": (F.normalize,),
    "batch_norm": (F.batch_norm, torch.batch_norm),
}
"""Op names a :class:`Composite` accepts, each with all its spellings."""

_LABELS: dict[Func, str] = {
    torch.lstm: "torch.lstm (nn.LSTM)", torch.lstm_cell: "torch.lstm_cell (nn.LSTMCell)",
    torch.gru: "torch.gru (nn.GRU)", torch.gru_cell: "torch.gru_cell (nn.GRUCell)",
    torch.rnn_tanh: "torch.rnn_tanh (nn.RNN)", torch.rnn_relu: "torch.rnn_relu (nn.RNN)",
    torch.rnn_tanh_cell: "torch.rnn_tanh_cell (nn.RNNCell)",
    torch.rnn_relu_cell: "torch.rnn_relu_cell (nn.RNNCell)",
    F.scaled_dot_product_attention: "F.scaled_dot_product_attention",
    F.multi_head_attention_forward: "F.multi_head_attention_forward (nn.MultiheadAttention)",
    torch._native_multi_head_attention: "torch._native_multi_head_attention "
                                        "(nn.MultiheadAttention)",
    torch._transformer_encoder_layer_fwd: "torch._transformer_encoder_layer_fwd "
                                          "(nn.TransformerEncoderLayer)",
    F.layer_norm: "F.layer_norm (nn.LayerNorm)", F.group_norm: "F.group_norm (nn.GroupNorm)",
    F.instance_norm: "F.instance_norm (nn.InstanceNorm)",
    F.batch_norm: "F.batch_norm with batch statistics (nn.BatchNorm, training or "
                  "track_running_stats=False)",
}


def op_label(func: Func) -> str:
    """A readable name of a torch function for error messages (``torch.lstm (nn.LSTM)``)."""
    if func in _LABELS:
        return _LABELS[func]
    name = getattr(func, "__name__", None) or repr(func)
    owner = getattr(func, "__objclass__", None)
    if owner is not None or getattr(func, "__qualname__", "").startswith(("Tensor", "_Tensor")):
        return f"Tensor.{name}"
    module = getattr(func, "__module__", "") or ""
    return f"F.{name}" if "functional" in module or "_nn" in module else f"torch.{name}"


def _flat(args: Iterable) -> Iterable:
    for a in args:
        if isinstance(a, (list, tuple)):
            yield from a
        else:
            yield a


def depends_on_input(args: tuple, kwargs: Mapping) -> bool:
    """Whether a call involves an input-dependent tensor (one that requires grad)."""
    return any(isinstance(a, Tensor) and a.requires_grad
               for a in _flat((*args, *kwargs.values())))


def _needs_grad(a: Any) -> bool:
    return isinstance(a, Tensor) and a.requires_grad


def _halves(t: Tensor) -> tuple[Tensor, Tensor]:
    if t.dim() == 0 or t.shape[0] % 2:
        raise RuntimeError(
            "DeepLIFT rule saw a tensor whose batch is not [inputs; baselines]; the model "
            "must keep the batch in dimension 0 and not mix samples"
        )
    return t.chunk(2)


def _eps(eps: float, t: Tensor) -> float:
    """``eps`` where ``t``'s dtype can hold it, else its smallest normal number: 1e-10 is 0 in
    float16, and |x - x0| >= 0 then divided 0 by 0 (all-NaN DeepLIFT maps)."""
    return max(eps, torch.finfo(t.dtype).tiny)


def _mean_halves(t: Tensor) -> Tensor:
    """(t_x + t_x0) / 2 for both halves of a [inputs; baselines] tensor."""
    a, b = _halves(t)
    m = (a + b) / 2
    return torch.cat([m, m])


# ---------------------------------------------------------------------------------------------
# Rules
# ---------------------------------------------------------------------------------------------


class Rule:
    """A backward rule: computes an intercepted torch function with its own backward attached.

    Subclasses implement :meth:`apply`; returning ``NotImplemented`` there means "not for
    this call" (the function then runs unchanged and the call is not counted). A rule may keep
    state (masks, per-call counters); :meth:`begin` is called once when a
    :class:`NonlinearityRules` context is entered.
    """

    # False: the rule also sees calls on tensors that do not depend on the input (activation
    # masks aligned by call order, :mod:`attrlab.core.activation_masks`, also under no_grad)
    input_dependent_only: bool = True

    def begin(self) -> None:
        """Called once per forward pass, before the first call; resets per-pass state."""

    def apply(self, func: Func, args: tuple, kwargs: dict) -> Any:
        """The output of ``func(*args, **kwargs)`` with this rule's backward attached."""
        raise NotImplementedError

    def __repr__(self) -> str:
        fields = ", ".join(f"{k}={v!r}" for k, v in vars(self).items() if not k.startswith("_"))
        return f"{type(self).__name__}({fields})"


class _GuidedFn(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: Tensor) -> Tensor:
        out = torch.relu(x)
        ctx.save_for_backward(out)
        return out

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:
        (out,) = ctx.saved_tensors
        # one fused pass: grad^+ where out > 0 (out > 0 exactly where x > 0)
        return torch.ops.aten.threshold_backward(grad.clamp(min=0), out, 0)


class Guided(Rule):
    """Guided Backprop at a ReLU (Springenberg et al. 2014, section 3.4):
    R_l = (x_l > 0) * (R_{l+1} > 0) * R_{l+1}."""

    def apply(self, func: Func, args: tuple, kwargs: dict) -> Tensor:
        return _GuidedFn.apply(args[0])


class _RectifiedFn(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: Tensor, q: float) -> Tensor:
        out = x.clamp(min=0)
        ctx.save_for_backward(out)
        ctx.q = q
        return out

    @staticmethod
    def backward(ctx, grad: Tensor):
        (a,) = ctx.saved_tensors
        imp = (a * grad).flatten(1)
        tau = torch.quantile(imp.float(), ctx.q / 100.0, dim=1, keepdim=True).to(imp.dtype)
        keep = (imp > tau).view_as(grad) & (a > 0)
        return grad * keep, None


class Rectified(Rule):
    """RectGrad at a ReLU (Kim et al. 2019, eq. 5): with a = ReLU(x) and g the incoming
    gradient, the importance a*g is thresholded per sample at its ``q``-th percentile tau over
    the whole layer; g passes where a*g > tau (and, as for any ReLU, where x > 0)."""

    def __init__(self, q: float = 98.0) -> None:
        if not 0 <= q <= 100:
            raise ValueError(f"q is a percentile in [0, 100], got {q}")
        self.q = q

    def apply(self, func: Func, args: tuple, kwargs: dict) -> Tensor:
        return _RectifiedFn.apply(args[0], self.q)


class _RescaleFn(torch.autograd.Function):
    @staticmethod
    def forward(ctx, t: Tensor, fn: Callable, args: tuple, kwargs: dict, eps: float) -> Tensor:
        out = fn(t, *args, **kwargs)
        ctx.save_for_backward(t, out)
        ctx.fn, ctx.args, ctx.kwargs, ctx.eps = fn, args, kwargs, eps
        return out

    @staticmethod
    def backward(ctx, grad: Tensor):
        t, out = ctx.saved_tensors
        x, x0 = _halves(t)
        y, y0 = _halves(out)
        dx = x - x0
        safe = dx.abs() >= _eps(ctx.eps, dx)
        mult = (y - y0).div_(torch.where(safe, dx, 1.0))  # shared by both halves
        res = (grad.view((2,) + x.shape) * mult).view_as(grad)
        if not bool(safe.all()):  # rare: fall back to the ordinary gradient there
            with torch.enable_grad():
                t_ = t.detach().requires_grad_(True)
                (local,) = torch.autograd.grad(ctx.fn(t_, *ctx.args, **ctx.kwargs), t_, grad)
            res = torch.where(torch.cat([safe, safe]), res, local)
        return res, None, None, None, None


class Rescale(Rule):
    """DeepLIFT rescale rule (Shrikumar et al. 2017, section 3.5.1) for an elementwise f.

    The batch is ``[inputs; baselines]``; the multiplier (f(x) - f(x0)) / (x - x0) replaces
    f'(x) in both halves (where |x - x0| < ``eps`` the ordinary gradient is used). Exact:
    m * (x - x0) = f(x) - f(x0) for every element. Applies to the functions of
    ``_ELEMENTWISE`` (relu, sigmoid, tanh, elu, leaky_relu, gelu, silu, softplus, hardswish,
    hardsigmoid, relu6, hardtanh, mish, selu, celu, softsign, logsigmoid, exp, log, sqrt,
    square, pow with a fixed exponent, abs and their in-place spellings).
    """

    def __init__(self, eps: float = 1e-10) -> None:
        self.eps = eps

    def apply(self, func: Func, args: tuple, kwargs: dict) -> Tensor:
        if func not in _ELEMENTWISE:
            raise ValueError(f"the rescale rule has no formula for {op_label(func)}")
        fn, keep = _ELEMENTWISE[func]
        if not isinstance(args[0], Tensor):
            raise ValueError(f"the rescale rule needs the input tensor first in {op_label(func)}")
        kwargs.pop("inplace", None)
        opts = tuple(args[1:1 + keep])
        if any(_needs_grad(a) for a in _flat((*opts, *kwargs.values()))):
            raise ValueError(f"{op_label(func)} depends on the input through a second "
                             "argument; the rescale rule is for functions of one tensor")
        return _RescaleFn.apply(args[0], fn, opts, kwargs, self.eps)


class _MaxPoolRescaleFn(torch.autograd.Function):
    @staticmethod
    def forward(ctx, t: Tensor, fn: Callable, args: tuple, kwargs: dict, eps: float) -> Tensor:
        kwargs = {**kwargs, "return_indices": True}
        out, idx = fn(t, *args, **kwargs)
        ctx.save_for_backward(t, out, idx)
        ctx.eps = eps
        return out

    @staticmethod
    def backward(ctx, grad: Tensor):
        t, out, idx = ctx.saved_tensors

        def unpool(v: Tensor) -> Tensor:
            flat = torch.zeros_like(t).flatten(2)
            return flat.scatter_add_(2, idx.flatten(2), v.flatten(2)).view_as(t)

        x, x0 = _halves(t)
        y, y0 = _halves(out)
        m = torch.maximum(y, y0)
        routed = unpool(grad * torch.cat([m - y0, y - m]))
        dx = x - x0
        safe = dx.abs() >= _eps(ctx.eps, dx)
        half = sum(_halves(routed)).div_(torch.where(safe, dx, 1.0))
        res = torch.cat([half, half])
        if not bool(safe.all()):  # ordinary gradient where input and baseline coincide
            res = torch.where(torch.cat([safe, safe]), res, unpool(grad))
        return res, None, None, None, None


class MaxPoolRescale(Rule):
    """DeepLIFT for max-pooling (1d/2d/3d, also adaptive) on a ``[inputs; baselines]`` batch.

    Follows the cross-maximum rule Captum uses so that results agree: with m = max(y, y0),
    the input half routes g*(m - y0) to argmax(x) and the baseline half routes g*(y - m) to
    argmax(x0); both are summed and divided by x - x0 (ordinary gradient where |x - x0| <
    eps). Unlike ``max_unpool`` (which overwrites), overlapping windows accumulate, as the
    chain rule requires. Summation-to-delta holds exactly: sum of m * dx = sum g*(y - y0).
    """

    def __init__(self, eps: float = 1e-10) -> None:
        self.eps = eps

    def apply(self, func: Func, args: tuple, kwargs: dict) -> Tensor:
        if kwargs.get("return_indices"):
            raise ValueError(f"DeepLIFT: {op_label(func)} with return_indices=True is not "
                             "supported")
        if func not in _MAXPOOLS:
            raise ValueError(f"the max-pool rule has no formula for {op_label(func)}")
        kwargs.pop("return_indices", None)
        return _MaxPoolRescaleFn.apply(args[0], _MAXPOOLS[func], tuple(args[1:]), kwargs,
                                       self.eps)


class _SoftmaxFn(torch.autograd.Function):
    @staticmethod
    def forward(ctx, z: Tensor, dim: int, log: bool, nodes: tuple, weights: tuple,
                correct: bool) -> Tensor:
        out = (torch.log_softmax if log else torch.softmax)(z, dim)
        ctx.save_for_backward(z, out)
        ctx.dim, ctx.log, ctx.nodes, ctx.weights, ctx.correct = dim, log, nodes, weights, correct
        return out

    @staticmethod
    def backward(ctx, grad: Tensor):
        z, out = ctx.saved_tensors
        d = ctx.dim
        x, x0 = _halves(z)
        y, y0 = _halves(out)
        dz = x - x0
        g = grad.view((2,) + x.shape)
        dim_g = d + 1 if d >= 0 else d
        mg = torch.zeros_like(g)   # M^T g for both halves
        mdz = torch.zeros_like(dz)  # M dz
        for a, w in zip(ctx.nodes, ctx.weights):
            p = torch.softmax(x0 + a * dz, d)
            if ctx.log:  # J = I - 1 p^T
                mg += w * (g - p * g.sum(dim_g, keepdim=True))
                mdz += w * (dz - (p * dz).sum(d, keepdim=True))
            else:  # J = diag(p) - p p^T (symmetric)
                mg += w * p * (g - (g * p).sum(dim_g, keepdim=True))
                mdz += w * p * (dz - (p * dz).sum(d, keepdim=True))
        if ctx.correct:
            # rank-one correction M' = M + r dz^T / |dz|^2 of the quadrature residual r, so
            # that M' dz = y - y0 holds to rounding
            r = (y - y0) - mdz
            nrm = (dz * dz).sum(d, keepdim=True)
            ok = nrm > 0
            coef = (r * g).sum(dim_g, keepdim=True) / torch.where(ok, nrm, 1.0)
            mg = mg + torch.where(ok, dz * coef, 0.0)
        return mg.view_as(grad), None, None, None, None, None


class Softmax(Rule):
    """DeepLIFT multiplier for ``softmax`` / ``log_softmax`` along a dimension.

    The multiplier is the Jacobian averaged along the straight path between the baseline and
    input pre-activations, M = int_0^1 J(z0 + a (z - z0)) da, so that M (z - z0) = s(z) -
    s(z0) exactly (fundamental theorem of calculus; for an elementwise f this average is the
    rescale multiplier). The integral is taken with ``n`` Gauss-Legendre nodes; with
    ``correct=True`` (default) the quadrature residual r = Δs - M Δz is added back as the
    rank-one term r Δz^T / |Δz|^2, so summation-to-delta holds to rounding whatever ``n``.
    Cost: ``n`` softmax evaluations over the layer in the backward pass; memory: the layer.
    The softmax must not run over the batch dimension.
    """

    def __init__(self, n: int = 16, correct: bool = True) -> None:
        if n < 1:
            raise ValueError(f"n (Gauss-Legendre nodes) must be >= 1, got {n}")
        self.n, self.correct = n, correct
        nodes, weights = np.polynomial.legendre.leggauss(n)
        self._nodes = tuple(float(a) for a in (nodes + 1) / 2)
        self._weights = tuple(float(w) for w in weights / 2)

    def apply(self, func: Func, args: tuple, kwargs: dict) -> Tensor:
        z = args[0]
        dim = kwargs.get("dim", args[1] if len(args) > 1 else None)
        dtype = kwargs.get("dtype")
        if dtype is None:
            pos = 3 if func in _SOFTMAX_F else 2
            dtype = args[pos] if len(args) > pos else None
        if dtype is not None:
            z = z.to(dtype)
        if dim is None:  # torch's legacy implicit dimension
            dim = 0 if z.dim() in (0, 1, 3) else 1
        if dim % max(z.dim(), 1) == 0:
            raise ValueError(f"DeepLIFT: {op_label(func)} over the batch dimension mixes "
                             "samples; give the softmax a feature dimension")
        return _SoftmaxFn.apply(z, dim, func in _LOG_SOFTMAX, self._nodes, self._weights,
                                self.correct)


def _sum_to(t: Tensor, shape: torch.Size) -> Tensor:
    return t if t.shape == shape else t.sum_to_size(shape)


class _ProductFn(torch.autograd.Function):
    @staticmethod
    def forward(ctx, a: Tensor, b: Tensor, fn: Callable) -> Tensor:
        ctx.save_for_backward(a, b)
        ctx.fn = fn
        return fn(a, b)

    @staticmethod
    def backward(ctx, grad: Tensor):
        a, b = ctx.saved_tensors
        abar, bbar = _mean_halves(a), _mean_halves(b)
        with torch.enable_grad():
            a_ = a.detach().requires_grad_(True)
            b_ = b.detach().requires_grad_(True)
            (ga,) = torch.autograd.grad(ctx.fn(a_, bbar), a_, grad)
            (gb,) = torch.autograd.grad(ctx.fn(abar, b_), b_, grad)
        return _sum_to(ga, a.shape), _sum_to(gb, b.shape), None


class Product(Rule):
    """DeepLIFT for a bilinear function of two activations (``a * b``, ``a @ b``, ``bmm``).

    Uses the two-player Shapley split of the difference: B(a, b) - B(a0, b0) = B(Δa, b̄) +
    B(ā, Δb) with ā = (a + a0)/2, b̄ = (b + b0)/2, i.e. multiplier b̄ for a and ā for b. Exact
    for every bilinear B, so summation-to-delta holds through gates (squeeze-excitation,
    LSTM gates written with ``*``, attention weights times values). When only one operand
    depends on the input the function is linear and is left as it is.
    """

    def apply(self, func: Func, args: tuple, kwargs: dict) -> Tensor:
        a, b = (args + (kwargs.get("other"),))[:2]
        if func is Tensor.__rmul__:
            a, b = b, a
        if not (_needs_grad(a) and _needs_grad(b)):
            return NotImplemented  # linear in the input
        if a.dim() != b.dim() or a.shape[0] != b.shape[0]:
            raise ValueError(f"DeepLIFT: {op_label(func)} of two activations whose batch "
                             f"dimensions differ ({tuple(a.shape)} and {tuple(b.shape)})")
        fn = torch.mul if func in _MUL else torch.matmul
        return _ProductFn.apply(a, b, fn)


class Unsupported(Rule):
    """Refuses an op: raises ``ValueError("<who>: the model calls <op>, <why>")``.

    ``when(args, kwargs)`` restricts the refusal to some calls (e.g. batch norm with batch
    statistics); other calls run unchanged.
    """

    def __init__(self, who: str, why: str,
                 when: Callable[[tuple, dict], bool] | None = None) -> None:
        self.who, self.why, self._when = who, why, when

    def apply(self, func: Func, args: tuple, kwargs: dict) -> Any:
        if self._when is not None and not self._when(args, kwargs):
            return NotImplemented
        raise ValueError(f"{self.who}: the model calls {op_label(func)}, {self.why}")


# ---------------------------------------------------------------------------------------------
# Composites
# ---------------------------------------------------------------------------------------------

Key = Union[str, Func, Iterable[Func]]


class Composite:
    """A mapping from torch functions to rules (Zennit's composites map modules to rules).

    ``rules`` maps an op name of :data:`OPS` (all its spellings), a torch function, or a tuple
    of functions to a :class:`Rule`; later entries win. ``name`` is used in error messages;
    ``needs`` (e.g. ``"ReLU"``) tells :func:`~attrlab.methods.backprop.rule_gradient` to refuse
    a model on which no rule of the composite applied.
    """

    def __init__(self, rules: Mapping[Key, Rule], name: str = "rules",
                 needs: str | None = None) -> None:
        self.name, self.needs = name, needs
        self.table: dict[Func, Rule] = {}
        for key, rule in rules.items():
            if not isinstance(rule, Rule):
                raise TypeError(f"composite values must be Rule objects, got {rule!r}")
            for f in self._funcs(key):
                self.table[f] = rule

    @staticmethod
    def _funcs(key: Key) -> Iterable[Func]:
        if isinstance(key, str):
            if key not in OPS:
                raise ValueError(f"unknown op {key!r}; choose one of {sorted(OPS)}")
            return OPS[key]
        return (key,) if callable(key) else tuple(key)

    def updated(self, rules: Mapping[Key, Rule]) -> "Composite":
        """A copy with ``rules`` added (replacing the rules of those functions)."""
        new = Composite({}, self.name, self.needs)
        new.table = dict(self.table)
        new.table.update(Composite(rules).table)
        return new

    def without(self, *keys: Key) -> "Composite":
        """A copy in which the given ops (all spellings) run unchanged."""
        new = Composite({}, self.name, self.needs)
        drop = {f for key in keys for f in self._funcs(key)}
        new.table = {f: r for f, r in self.table.items() if f not in drop}
        return new

    def rule_for(self, func: Func) -> Rule | None:
        """The rule for ``func``, or None (the function runs unchanged)."""
        return self.table.get(func)

    @property
    def rules(self) -> list[Rule]:
        """The distinct rule objects, in first-use order."""
        return list({id(r): r for r in self.table.values()}.values())

    def __repr__(self) -> str:
        return f"Composite({self.name!r}, {len(self.table)} functions, rules={self.rules})"


def _refuse_fused(who: str, rule_name: str) -> dict[Key, Rule]:
    hidden = Unsupported(who, f"whose internal nonlinearities the {rule_name} rule cannot see; "
                         "write the recurrence with torch functions (linear, sigmoid, tanh, *) "
                         "so that each step is visible, or use a gradient method")
    attention = Unsupported(who, f"a fused attention whose softmax and products the "
                            f"{rule_name} rule cannot see; compute attention with matmul and "
                            "softmax, or use a gradient method")
    return {"lstm": hidden, "gru": hidden, "rnn": hidden,
            "scaled_dot_product_attention": attention, "multi_head_attention": attention}


def gbp_composite() -> Composite:
    """Guided Backprop: :class:`Guided` at every ReLU; fused RNNs and attention refused."""
    return Composite({**_refuse_fused("gbp", "guided"), "relu": Guided()},
                     name="guided", needs="ReLU")


def rectgrad_composite(q: float = 98.0) -> Composite:
    """RectGrad: :class:`Rectified` (percentile ``q``) at every ReLU; fused RNNs and attention
    refused."""
    return Composite({**_refuse_fused("rectgrad", "rectified"), "relu": Rectified(q)},
                     name="rectified", needs="ReLU")


def _batch_stats(args: tuple, kwargs: dict) -> bool:
    training = kwargs.get("training", args[5] if len(args) > 5 else False)
    return bool(training)


def _instance_stats(args: tuple, kwargs: dict) -> bool:
    return bool(kwargs.get("use_input_stats", args[5] if len(args) > 5 else True))


def _input_divisor(args: tuple, kwargs: dict) -> bool:
    return _needs_grad((args + (kwargs.get("other"),))[1])


def _input_numerator_of_rtruediv(args: tuple, kwargs: dict) -> bool:
    return _needs_grad(args[0])


def deeplift_composite(eps: float = 1e-10, who: str = "deeplift", softmax_nodes: int = 16
                       ) -> Composite:
    """DeepLIFT (rescale): :class:`Rescale` for every elementwise nonlinearity,
    :class:`MaxPoolRescale`, :class:`Softmax` and :class:`Product` (``*``, ``@``, ``bmm``).

    Refused with a ``ValueError`` (summation-to-delta could not hold and nothing would say
    so): fused RNNs and attention, normalisations with per-sample statistics (``layer_norm``,
    ``group_norm``, ``instance_norm``, ``rms_norm``, ``local_response_norm``,
    ``F.normalize``), ``batch_norm`` with batch statistics (mixes inputs and baselines) and
    division by an input-dependent tensor.
    """
    rescale = Rescale(eps)
    norm = Unsupported(who, "a normalisation with per-sample statistics that has no DeepLIFT "
                       "rule (summation-to-delta would not hold); use a gradient method such "
                       "as integrated gradients")
    rules: dict[Key, Rule] = {
        **_refuse_fused(who, "rescale"),
        **{name: rescale for name in _ELEMENTWISE_SPELLINGS},
        "max_pool": MaxPoolRescale(eps), "adaptive_max_pool": MaxPoolRescale(eps),
        "softmax": Softmax(softmax_nodes), "log_softmax": Softmax(softmax_nodes),
        "mul": Product(), "matmul": Product(),
        "layer_norm": norm, "group_norm": norm, "rms_norm": norm, "local_response_norm": norm,
        "normalize": norm,
        "instance_norm": Unsupported(who, "with per-sample statistics, which has no DeepLIFT "
                                     "rule", when=_instance_stats),
        "batch_norm": Unsupported(who, "which mixes the inputs and baselines of the batch; "
                                  "DeepLIFT needs running statistics (eval mode)",
                                  when=_batch_stats),
        "div": Unsupported(who, "dividing by an input-dependent tensor, which has no DeepLIFT "
                           "rule", when=_input_divisor),
        "rdiv": Unsupported(who, "dividing by an input-dependent tensor, which has no DeepLIFT "
                            "rule", when=_input_numerator_of_rtruediv),
    }
    return Composite(rules, name="rescale")


def _is_inplace(func: Func, args: tuple, kwargs: Mapping) -> bool:
    """Whether a call modifies its first argument in place: ``relu_``/``mul_``-style names,
    ``__imul__``-style operators, or ``inplace=True`` (keyword, or the positional flag after
    the options :data:`_ELEMENTWISE` keeps)."""
    name = getattr(func, "__name__", "")
    if (name.endswith("_") and not name.startswith("__")) or (
            name.startswith("__i") and name.endswith("__")):
        return True
    if kwargs.get("inplace") is True:
        return True
    keep = _ELEMENTWISE.get(func, (None, None))[1]
    return keep is not None and len(args) > 1 + keep and args[1 + keep] is True


# ---------------------------------------------------------------------------------------------
# The mode
# ---------------------------------------------------------------------------------------------


class NonlinearityRules(TorchFunctionMode):
    """Apply ``composite``'s rules to the torch functions called while the context is active.

    Each intercepted call on an input-dependent tensor is dispatched to the composite's rule
    for that function; other calls run unchanged. ``self.counts`` counts the calls per rule
    object, ``self.op_calls`` per op label, ``self.calls`` in total, so callers can refuse a
    model on which the rules never applied (e.g. a model with no ReLU at all).
    """

    def __init__(self, composite: Composite) -> None:
        super().__init__()
        if not isinstance(composite, Composite):
            raise TypeError(f"NonlinearityRules needs a Composite, got {type(composite).__name__}")
        self.composite = composite
        self.counts: Counter = Counter()
        self.op_calls: Counter = Counter()
        self.calls = 0

    def __enter__(self) -> "NonlinearityRules":
        for rule in self.composite.rules:
            rule.begin()
        # inputs of in-place calls the rules computed out of place: id -> (weakref, label)
        self._stale: dict[int, tuple[weakref.ref, str]] = {}
        return super().__enter__()

    def __torch_function__(self, func, types, args=(), kwargs=None):
        if self._stale:
            self.check_not_stale((*args, *(kwargs or {}).values()))
        rule = self.composite.table.get(func)
        if rule is None:  # most calls (convolutions, additions): no copy, no scan
            return func(*args, **(kwargs or {}))
        kwargs = dict(kwargs or {})
        if rule.input_dependent_only and not depends_on_input(args, kwargs):
            return func(*args, **kwargs)
        inplace = _is_inplace(func, args, kwargs)
        out = rule.apply(func, tuple(args), kwargs)
        if out is NotImplemented:
            return func(*args, **kwargs)
        if inplace and isinstance(args[0], Tensor) and out is not args[0]:
            self._stale[id(args[0])] = (weakref.ref(args[0]), op_label(func))
        self.calls += 1
        self.counts[rule] += 1
        self.op_calls[op_label(func)] += 1
        return out

    def check_not_stale(self, values: Iterable) -> None:
        """``ValueError`` if one of ``values`` is the input of an in-place call that a rule
        computed out of place: the model ignored the call's result and goes on with a tensor
        that, unlike in the model, was not modified, so the map would be silently wrong.
        Called on every intercepted call's arguments and on the model's output."""
        stale = getattr(self, "_stale", None)
        if not stale:
            return
        for a in _flat(values):
            entry = stale.get(id(a)) if isinstance(a, Tensor) else None
            if entry is not None and entry[0]() is a:
                raise ValueError(
                    f"the model ignores the result of the in-place {entry[1]} and keeps using "
                    f"the tensor it was called on; the {self.composite.name!r} rule computes "
                    "it out of place, so the map would be wrong. Use the returned tensor "
                    "(x = x.relu_(), x = F.relu(x, inplace=True)) or an nn.ReLU module")
