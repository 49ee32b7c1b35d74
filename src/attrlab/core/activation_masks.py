"""Multiplicative masks on ReLU outputs, identified by call order (paper 03, PruneGrad/PrunePGD).

A pruned network is the original one with every ReLU output ``a_l`` replaced by ``a_l * m_l``
for a fixed 0/1 mask ``m_l`` of the same shape. The masks are attached through the backward
rule engine of :mod:`attrlab.core.rules`: :class:`ActivationMasks` is a :class:`Rule` for the
op ``"relu"`` (every spelling: ``nn.ReLU`` modules reused several times, ``inplace=True``,
functional ``F.relu``, ``Tensor.relu_``), so the l-th ReLU *call* of a forward pass gets the
l-th mask, whatever module made it.

* :func:`relu_importance` records the activations a_l and the gradients dy/da_l of the
  selected logits in one forward+backward pass and scores every activation element by
  s = |a * dy/da| (paper 03, eq. 2: first-order Taylor estimate of removing that neuron).
* :func:`prune_masks` pools the scores of all layers per sample and prunes the ``percentage``
  lowest: mask = 0 where s <= the per-sample k-th smallest score (k = floor(p/100 * M) of the
  M pooled elements), computed on the device with ``kthvalue`` (one threshold per sample, all
  layers together). Zero activations have s = 0 and are therefore pruned before any positive
  score; with p = 0 nothing is pruned.
* :func:`pruned_forward` runs the model under given masks (gradients flow only through
  kept neurons; the masks are constants).
* :func:`relative_output_change` and :func:`calibrate_percentage` choose the percentage on
  validation data so that the mean relative change of the target logit,
  |f_p(x) - f(x)| / |f(x)|, equals an allowed threshold (paper 03, section 4.1);
  :func:`iterative_percentage` is the paper's per-sample variant (prune ``step`` % more at a
  time until the change exceeds the threshold).

The rule applies to every ReLU call, input-dependent or not (the masks are aligned by call
order, so the recording pass and the pruned passes must count the same calls, also when the
pruned pass runs under ``torch.no_grad``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor

from .checks import select_target
from .rules import Composite, NonlinearityRules, Rule

Forward = Callable[..., Tensor]


class ActivationMasks(Rule):
    """ReLU computed out of place, multiplied by the l-th mask at the l-th call.

    ``masks`` is None (plain ReLU) or a list with one mask per ReLU call of the forward pass,
    each broadcasting to that call's output. With ``record=True`` every output is kept in
    :attr:`activations` (in call order) so that gradients with respect to them can be taken.
    """

    input_dependent_only = False  # masks are aligned by call order over every ReLU call

    def __init__(self, masks: Sequence[Tensor] | None = None, record: bool = False) -> None:
        self.masks = None if masks is None else list(masks)
        self.record = record
        self.activations: list[Tensor] = []
        self._call = 0

    def begin(self) -> None:
        self.activations = []
        self._call = 0

    def apply(self, func: Any, args: tuple, kwargs: dict) -> Tensor:
        out = torch.relu(args[0])
        i = self._call
        self._call += 1
        if self.masks is not None:
            if i >= len(self.masks):
                raise ValueError(f"the model made more ReLU calls than the {len(self.masks)} "
                                 "masks recorded for it (its ReLU calls must not depend on "
                                 "the input)")
            m = self.masks[i]
            if m.shape != out.shape:
                raise ValueError(f"ReLU call {i}: mask of shape {tuple(m.shape)} for an "
                                 f"output of shape {tuple(out.shape)}")
            out = out * m
        if self.record:
            self.activations.append(out)
        return out

    @property
    def calls(self) -> int:
        """ReLU calls seen since the last :meth:`begin`."""
        return self._call


def _mode(rule: ActivationMasks) -> NonlinearityRules:
    return NonlinearityRules(Composite({"relu": rule}, name="activation masks", needs="ReLU"))


def _no_relu(who: str) -> ValueError:
    return ValueError(f"{who}: the model made no ReLU call (nn.ReLU, F.relu, torch.relu), so "
                      "there are no neurons to prune; the method is undefined for it")


def relu_importance(forward: Forward, inputs: Tensor, target: Tensor, args: tuple = (),
                    who: str = "pruning") -> tuple[list[Tensor], Tensor]:
    """Per ReLU call, the importance s = |a * d y_t / d a| of every activation element
    (paper 03, eq. 2), shape (N, ...) like the call's output; and the selected logits
    y_t(x), shape (N,). One forward and one backward pass; ``ValueError`` for a model without
    any ReLU call."""
    rule = ActivationMasks(record=True)
    x = inputs.detach().requires_grad_(True)  # so that the graph reaches every activation
    with torch.enable_grad(), _mode(rule):
        out = forward(x, *args)
    if rule.calls == 0:
        raise _no_relu(who)
    with torch.enable_grad():
        y = select_target(out, target)
        acts = rule.activations
        live = [i for i, a in enumerate(acts) if a.requires_grad]
        grads = torch.autograd.grad(y.sum(), [acts[i] for i in live], allow_unused=True)
    g_of = dict(zip(live, grads))
    scores = []
    for i, a in enumerate(acts):
        g = g_of.get(i)
        scores.append(torch.zeros_like(a) if g is None else (a.detach() * g).abs())
    return scores, y.detach()


def _pooled(scores: Sequence[Tensor]) -> Tensor:
    """All layers' scores of each sample side by side, (N, M)."""
    return torch.cat([s.flatten(1) for s in scores], dim=1)


