"""The data-directory setting, the cache directory and the in-memory image dataset."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch
from torch import Tensor
from torch.utils.data import Dataset

ENV_DATA = "ATTRLAB_DATA_DIR"
ENV_CACHE = "ATTRLAB_CACHE_DIR"


def data_dir(explicit: str | os.PathLike | None = None) -> Path:
    """Where real data lives: ``explicit`` (``--data-dir``), else ``$ATTRLAB_DATA_DIR``."""
    value = explicit if explicit is not None else os.environ.get(ENV_DATA)
    if not value:
        raise FileNotFoundError(
            f"no data directory set: pass --data-dir or set {ENV_DATA} (for example to "
            "../shared/data)"
        )
    path = Path(value).expanduser()
    if not path.is_dir():
        raise FileNotFoundError(f"data directory {path} does not exist (from --data-dir/{ENV_DATA})")
    return path


def cache_dir() -> Path:
    """Where extracted/decoded data is kept: ``$ATTRLAB_CACHE_DIR`` or ~/.cache/attrlab."""
    path = Path(os.environ.get(ENV_CACHE) or Path.home() / ".cache" / "attrlab")
    path.mkdir(parents=True, exist_ok=True)
    return path


def require_file(path: Path, what: str) -> Path:
    """Return ``path`` if it exists, else a FileNotFoundError naming what and where."""
    if not path.exists():
        raise FileNotFoundError(
            f"{what} not found: looked for {path} (data directory from --data-dir or {ENV_DATA})"
        )
    return path


@dataclass(frozen=True)
class DatasetInfo:
    """What a model needs to know about its data: shape, classes and normalisation."""

    name: str
    num_classes: int
    in_channels: int
    input_size: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    classes: tuple[str, ...] = field(default=())


class NormalizedDataset(Dataset):
    """Images kept in memory as uint8 (N, C, H, W), returned as normalised float tensors.

    ``images``/``labels`` stay accessible for batched training and evaluation loops.
    ``transform`` (optional) acts on the normalised (C, H, W) tensor.
    """

    def __init__(self, images: Tensor, labels: Tensor, info: DatasetInfo,
                 transform: Callable[[Tensor], Tensor] | None = None) -> None:
        if images.dtype != torch.uint8 or images.dim() != 4:
            raise ValueError(f"images must be uint8 (N, C, H, W), got {images.dtype} "
                             f"{tuple(images.shape)}")
        if len(images) != len(labels):
            raise ValueError("images and labels differ in length")
        self.images, self.labels, self.info, self.transform = images, labels.long(), info, transform
        self._mean = torch.tensor(info.mean).view(-1, 1, 1)
        self._std = torch.tensor(info.std).view(-1, 1, 1)

    def normalize(self, images: Tensor) -> Tensor:
        """uint8 images (any leading dims) -> normalised float32."""
        dev = images.device
        return (images.float() / 255.0 - self._mean.to(dev)) / self._std.to(dev)

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> tuple[Tensor, int]:
        x = self.normalize(self.images[i])
        if self.transform is not None:
            x = self.transform(x)
        return x, int(self.labels[i])

    def tensors(self, indices: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """All (or the selected) samples as one normalised batch and its labels."""
        imgs = self.images if indices is None else self.images[indices]
        labels = self.labels if indices is None else self.labels[indices]
        return self.normalize(imgs), labels

    def ground_truth(self, indices: Tensor | None = None) -> dict[str, Tensor] | None:
        """Per-sample ground truth of all (or the selected) samples, as metrics take it
        (``ground_truth=`` of :meth:`attrlab.metrics.Metric.compute`): a dict of tensors with
        leading dimension N, e.g. ``{"boxes": (N, 4) long (x0, y0, x1, y1)}`` or
        ``{"masks": (N, H, W) bool}``; None for data sets without annotations (the default).
        Data sets with boxes or masks override this."""
        return None


# Registered loaders: name -> (info, loader(split, data_dir) -> NormalizedDataset)
DATASETS: dict[str, tuple[DatasetInfo, Callable[..., NormalizedDataset]]] = {}


def dataset_info(name: str) -> DatasetInfo:
    """Static description of a registered data set."""
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; available: {', '.join(sorted(DATASETS))}")
    return DATASETS[name][0]


def load_dataset(name: str, split: str = "test",
                 data_dir_: str | os.PathLike | None = None) -> NormalizedDataset:
    """Load a registered data set split (``"train"`` or ``"test"``)."""
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    dataset_info(name)
    return DATASETS[name][1](split, data_dir_)
