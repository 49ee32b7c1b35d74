"""One batched optimisation loop for the optimisation methods (Meaningful and Extremal
Perturbation, IBA, InputIBA, Variational Perturbations, ...).

Every sample of a batch owns its parameters (rows of the parameter tensors) and its loss; the
loop minimises the *sum* of the per-sample losses. Because the samples do not interact (the
model is in eval mode, the losses are per sample and element-wise optimisers such as Adam,
SGD or RMSprop update every entry from its own gradient alone), each sample follows exactly
the trajectory it would follow alone: one batched call equals N one-by-one calls, at the cost
of one forward+backward pass per step for the whole batch.

No value is read back to the host inside the loop (no ``.item()``, no early stopping on a
loss): the per-sample losses are recorded on the device and returned at the end.

>>> mask = torch.ones(n, 1, 7, 7, requires_grad=True)  # doctest: +SKIP
>>> losses = optimise([mask], lambda step: loss_per_sample(mask, step), steps=300,
...                   optimiser="adam", lr=0.1, project=clamp_(mask, 0, 1), model=model)
"""

from __future__ import annotations

import contextlib
from typing import Any, Callable, Iterable, Mapping, Sequence

import torch
from torch import Tensor, nn

from .hooks import model_guard

#: optimisers by name; any ``torch.optim.Optimizer`` subclass is accepted as well
OPTIMISERS: dict[str, type[torch.optim.Optimizer]] = {
    "adam": torch.optim.Adam,
    "sgd": torch.optim.SGD,
    "rmsprop": torch.optim.RMSprop,
    "adamw": torch.optim.AdamW,
}

#: ``callback(step, optimiser)``, called before the step's loss is computed (learning-rate or
#: weight schedules); ``step`` counts from 0
Callback = Callable[[int, torch.optim.Optimizer], None]


def make_optimiser(params: Sequence[Tensor] | Sequence[Mapping[str, Any]],
                   optimiser: str | type[torch.optim.Optimizer] = "adam",
                   **options: Any) -> torch.optim.Optimizer:
    """The optimiser ``optimiser`` (a name of :data:`OPTIMISERS` or an Optimizer class) over
    ``params`` (tensors, or parameter groups as dicts with their own ``lr``) with ``options``
    (``lr``, ``momentum``, ...)."""
    if isinstance(optimiser, str):
        if optimiser not in OPTIMISERS:
            raise ValueError(f"unknown optimiser {optimiser!r}; use one of "
                             f"{', '.join(OPTIMISERS)} or a torch.optim.Optimizer class")
        optimiser = OPTIMISERS[optimiser]
    if not (isinstance(optimiser, type) and issubclass(optimiser, torch.optim.Optimizer)):
        raise TypeError(f"optimiser must be a name or a torch.optim.Optimizer subclass, got "
                        f"{optimiser!r}")
    return optimiser(list(params), **options)


def clamp_(params: Tensor | Iterable[Tensor], lo: float = 0.0, hi: float = 1.0
           ) -> Callable[[], None]:
    """A ``project`` function for :func:`optimise`: clamps the parameters to [lo, hi] in place
    after every step (projected gradient, as Meaningful/Extremal Perturbation do)."""
    tensors = [params] if isinstance(params, Tensor) else list(params)

    def project() -> None:
        for p in tensors:
            p.clamp_(lo, hi)

    return project


def optimise(params: Sequence[Tensor] | Sequence[Mapping[str, Any]],
             loss: Callable[[int], Tensor], steps: int, *,
             optimiser: str | type[torch.optim.Optimizer] | torch.optim.Optimizer = "adam",
             project: Callable[[], None] | None = None,
             callbacks: Sequence[Callback] = (),
             model: nn.Module | None = None,
             **optimiser_options: Any) -> Tensor:
    """Minimise ``sum_i loss(step)[i]`` over ``params`` for ``steps`` steps; returns the
    per-sample losses of every step, shape (steps, N), detached, on the loss's device.

    ``params`` are leaf tensors whose first dimension is the sample (each sample its own
    parameters; they are set to require gradients), or parameter groups (dicts, as for torch
    optimisers). ``loss(step)`` returns the (N,) per-sample losses at step ``step`` (0-based;
    schedules such as EP's growing area weight read it). ``optimiser`` is a name of
    :data:`OPTIMISERS`, an Optimizer class (built with ``optimiser_options``: ``lr``,
    ``momentum``, ...) or a ready optimiser over the parameters (then ``optimiser_options``
    must be empty). ``project()`` runs without gradients after every step (e.g.
    :func:`clamp_`), ``callbacks`` before every step's loss. With ``model`` the loop runs
    under :func:`~attrlab.core.hooks.model_guard`: eval mode, parameter gradients off
    (no weight gradients are computed), both restored exactly on exit, also on an exception.
    Gradients are enabled inside the loop even when the caller runs under ``no_grad``.
    """
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 0:
        raise ValueError(f"steps must be a non-negative int, got {steps!r}")
    tensors = [t for g in params for t in (g["params"] if isinstance(g, Mapping) else [g])]
    for t in tensors:
        if not isinstance(t, Tensor) or not t.is_leaf:
            raise ValueError("params must be leaf tensors (the optimised parameters)")
        t.requires_grad_(True)
    if isinstance(optimiser, torch.optim.Optimizer):
        if optimiser_options:
            raise ValueError("optimiser_options are for building an optimiser; got a ready one")
        opt = optimiser
    else:
        opt = make_optimiser(params, optimiser, **optimiser_options)
    guard = model_guard(model) if model is not None else contextlib.nullcontext()
    record: list[Tensor] = []
    with guard, torch.enable_grad():
        for step in range(steps):
            for callback in callbacks:
                callback(step, opt)
            per_sample = loss(step)
            if per_sample.dim() != 1:
                raise ValueError(f"loss(step) must return one loss per sample, shape (N,); got "
                                 f"shape {tuple(per_sample.shape)}")
            opt.zero_grad(set_to_none=True)
            per_sample.sum().backward()
            opt.step()
            if project is not None:
                with torch.no_grad():
                    project()
            record.append(per_sample.detach())
    for t in tensors:
        t.requires_grad_(False)
        t.grad = None
    if not record:
        return torch.zeros(0, 0)
    return torch.stack(record)
