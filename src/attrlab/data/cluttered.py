"""Cluttered MNIST with ground-truth boxes: the localisation benchmark that runs here.

Each sample places one real MNIST digit at a random position on a larger black canvas and
adds random fragments (small crops of other digits) as clutter, in the spirit of the
cluttered-MNIST of Mnih et al. (2014). Every sample carries the tight bounding box of its
digit. Sample ``i`` is generated from ``seed`` and ``i`` alone, so the data set is
deterministic and needs no storage.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from .core import DATASETS, DatasetInfo, NormalizedDataset

#: canvas size, clutter and seeds of the registered ``cluttered_mnist`` data set
CANVAS, N_FRAGMENTS, FRAGMENT = 64, 6, 8
SEEDS = {"train": 1, "test": 0}
INFO = DatasetInfo("cluttered_mnist", 10, 1, CANVAS, (0.1307,), (0.3081,),
                   tuple(map(str, range(10))))


class ClutteredMNIST(Dataset):
    """(image, label, box) samples; image normalised (1, S, S), box = (x0, y0, x1, y1) with
    exclusive upper corner, in pixels.

    ``digits``/``labels`` are uint8 (M, 28, 28) digits and their labels (e.g. the MNIST test
    split); fragments are ``fragment`` x ``fragment`` crops of other digits, placed so that
    they do not overlap the digit's box.
    """

    def __init__(self, digits: Tensor, labels: Tensor, size: int = 64, n_fragments: int = 6,
                 fragment: int = 8, length: int | None = None, seed: int = 0,
                 mean: float = 0.1307, std: float = 0.3081) -> None:
        if digits.dim() == 4:
            digits = digits[:, 0]
        if digits.dtype != torch.uint8 or digits.dim() != 3:
            raise ValueError("digits must be uint8 (M, H, W)")
        if size < digits.shape[-1]:
            raise ValueError(f"canvas size {size} is smaller than a digit")
        self.digits, self.labels = digits.numpy(), labels.long().numpy()
        self.size, self.n_fragments, self.fragment = size, n_fragments, fragment
        self.length = len(digits) if length is None else length
        self.seed, self.mean, self.std = seed, mean, std
        self.info = DatasetInfo("cluttered_mnist", 10, 1, size, (mean,), (std,),
                                tuple(map(str, range(10))))

    def materialise(self) -> BoxedDataset:
        """Every sample as one in-memory :class:`BoxedDataset` (uint8 canvases, labels and
        boxes; identical to the samples drawn one by one)."""
        canvases, labels, boxes = zip(*(self.raw(i) for i in range(self.length)))
        return BoxedDataset(torch.from_numpy(np.stack(canvases))[:, None],
                            torch.tensor(labels), torch.tensor(boxes, dtype=torch.long),
                            self.info)

    def __len__(self) -> int:
        return self.length

    def _place(self, i: int) -> tuple[np.random.Generator, int, int, int,
                                      tuple[int, int, int, int]]:
        """The generator of sample ``i`` after placing its digit, the digit's index, its top
        left corner (y, x) and its tight box (the first draws of :meth:`raw`)."""
        if not 0 <= i < self.length:
            raise IndexError(i)
        rng = np.random.default_rng([self.seed, i])
        src = i % len(self.digits)
        h, w = self.digits[src].shape
        y, x = rng.integers(0, self.size - h + 1), rng.integers(0, self.size - w + 1)
        rows, cols = np.nonzero(self.digits[src])
        box = (int(x + cols.min()), int(y + rows.min()), int(x + cols.max() + 1),
               int(y + rows.max() + 1)) if len(rows) else (int(x), int(y), int(x + w), int(y + h))
        return rng, src, int(y), int(x), box

    def raw(self, i: int) -> tuple[np.ndarray, int, tuple[int, int, int, int]]:
        """Sample ``i`` as a uint8 canvas, its label and its digit box."""
        rng, src, y, x, box = self._place(i)
        digit = self.digits[src]
        h, w = digit.shape
        canvas = np.zeros((self.size, self.size), dtype=np.uint8)
        f = self.fragment
        placed = 0
        for _ in range(self.n_fragments * 20):
            if placed == self.n_fragments:
                break
            other = self.digits[rng.integers(len(self.digits))]
            oy, ox = rng.integers(0, h - f + 1), rng.integers(0, w - f + 1)
            py, px = rng.integers(0, self.size - f + 1), rng.integers(0, self.size - f + 1)
            if px < box[2] and px + f > box[0] and py < box[3] and py + f > box[1]:
                continue  # clutter must not touch the digit's box
            np.maximum(canvas[py:py + f, px:px + f], other[oy:oy + f, ox:ox + f],
                       out=canvas[py:py + f, px:px + f])
            placed += 1
        np.maximum(canvas[y:y + h, x:x + w], digit, out=canvas[y:y + h, x:x + w])
        return canvas, int(self.labels[src]), box

    def ground_truth(self, indices: Tensor | Sequence[int] | None = None) -> dict[str, Tensor]:
        """Ground truth of the selected samples (all if ``indices`` is None), in the form
        metrics take it (:meth:`attrlab.metrics.Metric.compute`, ``ground_truth=``):
        ``{"boxes": (N, 4) long}``, each row the digit's box ``(x0, y0, x1, y1)`` with
        exclusive upper corner, in pixels. Only the digit placement is drawn (no canvas)."""
        if indices is None:
            idx = list(range(self.length))
        else:
            idx = torch.as_tensor(indices).reshape(-1).tolist()
            if any(isinstance(i, (bool, float)) for i in idx):
                raise TypeError("indices must be integers")
        for i in idx:
            if not -self.length <= i < self.length:
                raise IndexError(f"index {i} out of range for {self.length} samples")
        boxes = [self._place(i % self.length)[4] for i in idx]
        return {"boxes": torch.tensor(boxes, dtype=torch.long).reshape(len(idx), 4)}

    def __getitem__(self, i: int) -> tuple[Tensor, int, Tensor]:
        canvas, label, box = self.raw(i)
        x = (torch.from_numpy(canvas).float()[None] / 255.0 - self.mean) / self.std
        return x, label, torch.tensor(box)


class BoxedDataset(NormalizedDataset):
    """An in-memory image data set whose samples carry one box each (``(x0, y0, x1, y1)``,
    exclusive upper corner, pixels): :meth:`ground_truth` gives them to metrics."""

    def __init__(self, images: Tensor, labels: Tensor, boxes: Tensor, info: DatasetInfo) -> None:
        super().__init__(images, labels, info)
        if boxes.shape != (len(labels), 4):
            raise ValueError(f"boxes must be (N, 4) for N = {len(labels)} samples, got "
                             f"{tuple(boxes.shape)}")
        self.boxes = boxes.long()

    def ground_truth(self, indices: Tensor | Sequence[int] | None = None) -> dict[str, Tensor]:
        """``{"boxes": (N, 4) long}`` of all (or the selected) samples."""
        return {"boxes": self.boxes if indices is None else self.boxes[torch.as_tensor(indices)]}


def cluttered_mnist(split: str = "test", data_dir_=None) -> BoxedDataset:
    """Cluttered MNIST from the MNIST split of the same name: one sample per MNIST digit, a
    64 x 64 canvas with 6 clutter fragments of 8 x 8 (seed 1 for train, 0 for test),
    materialised in memory (about 4 KB a sample), with the digit boxes as ground truth."""
    from .images import mnist

    src = mnist(split, data_dir_)
    return ClutteredMNIST(src.images, src.labels, size=CANVAS, n_fragments=N_FRAGMENTS,
                          fragment=FRAGMENT, seed=SEEDS[split]).materialise()


DATASETS["cluttered_mnist"] = (INFO, cluttered_mnist)
