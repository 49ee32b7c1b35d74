"""Fitting the methods of a run that need data (``needs_data``; DeepSHAP's baseline set today,
IBA statistics, learned explainers and PruneGrad's calibration next) once, from the run's
reference data, with a seeded generator. Runners call :func:`fit_methods`; none of them names a
method."""

from __future__ import annotations

from typing import Any, Mapping

import torch
from torch import Tensor

from ..methods.base import Attribution

N_NOISE = 16


def reference_data(like: Tensor, meta: Mapping[str, Any], dataset: str | None = None,
                   data_dir: str | None = None, n_noise: int = N_NOISE) -> tuple[Any, str]:
    """The data needs-data methods are fitted on: the **train split** of ``dataset`` when it
    can be loaded and its samples are shaped like ``like``; otherwise ``n_noise``
    uniform-noise images (pixels uniform in [0, 1], seed 0) normalised with meta's mean/std.
    Returns ``(data, description)``."""
    if dataset:
        from ..data import load_dataset

        try:
            train = load_dataset(dataset, "train", data_dir)
        except (FileNotFoundError, ValueError):
            train = None
        if train is not None and len(train) and train.tensors(torch.tensor([0]))[0].shape[1:] \
                == like.shape[1:]:
            return train, f"the {dataset} train split"
    gen = torch.Generator().manual_seed(0)
    noise = torch.rand((n_noise,) + tuple(like.shape[1:]), generator=gen)
    mean = torch.tensor(meta["mean"], dtype=torch.float32).view(-1, 1, 1)
    std = torch.tensor(meta["std"], dtype=torch.float32).view(-1, 1, 1)
    return ((noise - mean) / std).to(like.dtype), f"{n_noise} uniform-noise images"


def fit_methods(methods: Mapping[str, Attribution], data: Any, description: str,
                seed: int = 0) -> list[str]:
    """Fit every method that needs data and has none yet (not fitted, no data given as an
    option) on ``data`` with a generator seeded with ``seed``; returns one note per fit."""
    notes = []
    for name, method in methods.items():
        if method.needs_data and not method.fitted and not method._has_data(method.defaults):
            method.fit(data, generator=torch.Generator().manual_seed(seed))
            notes.append(f"{name} fitted on {description}")
    return notes
