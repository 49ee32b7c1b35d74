"""DeepSHAP: DeepLIFT averaged over a baseline distribution (Lundberg & Lee 2017)."""

from __future__ import annotations

import math
from typing import Any, Mapping

import torch
from torch import Tensor, nn

from ...core.checks import check_like, data_inputs
from ...core.rules import Composite
from ..base import (
    Attribution,
    Option,
    batch_size_or_none,
    chunks,
    expand_args,
    map_batched,
    number_in,
    positive_int,
    register,
)
from ..gradient.integrated_gradients import MULTIPLY_BY_INPUTS
from .deeplift import DeepLift


@register
class DeepLiftShap(Attribution):
    """DeepSHAP (Lundberg & Lee 2017, section 4.2 "Deep SHAP"): DeepLIFT averaged over a
    distribution of baselines, phi(x) = mean_j DeepLIFT(x; x'_j).

    The baselines are a (B, ...) batch of reference samples: learned by :meth:`fit` from a data
    set (``n_baselines`` samples drawn with the given generator, default seed 0), restored by
    :meth:`load_state_dict`, or given as the ``baselines`` option, which wins (for a tuple of
    inputs, a tuple of (B, ...) batches, one per input). Every input is paired with every
    baseline (N * B rows, row i * B + j, processed ``internal_batch_size`` rows at a time;
    per-sample tensors of ``additional_forward_args`` are repeated the same way).
    ``multiply_by_inputs=False`` averages DeepLIFT's multipliers instead (Captum's flag).
    ``composite`` replaces DeepLIFT's rules (see :class:`DeepLift`).

    ``return_convergence_delta=True`` returns, as Captum's ``DeepLiftShap``, the
    summation-to-delta error of every (sample, baseline) pair's DeepLIFT map, shape (N * B,)
    in row order i * B + j (before this version attrlab returned one delta per sample for the
    averaged map, sum(phi) - (f_t(x) - mean_j f_t(x'_j)); that is the mean over j of these).
    """

    name = "deepshap"
    needs_data = True
    reference = "Lundberg & Lee 2017, section 4.2"
    multi_input = True
    options = {
        "eps": Option(1e-10, number_in(0.0, math.inf), "as DeepLIFT's"),
        "internal_batch_size": Option(None, batch_size_or_none, "(input, baseline) rows per pass"),
        "baselines": Option(None, None, "(B, ...) reference batch; overrides the fitted one"),
        "n_baselines": Option(16, positive_int, "reference samples drawn by fit"),
        "multiply_by_inputs": MULTIPLY_BY_INPUTS,
    }

    def __init__(self, model: nn.Module, composite: Composite | None = None,
                 **options: Any) -> None:
        super().__init__(model, **options)
        self.deeplift = DeepLift(model, composite=composite, eps=self.defaults["eps"],
                                 multiply_by_inputs=self.defaults["multiply_by_inputs"])
        self.deeplift.who = self.name  # refusals name the method the user called
        self.fitted_baselines: Tensor | None = None

    @classmethod
    def cost(cls, n_baselines: int = 16, baselines: Any = None, **options: Any) -> float:
        first = baselines[0] if isinstance(baselines, tuple) and baselines else baselines
        b = first.shape[0] if isinstance(first, Tensor) and first.dim() else n_baselines
        return 2.0 * b

    # -- data --------------------------------------------------------------------------------
    @property
    def fitted(self) -> bool:
        return self.fitted_baselines is not None

    def _has_data(self, options: Mapping[str, Any]) -> bool:
        return options["baselines"] is not None

    def _data_hint(self) -> str:
        return " or pass baselines= (deepshap needs baselines: a (B, ...) batch of reference " \
               "samples)"

    def fit(self, data: Any, *, generator: torch.Generator | None = None) -> "DeepLiftShap":
        """Draw ``n_baselines`` reference samples from ``data`` (a dataset with ``len`` and
        ``tensors(indices)``, or a tensor batch): ``torch.randperm(len(data), generator)``'s
        first ``n_baselines`` indices, the generator seeded with 0 by default."""
        gen = torch.Generator().manual_seed(0) if generator is None else generator
        n = len(data)
        if n < 1:
            raise ValueError("deepshap.fit: the data set is empty")
        pick = torch.randperm(n, generator=gen)[: self.defaults["n_baselines"]]
        b = data_inputs(data, pick, "deepshap.fit")
        self.fitted_baselines = b.detach()
        return self

    def state_dict(self) -> dict[str, Any]:
        return {} if self.fitted_baselines is None else {"baselines": self.fitted_baselines}

    def load_state_dict(self, state: Mapping[str, Any]) -> "DeepLiftShap":
        if set(state) != {"baselines"} or not isinstance(state["baselines"], Tensor):
            raise ValueError(f"deepshap state must be {{'baselines': Tensor}}, got keys "
                             f"{sorted(state)}")
        self.fitted_baselines = state["baselines"].detach()
        return self

    # -- attribution -------------------------------------------------------------------------
    def _check_baselines(self, inputs: tuple[Tensor, ...], baselines: Any) -> tuple[Tensor, ...]:
        if baselines is None:
            baselines = self.fitted_baselines
        if baselines is None:
            raise ValueError("deepshap needs baselines: a (B, ...) batch of reference samples "
                             "(fit(data) or baselines=)")
        if not isinstance(baselines, tuple):
            baselines = (baselines,)
        if len(baselines) != len(inputs):
            raise ValueError(f"deepshap baselines: {len(baselines)} batch(es) for "
                             f"{len(inputs)} inputs; give a tuple with one (B, ...) batch per input")
        out = []
        for b, x in zip(baselines, inputs):
            b = check_like("baselines", b, x, any_batch=True)
            if b.dim() != x.dim() or b.shape[1:] != x.shape[1:]:
                raise ValueError(
                    f"deepshap baselines must be a batch shaped like the inputs (B, "
                    f"{', '.join(map(str, x.shape[1:]))}); got {tuple(b.shape)}"
                )
            out.append(b)
        if len({b.shape[0] for b in out}) > 1:
            raise ValueError(f"deepshap baselines of the inputs must share their batch size B; "
                             f"got {[b.shape[0] for b in out]}")
        return tuple(out)

    def _pairs(self, inputs: tuple[Tensor, ...], target: Tensor, baselines: Any, eps: float,
               internal_batch_size: int | None, multiply_by_inputs: bool, args: tuple,
               with_delta: bool) -> tuple[tuple[Tensor, ...], Tensor | None]:
        """DeepLIFT of every (input i, baseline j) pair, row i * B + j (Captum's order), and
        with ``with_delta`` each pair's summation-to-delta error, shape (N * B,)."""
        bs = self._check_baselines(inputs, baselines)
        n, nb = inputs[0].shape[0], bs[0].shape[0]
        rows_x = tuple(x.repeat_interleave(nb, 0) for x in inputs)
        rows_b = tuple(b.repeat((n,) + (1,) * (b.dim() - 1)) for b in bs)
        rows_t = target.repeat_interleave(nb)
        rows_a = expand_args(args, n, nb, interleave=True)
        maps, deltas = [], []
        for sl in chunks(n * nb, internal_batch_size):
            out = self.deeplift.attribute(
                tuple(x[sl] for x in rows_x), rows_t[sl], baselines=tuple(b[sl] for b in rows_b),
                eps=eps, multiply_by_inputs=multiply_by_inputs,
                additional_forward_args=map_batched(rows_a, n * nb, lambda a: a[sl]),
                return_convergence_delta=with_delta)
            if with_delta:
                out, delta = out
                deltas.append(delta)
            maps.append(out)
        pairs = tuple(torch.cat(per_input) for per_input in zip(*maps))
        return pairs, (torch.cat(deltas) if with_delta else None)

    def _attribute(self, inputs: tuple[Tensor, ...], target: Tensor, baselines: Any, eps: float,
                   internal_batch_size: int | None, n_baselines: int, multiply_by_inputs: bool,
                   additional_forward_args: tuple = (), with_delta: bool = False) -> Any:
        pairs, delta = self._pairs(inputs, target, baselines, eps, internal_batch_size,
                                   multiply_by_inputs, additional_forward_args, with_delta)
        n = inputs[0].shape[0]
        out = tuple(p.view((n, -1) + x.shape[1:]).mean(1) for p, x in zip(pairs, inputs))
        return (out, delta) if with_delta else out

    def _attribute_and_delta(self, inputs: tuple[Tensor, ...], target: Tensor, args: tuple,
                             options: dict) -> tuple[tuple[Tensor, ...], Tensor]:
        """The averaged map and, as Captum's DeepLiftShap, the summation-to-delta error of
        every (sample, baseline) pair's DeepLIFT map: sum(phi(x_i; x'_j)) - (f_t(x_i) -
        f_t(x'_j)), shape (N * B,), row i * B + j."""
        return self._attribute(inputs, target, additional_forward_args=args, with_delta=True,
                               **options)
