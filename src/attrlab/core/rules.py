"""Backward rules for nonlinearities, applied through a :class:`torch.overrides.TorchFunctionMode`.

:class:`NonlinearityRules` replaces the backward pass of ReLU-like functions and max-pooling
while it is active. It works at the level of ``torch.nn.functional`` calls, not through module
hooks, so it sees every call: a ``ReLU`` module reused several times (torchvision ResNet),
``inplace=True`` ReLUs and functional ``F.relu`` calls in ``forward`` (torchvision DenseNet)
are all handled. In-place variants (``relu_``, ``inplace=True``) are computed out of place; the
module's return value is what the caller uses, so the result is the same. Code that calls
``x.relu_()`` and then ignores the return value is not supported.
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.overrides import TorchFunctionMode

_RELU_FUNCS = {F.relu, torch.relu, Tensor.relu, torch.relu_, Tensor.relu_, F.relu_}
# func -> (out-of-place function, number of positional options after the input to keep);
# positional options past that (``inplace``) are dropped.
_ELEMENTWISE = {
    **{f: (F.relu, 0) for f in _RELU_FUNCS},
    **{f: (torch.sigmoid, 0) for f in (torch.sigmoid, Tensor.sigmoid, F.sigmoid)},
    **{f: (torch.tanh, 0) for f in (torch.tanh, Tensor.tanh, F.tanh)},
    F.elu: (F.elu, 1), F.leaky_relu: (F.leaky_relu, 1), F.gelu: (F.gelu, 1),
    F.silu: (F.silu, 0), F.softplus: (F.softplus, 2),
}
_MAXPOOLS = {F.max_pool1d: F.max_pool1d, F.max_pool2d: F.max_pool2d}


class _Guided(torch.autograd.Function):
    """ReLU whose backward passes only positive gradients at positive inputs (GBP)."""

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


class _Rectified(torch.autograd.Function):
    """ReLU with the RectGrad backward of Kim et al. (2019), eq. (5) of that paper.

    With a = ReLU(x) and g the incoming gradient, the importance a*g is thresholded per
    sample at its q-th percentile tau over the whole layer; g passes where a*g > tau (and,
    as for any ReLU, where x > 0).
    """

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


def _halves(t: Tensor) -> tuple[Tensor, Tensor]:
    if t.shape[0] % 2:
        raise RuntimeError(
            "DeepLIFT rule saw a tensor whose batch is not [inputs; baselines]; the model "
            "must keep the batch in dimension 0 and not mix samples"
        )
    return t.chunk(2)


class _Rescale(torch.autograd.Function):
    """DeepLIFT rescale rule (Shrikumar et al. 2017, eq. 3.3) for an elementwise f.

    The batch is ``[inputs; baselines]``; the multiplier (f(x) - f(x0)) / (x - x0) replaces
    f'(x) in both halves; where |x - x0| < eps the ordinary gradient is used.
    """

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
        safe = dx.abs() >= ctx.eps
        mult = (y - y0).div_(torch.where(safe, dx, 1.0))  # shared by both halves
        res = (grad.view((2,) + x.shape) * mult).view_as(grad)
        if not bool(safe.all()):  # rare: fall back to the ordinary gradient there
            with torch.enable_grad():
                t_ = t.detach().requires_grad_(True)
                (local,) = torch.autograd.grad(ctx.fn(t_, *ctx.args, **ctx.kwargs), t_, grad)
            res = torch.where(torch.cat([safe, safe]), res, local)
        return res, None, None, None, None


class _MaxPoolRescale(torch.autograd.Function):
    """DeepLIFT for max-pooling on a ``[inputs; baselines]`` batch.

    Follows the cross-maximum rule Captum uses so that results agree: with m = max(y, y0),
    the input half routes g*(m - y0) to argmax(x) and the baseline half routes g*(y - m) to
    argmax(x0); both are summed and divided by x - x0 (ordinary gradient where |x - x0| <
    eps). Unlike ``max_unpool`` (which overwrites), overlapping windows accumulate, as the
    chain rule requires.
    """

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
        safe = dx.abs() >= ctx.eps
        half = sum(_halves(routed)).div_(torch.where(safe, dx, 1.0))
        res = torch.cat([half, half])
        if not bool(safe.all()):  # ordinary gradient where input and baseline coincide
            res = torch.where(torch.cat([safe, safe]), res, unpool(grad))
        return res, None, None, None, None


class NonlinearityRules(TorchFunctionMode):
    """Replace the backward pass of nonlinearities while the context is active.

    ``rule`` is one of ``"guided"`` (Guided Backprop), ``"rectified"`` (RectGrad, option
    ``q``) or ``"rescale"`` (DeepLIFT: every elementwise nonlinearity and max-pooling).
    ``self.calls`` counts the replaced calls, so callers can refuse a model where the rule
    never applied (e.g. a model with no ReLU at all).
    """

    def __init__(self, rule: str, q: float = 98.0, eps: float = 1e-10) -> None:
        super().__init__()
        if rule not in ("guided", "rectified", "rescale"):
            raise ValueError(f"unknown rule {rule!r}")
        self.rule, self.q, self.eps = rule, q, eps
        self.calls = 0

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = dict(kwargs or {})
        if self.rule in ("guided", "rectified") and func in _RELU_FUNCS:
            self.calls += 1
            x = args[0]
            return _Guided.apply(x) if self.rule == "guided" else _Rectified.apply(x, self.q)
        if self.rule == "rescale":
            if func in _ELEMENTWISE:
                self.calls += 1
                kwargs.pop("inplace", None)
                fn, keep = _ELEMENTWISE[func]
                return _Rescale.apply(args[0], fn, tuple(args[1:1 + keep]), kwargs, self.eps)
            if func in _MAXPOOLS:
                self.calls += 1
                if kwargs.get("return_indices"):
                    raise NotImplementedError("DeepLIFT: max-pooling with return_indices")
                kwargs.pop("return_indices", None)
                return _MaxPoolRescale.apply(args[0], _MAXPOOLS[func], tuple(args[1:]),
                                             kwargs, self.eps)
        return func(*args, **kwargs)