def _split(keep: Tensor, like: Sequence[Tensor]) -> list[Tensor]:
    sizes = [s[0].numel() for s in like]
    return [k.view_as(s) for k, s in zip(keep.split(sizes, dim=1), like)]


def prune_count(percentage: float | Tensor, total: int) -> Tensor | int:
    """k = floor(percentage / 100 * total): how many of ``total`` pooled elements to prune."""
    if isinstance(percentage, Tensor):
        return torch.floor(percentage.double() / 100.0 * total).long().clamp(0, total)
    return min(total, max(0, math.floor(percentage / 100.0 * total + 1e-9)))


def prune_masks(scores: Sequence[Tensor], percentage: float | Tensor) -> list[Tensor]:
    """0/1 masks (dtype of the scores) pruning the ``percentage`` % least important elements
    of each sample, pooled over all layers: mask = 0 where s <= t, t the per-sample k-th
    smallest pooled score, k = floor(p/100 * M) (:func:`prune_count`); k = 0 keeps everything.

    ``percentage`` is a number (one k for the batch: ``kthvalue``) or a (N,) tensor of
    per-sample percentages (one sort, then a gather)."""
    pooled = _pooled(scores)
    n, total = pooled.shape
    k = prune_count(percentage, total)
    if isinstance(k, Tensor):
        k = k.to(pooled.device).view(n)
        ordered = pooled.sort(dim=1).values
        t = ordered.gather(1, (k - 1).clamp(min=0).view(n, 1))
        t = torch.where((k > 0).view(n, 1), t, torch.full_like(t, -math.inf))
    elif k == 0:
        return [torch.ones_like(s) for s in scores]
    else:
        t = pooled.kthvalue(k, dim=1, keepdim=True).values
    return _split((pooled > t).to(pooled.dtype), scores)


def _masks_sorted(scores: Sequence[Tensor], pooled: Tensor, ordered: Tensor, percentage: float
                  ) -> list[Tensor]:
    """:func:`prune_masks` from pooled scores already sorted per sample (many percentages)."""
    k = prune_count(percentage, pooled.shape[1])
    if k == 0:
        return [torch.ones_like(s) for s in scores]
    return _split((pooled > ordered[:, k - 1:k]).to(pooled.dtype), scores)


def pruned_forward(forward: Forward, inputs: Tensor, masks: Sequence[Tensor], args: tuple = (),
                   who: str = "pruning") -> Tensor:
    """The model's outputs with the l-th ReLU call's output multiplied by ``masks[l]``.

    Runs with or without gradients (as the caller's context); ``ValueError`` if the model
    makes a different number of ReLU calls than there are masks."""
    rule = ActivationMasks(masks)
    with _mode(rule):
        out = forward(inputs, *args)
    if rule.calls == 0:
        raise _no_relu(who)
    if rule.calls != len(masks):
        raise ValueError(f"{who}: the model made {rule.calls} ReLU calls but {len(masks)} masks "
                         "were recorded (its ReLU calls must not depend on the input)")
    return out


def relative_output_change(pruned: Tensor, original: Tensor, eps: float = 1e-12) -> Tensor:
    """|f_p(x) - f(x)| / |f(x)| per sample (paper 03, section 4.1 and Fig. 12a)."""
    return (pruned - original).abs() / original.abs().clamp(min=eps)


