"""Shared machinery of the learned explainers (VP, nVP; next L2X and real-time saliency):
a small convolutional explainer network initialised from a ``torch.Generator``, the batches
of a fit drawn in a seeded order, and a resumable training loop.

* :class:`ConvExplainer`: ``depth`` 3x3 convolutions (``width`` channels, ReLU between) of
  which the first log2(m) have stride 2, so an (H, W) image gives ``out_channels`` maps at
  (H/m, W/m); built without touching the global RNG (``torch.nn.utils.skip_init``) and
  initialised as PyTorch's default (U(-1/sqrt(fan_in), 1/sqrt(fan_in)) for weights and
  biases) from the fit's generator.
* :class:`Batches`: a tensor, a data set with ``len`` and ``tensors(indices)`` (attrlab's
  data sets) or any iterable of batches (a ``DataLoader``; ``(x, y)`` pairs give x). Indexable
  data is visited in ``torch.randperm`` order drawn from the generator each epoch.
* :func:`train_loop`: Adam over ``epochs`` (or ``max_steps``) with a progress bar; with a
  ``checkpoint`` path it saves the explainer, the optimiser, the position in the epoch, the
  epoch's order and the generator's state every ``save_every`` steps and at the end, and a
  later call resumes from that file (loaded with ``weights_only=True``), giving exactly the
  weights of an uninterrupted run.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping

import torch
from torch import Tensor, nn

from ...core.checks import data_inputs


class ConvExplainer(nn.Module):
    """``depth`` conv layers, the first ``log2(upsample)`` with stride 2: (N, C, H, W) ->
    (N, out_channels, H / upsample, W / upsample) (module docstring)."""

    def __init__(self, in_channels: int, out_channels: int, upsample: int, width: int = 32,
                 depth: int = 5, dtype: torch.dtype = torch.float32,
                 device: torch.device | str = "cpu") -> None:
        super().__init__()
        n_down = int(round(math.log2(upsample)))
        if upsample < 1 or 2 ** n_down != upsample:
            raise ValueError(f"upsample must be a power of two, got {upsample}")
        if depth < max(n_down, 1):
            raise ValueError(f"depth must be at least log2(upsample) = {n_down} (and 1), "
                             f"got {depth}")
        layers: list[nn.Module] = []
        c = in_channels
        for i in range(depth):
            last = i == depth - 1
            out = out_channels if last else width
            layers.append(nn.utils.skip_init(nn.Conv2d, c, out, 3, stride=2 if i < n_down else 1,
                                             padding=1, dtype=dtype, device=device))
            if not last:
                layers.append(nn.ReLU())
            c = out
        self.net = nn.Sequential(*layers)
        self.upsample = upsample

    def reset_parameters(self, generator: torch.Generator) -> "ConvExplainer":
        """PyTorch's default initialisation, drawn from ``generator`` (CPU draws, then moved)."""
        with torch.no_grad():
            for conv in self.net:
                if isinstance(conv, nn.Conv2d):
                    bound = 1.0 / math.sqrt(conv.weight[0].numel())
                    for p in (conv.weight, conv.bias):
                        draw = torch.rand(p.shape, generator=generator,
                                          device=generator.device, dtype=torch.float64)
                        p.copy_(((2 * draw - 1) * bound).to(p))
        return self

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


def check_image_batch(x: Tensor, upsample: int, who: str) -> None:
    """ValueError unless ``x`` is an (N, C, H, W) batch with H and W divisible by ``upsample``."""
    if x.dim() != 4:
        raise ValueError(f"{who} explains images (N, C, H, W); got inputs of shape "
                         f"{tuple(x.shape)}")
    if x.shape[2] % upsample or x.shape[3] % upsample:
        raise ValueError(f"{who}: image size {tuple(x.shape[2:])} is not divisible by "
                         f"upsample={upsample}")


