"""Reading image files for a model: converted to its channels, resized to its input size and
normalised with its mean/std."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import torch
from torch import Tensor

from ..core.checks import one_line


def load_images(paths: Sequence[str], meta: Mapping[str, Any]) -> Tensor:
    """Read image files with PIL, convert them to the model's channels (L or RGB), resize to
    its input size and normalise with meta's mean/std -> (N, C, S, S) float32."""
    from PIL import Image, UnidentifiedImageError

    channels, size = int(meta["in_channels"]), int(meta["input_size"])
    if channels not in (1, 3):
        raise ValueError(f"image files can feed 1- or 3-channel models, not {channels}")
    mode = "L" if channels == 1 else "RGB"
    mean = torch.tensor(meta["mean"], dtype=torch.float32).view(-1, 1, 1)
    std = torch.tensor(meta["std"], dtype=torch.float32).view(-1, 1, 1)
    out = []
    for p in paths:
        path = Path(p)
        if not path.is_file():
            raise FileNotFoundError(f"image file {str(path)!r} not found")
        try:
            with Image.open(path) as im:
                arr = _to_unit_array(im, mode, size)
        except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as err:
            raise ValueError(f"cannot read image {str(path)!r}: {one_line(err)}") from err
        t = torch.from_numpy(arr.copy())
        t = t.unsqueeze(0) if t.dim() == 2 else t.permute(2, 0, 1)
        out.append((t - mean) / std)
    return torch.stack(out)


def _to_unit_array(im: Any, mode: str, size: int) -> np.ndarray:
    """A PIL image as float32 in [0, 1], converted to ``mode`` (L or RGB) and resized to
    ``size`` x ``size``. 16-bit (and 32-bit integer) grayscale images are scaled by their
    bit depth: PIL's ``convert("L")`` clips them at 255."""
    from PIL import Image

    if im.mode.startswith("I") or im.mode == "F":
        full = 65535.0 if im.mode.startswith("I;16") or im.mode == "I" else 1.0
        gray = np.asarray(im, dtype=np.float32)
        if im.mode == "I" and gray.max(initial=0) > 65535:
            full = float(2 ** 32 - 1)
        g = Image.fromarray(np.clip(gray / full, 0.0, 1.0).astype(np.float32), mode="F")
        if g.size != (size, size):
            g = g.resize((size, size), Image.Resampling.BILINEAR)
        arr = np.asarray(g, dtype=np.float32)
        return arr if mode == "L" else np.repeat(arr[..., None], 3, axis=2)
    im = im.convert(mode)
    if im.size != (size, size):
        im = im.resize((size, size), Image.Resampling.BILINEAR)
    return np.asarray(im, dtype=np.float32) / 255.0
