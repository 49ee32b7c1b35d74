"""Distilled Gradient Aggregation, DGA (paper 04, Algorithm 1, eqs. 6-12)."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from ..base import Attribution, Option, as_args, register
from ..cam.uniform_fullgrad import UniformFullGrad
from ..gradient.gradient_x_input import GradientXInput


def rank_fraction(values: Tensor) -> Tensor:
    """|{k : v_k <= v_j}| / dim(v) for every entry j of every sample (rows of ``values``),
    counting ties as <= (paper 04, eqs. 6 and 9)."""
    flat = values.flatten(1)
    ordered = flat.sort(dim=1).values
    count = torch.searchsorted(ordered, flat.contiguous(), right=True)
    return (count.to(values.dtype) / flat.shape[1]).view_as(values)


def rank_at_most(values: Tensor, fraction: float) -> Tensor:
    """``rank_fraction(values) <= fraction`` without sorting: the rank count of entry j,
    c_j = |{k : v_k <= v_j}|, is at most m exactly when v_j is below the (m+1)-th smallest
    value, so one ``kthvalue`` per row replaces the sort and search. m is the largest count
    with c / F <= fraction, evaluated in the values' dtype as ``rank_fraction`` does."""
    flat = values.flatten(1)
    f = flat.shape[1]
    counts = torch.arange(f + 1, dtype=values.dtype, device=values.device) / f
    m = int((counts <= fraction).sum()) - 1  # counts are increasing
    if m >= f:
        return torch.ones_like(values, dtype=torch.bool)
    kth = flat.kthvalue(m + 1, dim=1, keepdim=True).values
    return (flat < kth).view_as(values)


def weak_contributor_mask(phi: Tensor, n: int, steps: int) -> Tensor:
    """M^WC (eq. 7): 0 where the rank fraction of |phi_j| is <= n/N (the weakest
    contributors), 1 otherwise."""
    return (~rank_at_most(phi.abs(), n / steps)).to(phi.dtype)


def extreme_positive_mask(phi: Tensor, q: float) -> Tensor:
    """M^EPC (eq. 10): 1 where the rank fraction of the signed phi_j is <= q, 0 for the
    extreme positive contributors above the q quantile."""
    return rank_at_most(phi, q).to(phi.dtype)


def _n_steps(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"n_steps (N) must be a positive int, got {value!r}")
    return value


def _q(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value <= 1.0:
        raise ValueError(f"q (EPC threshold) must be in [0, 1], got {value!r}")
    return float(value)


def _aggregate(name: str, value: Any) -> str:
    if value not in ("mean", "sum"):
        raise ValueError(f"aggregate must be 'mean' (eq. 12) or 'sum' (Algorithm 1), "
                         f"got {value!r}")
    return value


@register
class DistilledGradientAggregation(Attribution):
    """DGA (paper 04, Algorithm 1). With x(0) = x, for n = 0..N:
    phi_n = phi^local(x(n)) (Uniform FullGrad, eq. 4, or ``local="gxi"``, Appendix G);
    M = (n/N) M^WC(x(n), n; N) + (1 - n/N) M^EPC(x(n); q) (eq. 11); x(n+1) = x * M.

    Aggregation: ``aggregate="mean"`` (default) is eq. 12, (1/N) sum_{n=1..N} ReLU(phi_n);
    ``aggregate="sum"`` is Algorithm 1's line 7, sum_{n=0..N} ReLU(phi_n). The two differ by
    the n = 0 term and a factor 1/N. Either way the N + 1 local attributions cost N + 1
    batched forward+backward passes, and nothing else touches the model.

    Colour channels: every entry of the (C, H, W) input is its own feature, so dim(x) =
    C*H*W in eqs. 6-10 and the masks can keep one channel of a pixel and drop another.
    The "negative scale beta" in the header of Algorithm 1 is used nowhere in the paper's
    equations and is not implemented.
    """

    name = "dga"
    signed = False
    reference = "paper 04, Algorithm 1, eqs. 6-12"
    low_precision = ()  # others: far off the float32 map (test_reliability)
    options = {
        "n_steps": Option(30, _n_steps, "N, the length of the distillation sequence"),
        "q": Option(0.9, _q, "EPC threshold (eq. 10)"),
        "aggregate": Option("mean", _aggregate, "eq. 12 (mean) or Algorithm 1 line 7 (sum)"),
    }

    def __init__(self, model: nn.Module, local: str = "ufg", **options: Any) -> None:
        super().__init__(model, **options)
        locals_ = {"ufg": UniformFullGrad, "gxi": GradientXInput}
        if local not in locals_:
            raise ValueError(f"local must be one of {sorted(locals_)}, got {local!r}")
        self.local = locals_[local](model)

    @classmethod
    def cost(cls, n_steps: int = 30, **options: Any) -> float:
        return float(n_steps + 1)

    def local_attributions(self, inputs: Tensor, target=None, *,
                           additional_forward_args: Any = None, **options: Any) -> Tensor:
        """phi_0 .. phi_N along the distillation sequence, shape (N + 1, batch, ...)."""
        opts = self.resolve_options(options)
        args = as_args(additional_forward_args)
        return self.guarded(inputs, target, lambda x, t: self._sequence(
            x, t, opts["n_steps"], opts["q"], args), additional_forward_args=args)

    def _sequence(self, inputs: Tensor, target: Tensor, steps: int, q: float,
                  args: tuple = ()) -> Tensor:
        x_n = inputs
        phis = []
        for n in range(steps + 1):
            phi = self.local.attribute(x_n, target, additional_forward_args=args)
            phis.append(phi)
            if n < steps:
                x_n = inputs * self._mask(phi, n, steps, q)
        return torch.stack(phis)

    @staticmethod
    def _mask(phi: Tensor, n: int, steps: int, q: float) -> Tensor:
        """Eq. 11, M = (n/N) M^WC + (1 - n/N) M^EPC, with the same floating-point values as
        that sum of the two 0/1 masks, in fewer passes: each entry is w, 1 - w, their sum or
        0, and the weak-contributor mask is not computed at n = 0, where its weight is 0."""
        epc = rank_at_most(phi, q)
        if n == 0:
            return epc.to(phi.dtype)
        w = n / steps
        wc = ~rank_at_most(phi.abs(), w)
        zero = phi.new_zeros(())
        return torch.where(wc, phi.new_tensor(w), zero) + torch.where(epc, phi.new_tensor(1 - w),
                                                                      zero)

    def _attribute(self, inputs: Tensor, target: Tensor, n_steps: int, q: float,
                   aggregate: str, additional_forward_args: tuple = ()) -> Tensor:
        phis = self._sequence(inputs, target, n_steps, q, additional_forward_args).clamp(min=0)
        if aggregate == "sum":
            return phis.sum(0)
        return phis[1:].mean(0)