class Batches:
    """The batches of a fit (module docstring): ``epoch(generator, start, order)`` yields
    ``(position, x)``; ``order_for(generator)`` draws the epoch's order (None for iterables)."""

    def __init__(self, data: Any, batch_size: int) -> None:
        self.data, self.batch_size = data, batch_size
        self.indexable = isinstance(data, Tensor) or (hasattr(data, "tensors")
                                                      and hasattr(data, "__len__"))
        if self.indexable and len(data) < 1:
            raise ValueError("fit: the data set is empty")
        if not self.indexable and not hasattr(data, "__iter__"):
            raise TypeError(f"fit needs a tensor, a data set with tensors(indices) or an "
                            f"iterable of batches; got {type(data).__name__}")

    def __len__(self) -> int:
        if self.indexable:
            return math.ceil(len(self.data) / self.batch_size)
        return len(self.data) if hasattr(self.data, "__len__") else 0

    def order_for(self, generator: torch.Generator) -> Tensor | None:
        if not self.indexable:
            return None
        return torch.randperm(len(self.data), generator=generator, device=generator.device).cpu()

    def epoch(self, order: Tensor | None, start: int = 0) -> Iterator[tuple[int, Tensor]]:
        if order is not None:
            for pos in range(start, len(self)):
                yield pos, data_inputs(self.data,
                                       order[pos * self.batch_size:(pos + 1) * self.batch_size],
                                       "fit")
            return
        for pos, batch in enumerate(self.data):
            if pos < start:
                continue
            x = batch[0] if isinstance(batch, (tuple, list)) else batch
            if not isinstance(x, Tensor) or not x.is_floating_point():
                raise TypeError("fit: every batch must be a floating tensor (or an (x, y) pair)")
            yield pos, x


def train_loop(explainer: nn.Module, batches: Batches, step: Callable[[Tensor], Tensor],
               generator: torch.Generator, *, epochs: int, lr: float,
               max_steps: int | None = None, checkpoint: str | os.PathLike | None = None,
               save_every: int = 200, config: Mapping[str, Any] | None = None,
               progress: bool = True, desc: str = "fit") -> dict[str, Any]:
    """Adam on ``step(x) -> loss`` over the batches (module docstring); resumes from and saves
    to ``checkpoint``. Returns ``{"steps", "epochs", "last_loss"}`` (None when unknown: no
    step run and none recorded)."""
    from tqdm.auto import tqdm

    opt = torch.optim.Adam(explainer.parameters(), lr=lr)
    epoch, position, done, order, last_saved = 0, 0, 0, None, None
    config = dict(config or {})
    path = Path(checkpoint) if checkpoint is not None else None
    if path is not None and path.is_file():
        saved = torch.load(path, map_location="cpu", weights_only=True)
        if saved.get("config") != config:
            raise ValueError(f"{path} was written by a fit with other settings "
                             f"({saved.get('config')}); remove it or use another path")
        explainer.load_state_dict(saved["explainer"])
        opt.load_state_dict(saved["optimizer"])
        epoch, position, done = saved["epoch"], saved["position"], saved["steps"]
        order = saved["order"]
        generator.set_state(saved["generator"])
        last_saved = saved.get("last_loss")

    def save() -> None:
        if path is None:
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp")
        torch.save({"explainer": explainer.state_dict(), "optimizer": opt.state_dict(),
                    "epoch": epoch, "position": position, "steps": done, "order": order,
                    "generator": generator.get_state(), "config": config,
                    "last_loss": None if torch.isnan(last) else float(last)}, tmp)
        os.replace(tmp, path)

    per_epoch = len(batches)
    total = epochs * per_epoch if per_epoch else None
    if max_steps is not None:
        total = max_steps if total is None else min(total, max_steps)
    last = torch.tensor(math.nan if last_saved is None else last_saved)
    bar = tqdm(total=total, initial=done, desc=desc, disable=not progress, leave=False)
    try:
        while epoch < epochs and (max_steps is None or done < max_steps):
            if position == 0 or order is None and batches.indexable:
                order = batches.order_for(generator)
            for pos, x in batches.epoch(order, position):
                if max_steps is not None and done >= max_steps:
                    break
                loss = step(x)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                last = loss.detach()
                done, position = done + 1, pos + 1
                bar.update(1)
                if save_every and done % save_every == 0:
                    save()
            else:
                epoch, position = epoch + 1, 0
                continue
            break
        save()
    finally:
        bar.close()
    return {"steps": done, "epochs": epoch,
            "last_loss": None if torch.isnan(last) else float(last)}
