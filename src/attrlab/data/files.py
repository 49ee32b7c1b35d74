"""Reading image files for a model: converted to its channels, resized (shorter side) and
centre-cropped to its input size as torchvision's ``weights.transforms()``, and normalised
with its mean/std."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import torch
from torch import Tensor

from ..core.checks import one_line


def resize_for(size: int) -> int:
    """torchvision's classification preset: resize the shorter side to ``size * 256 / 224``
    (256 for 224) before the centre crop."""
    return round(size * 256 / 224)


def load_image(item: Any, channels: int, size: int, resize: int | None = None) -> Tensor:
    """A path, PIL image or uint8 (H, W[, C]) array -> (C, size, size) float32 in [0, 1]:
    converted to L (1 channel) or RGB (3), the shorter side resized (bilinear) to ``resize``
    (default :func:`resize_for`), then centre-cropped to ``size`` x ``size``; an image that
    already is ``size`` x ``size`` is used as it is."""
    from PIL import Image, UnidentifiedImageError

    if channels not in (1, 3):
        raise ValueError(f"image files can feed 1- or 3-channel models, not {channels}")
    resize = resize_for(size) if resize is None else resize
    if size < 1 or resize < size:
        raise ValueError(f"need 1 <= size <= resize, got size={size}, resize={resize}")
    mode = "L" if channels == 1 else "RGB"
    if isinstance(item, (str, os.PathLike)):
        path = Path(item)
        if not path.is_file():
            raise FileNotFoundError(f"image file {str(path)!r} not found")
        try:
            with Image.open(path) as im:
                im.load()
                img = im.convert(mode)
        except (UnidentifiedImageError, OSError, ValueError) as err:
            raise ValueError(f"cannot read image {str(path)!r}: {one_line(err)}") from err
    elif isinstance(item, np.ndarray):
        arr = item[..., 0] if item.ndim == 3 and item.shape[-1] == 1 else item
        img = Image.fromarray(arr).convert(mode)
    else:
        img = item.convert(mode)
    w, h = img.size
    if (w, h) == (size, size):  # already the model's size: used as it is
        resize = size
    scale = resize / min(w, h)
    img = img.resize((max(size, round(w * scale)), max(size, round(h * scale))),
                     Image.Resampling.BILINEAR)
    w, h = img.size
    left, top = (w - size) // 2, (h - size) // 2
    img = img.crop((left, top, left + size, top + size))
    t = torch.from_numpy(np.asarray(img, dtype=np.float32) / 255.0)
    return t.unsqueeze(0) if t.dim() == 2 else t.permute(2, 0, 1)


def load_images(paths: Sequence[str], meta: Mapping[str, Any]) -> Tensor:
    """Read image files with PIL (:func:`load_image`: the model's channels, shorter side
    resized to ``meta["resize"]`` (default: the input size itself, so a square image is just
    resized), centre crop of ``meta["input_size"]``) and normalise them with meta's mean/std
    -> (N, C, S, S) float32."""
    channels, size = int(meta["in_channels"]), int(meta["input_size"])
    mean = torch.tensor(meta["mean"], dtype=torch.float32).view(-1, 1, 1)
    std = torch.tensor(meta["std"], dtype=torch.float32).view(-1, 1, 1)
    out = [(load_image(p, channels, size, meta.get("resize") or size) - mean) / std for p in paths]
    return torch.stack(out)