@torch.no_grad()
def changes_at(forward: Forward, inputs: Tensor, target: Tensor,
               percentages: Sequence[float], args: tuple = (), who: str = "pruning") -> Tensor:
    """Relative output change of every sample at every percentage, (N, P): one
    forward+backward pass for the scores and one forward pass per percentage."""
    scores, y = relu_importance(forward, inputs, target, args, who)
    pooled = _pooled(scores)
    ordered = pooled.sort(dim=1).values  # one sort serves every percentage
    cols = []
    for p in percentages:
        masks = _masks_sorted(scores, pooled, ordered, float(p))
        out = pruned_forward(forward, inputs, masks, args, who)
        cols.append(relative_output_change(select_target(out, target), y))
    return torch.stack(cols, dim=1)


def calibrate_percentage(mean_change: Callable[[Sequence[float]], Tensor], threshold: float,
                         levels: Sequence[float] = (10.0, 1.0)) -> tuple[float, float]:
    """The pruning percentage p whose mean relative output change equals ``threshold``
    (paper 03, section 4.1), and the mean change measured there.

    ``mean_change(ps)`` returns the mean change at each percentage of ``ps``. The search is a
    coarse-to-fine grid: on [0, 100] in steps of ``levels[0]``, the first grid point whose
    mean change reaches the threshold brackets p with the one before; that bracket is
    searched again in steps of the next level, and p is finally interpolated linearly inside
    the last bracket. If even 100 % stays below the threshold, p = 100."""
    lo, hi = 0.0, 100.0
    c_lo = float(mean_change([0.0])[0])
    if c_lo >= threshold:
        return 0.0, c_lo
    c_hi = math.nan
    for step in levels:
        grid = [min(hi, lo + step * i) for i in range(1, round((hi - lo) / step) + 1)]
        changes = mean_change(grid).tolist()
        above = [i for i, c in enumerate(changes) if c >= threshold]
        if not above:
            return grid[-1], changes[-1]
        i = above[0]
        lo, c_lo = (grid[i - 1], changes[i - 1]) if i > 0 else (lo, c_lo)
        hi, c_hi = grid[i], changes[i]
    p = lo + (hi - lo) * (threshold - c_lo) / max(c_hi - c_lo, 1e-12)
    return p, float(mean_change([p])[0])


@torch.no_grad()
def iterative_percentage(forward: Forward, inputs: Tensor, target: Tensor,
                         scores: Sequence[Tensor], original: Tensor, threshold: float,
                         step: float = 1.0, check_every: int = 8, args: tuple = (),
                         who: str = "pruning") -> Tensor:
    """Per sample, the largest percentage p = 0, step, 2 step, ... whose pruned network
    changes the target logit by at most ``threshold`` (relative), pruning ``step`` % more at
    a time until the change exceeds it (paper 03, section 4.1, the iterative variant).
    Batched: one forward pass per step for the whole batch; samples that are done keep their
    value, and the loop stops (one host sync every ``check_every`` steps) once all are."""
    n = inputs.shape[0]
    best = torch.zeros(n, dtype=torch.float64, device=inputs.device)
    done = torch.zeros(n, dtype=torch.bool, device=inputs.device)
    steps = math.floor(100.0 / step + 1e-9)
    pooled = _pooled(scores)
    ordered = pooled.sort(dim=1).values  # one sort, then a comparison per step
    for i in range(1, steps + 1):
        p = i * step
        out = pruned_forward(forward, inputs, _masks_sorted(scores, pooled, ordered, p), args, who)
        ok = relative_output_change(select_target(out, target), original) <= threshold
        done |= ~ok
        best = torch.where(done, best, torch.full_like(best, p))
        if i % check_every == 0 and bool(done.all()):
            break
    return best


def model_device(forward: Forward) -> torch.device | None:
    """The device of the first parameter or buffer of the module behind ``forward``."""
    module = forward if isinstance(forward, torch.nn.Module) else getattr(forward, "__self__", None)
    if isinstance(module, torch.nn.Module):
        for t in (*module.parameters(), *module.buffers()):
            return t.device
    return None


__all__ = ["ActivationMasks", "calibrate_percentage", "changes_at", "iterative_percentage",
           "model_device", "prune_count", "prune_masks", "pruned_forward",
           "relative_output_change", "relu_importance"]
