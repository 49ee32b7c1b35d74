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
                img = _eight_bit(im).convert(mode)
        except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as err:
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


class InputsDataset:
    """Float model inputs (N, C, H, W) already normalised, with labels: the data set of an
    ``.npz`` of float inputs or of a torch ``Dataset`` given from Python. Same interface as
    :class:`~attrlab.data.core.NormalizedDataset` (``len``, ``[i]``, ``tensors(indices)``,
    ``ground_truth``, ``info``)."""

    def __init__(self, inputs: Tensor, labels: Tensor, info: Any) -> None:
        if inputs.dim() != 4 or not inputs.is_floating_point():
            raise ValueError(f"inputs must be float (N, C, H, W), got {inputs.dtype} "
                             f"{tuple(inputs.shape)}")
        if len(inputs) != len(labels):
            raise ValueError(f"{len(inputs)} inputs but {len(labels)} labels")
        self.inputs, self.labels, self.info = inputs.float(), labels.long().view(-1), info

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> tuple[Tensor, int]:
        return self.inputs[i], int(self.labels[i])

    def tensors(self, indices: Tensor | None = None) -> tuple[Tensor, Tensor]:
        if indices is None:
            return self.inputs, self.labels
        return self.inputs[indices], self.labels[indices]

    def ground_truth(self, indices: Tensor | None = None) -> None:
        return None


def _info(name: str, classes: Sequence[str], images: Tensor, mean: Sequence[float],
          std: Sequence[float], num_classes: int):
    from .core import DatasetInfo

    return DatasetInfo(name, num_classes, int(images.shape[1]), int(images.shape[-1]),
                       tuple(float(v) for v in mean), tuple(float(v) for v in std),
                       tuple(classes))


def user_dataset(path: str | os.PathLike, meta: Mapping[str, Any], split: str = "test"):
    """A user's data set for ``attrlab bench``, prepared for the model described by ``meta``
    (in_channels, input_size, resize, mean, std):

    * an **ImageFolder tree** ``<root>/<class>/<image>`` (or ``<root>/<split>/<class>/...``
      when ``<root>/<split>`` exists): each image converted, resized and centre-cropped as
      :func:`load_image`, normalised with the model's mean/std; samples dealt out class by
      class so the first N cover every class;
    * an **.npz** with ``inputs`` (or ``x``/``images``) and ``labels`` (or ``y``/``targets``)
      and optionally ``classes``: uint8 images (N, H, W[, C]) or (N, C, H, W) are normalised
      with the model's mean/std (or the file's ``mean``/``std``); float arrays are taken as
      model inputs, already normalised.
    """
    from .core import NormalizedDataset
    from .images import interleave_classes

    root = Path(path)
    if not root.exists():
        raise FileNotFoundError(f"data {str(root)!r} not found (an ImageFolder directory or "
                                "an .npz file)")
    mean = list(meta.get("mean") or (0.0,))
    std = list(meta.get("std") or (1.0,))
    if root.is_dir():
        folder = root / split if (root / split).is_dir() else root
        classes = sorted(p.name for p in folder.iterdir() if p.is_dir())
        if not classes:
            raise ValueError(f"{folder} has no class folders (<root>/<class>/<image>)")
        exts = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm"}
        files = [(f, k) for k, c in enumerate(classes) for f in sorted((folder / c).iterdir())
                 if f.suffix.lower() in exts]
        if not files:
            raise ValueError(f"no image files under {folder}")
        channels, size = int(meta.get("in_channels", 3)), int(meta.get("input_size", 224))
        imgs = torch.stack([(load_image(f, channels, size, meta.get("resize")) * 255).round()
                            .to(torch.uint8) for f, _ in files])
        labels = torch.tensor([k for _, k in files])
        order = interleave_classes(labels)
        info = _info(root.name, classes, imgs, mean, std, len(classes))
        return NormalizedDataset(imgs[order], labels[order], info)
    if root.suffix != ".npz":
        raise ValueError(f"{root}: user data must be an ImageFolder directory or an .npz file")
    with np.load(root, allow_pickle=False) as f:
        key_x = next((k for k in ("inputs", "x", "images") if k in f.files), None)
        key_y = next((k for k in ("labels", "y", "targets") if k in f.files), None)
        if key_x is None or key_y is None:
            raise ValueError(f"{root} must hold 'inputs' (or x/images) and 'labels' (or "
                             f"y/targets); it has {f.files}")
        x, y = f[key_x], f[key_y]
        classes = [str(c) for c in f["classes"]] if "classes" in f.files else []
        if "mean" in f.files and "std" in f.files:
            mean, std = [float(v) for v in f["mean"]], [float(v) for v in f["std"]]
    labels = torch.as_tensor(y).long().view(-1)
    num_classes = len(classes) or int(labels.max()) + 1
    if x.dtype == np.uint8:
        t = torch.from_numpy(x.copy())
        if t.dim() == 3:
            t = t.unsqueeze(1)
        elif t.dim() == 4 and t.shape[-1] in (1, 3) and t.shape[1] not in (1, 3):
            t = t.permute(0, 3, 1, 2).contiguous()
        info = _info(root.stem, classes, t, mean, std, num_classes)
        return NormalizedDataset(t, labels, info)
    t = torch.from_numpy(np.asarray(x, dtype=np.float32))
    if t.dim() != 4:
        raise ValueError(f"{root}: float inputs must be (N, C, H, W), got {tuple(t.shape)}")
    return InputsDataset(t, labels, _info(root.stem, classes, t, mean, std, num_classes))


def from_torch_dataset(data: Any, name: str = "dataset", limit: int | None = None,
                       mean: Sequence[float] | None = None, std: Sequence[float] | None = None,
                       classes: Sequence[str] | None = None):
    """Any torch ``Dataset`` of ``(input, label)`` pairs (inputs already normalised, as the
    model takes them) -> an :class:`InputsDataset` of its first ``limit`` samples (all when
    None). Data that already has ``tensors(indices)`` and ``info`` is returned as it is."""
    if hasattr(data, "tensors") and hasattr(data, "info"):
        return data
    n = len(data) if limit is None else min(limit, len(data))
    if n < 1:
        raise ValueError("the data set is empty")
    xs, ys = [], []
    for i in range(n):
        item = data[i]
        if not isinstance(item, (tuple, list)) or len(item) < 2:
            raise ValueError(f"data[{i}] must be an (input, label) pair, got "
                             f"{type(item).__name__}")
        xs.append(torch.as_tensor(item[0]).float())
        ys.append(int(item[1]))
    x = torch.stack(xs)
    if x.dim() == 3:
        x = x.unsqueeze(1)
    labels = torch.tensor(ys)
    names = list(classes or getattr(data, "classes", []) or [])
    k = len(names) or int(labels.max()) + 1
    info = _info(name, names, x, mean or [0.0] * x.shape[1], std or [1.0] * x.shape[1], k)
    return InputsDataset(x, labels, info)


def _eight_bit(im: Any) -> Any:
    """16-bit (and 32-bit integer or float) grayscale PIL images scaled by their bit depth to
    an 8-bit ``L`` image (PIL's ``convert("L")`` clips them at 255); others as they are."""
    from PIL import Image

    if not (im.mode.startswith("I") or im.mode == "F"):
        return im
    full = 65535.0 if im.mode.startswith("I;16") or im.mode == "I" else 1.0
    gray = np.asarray(im, dtype=np.float32)
    if im.mode == "I" and gray.max(initial=0) > 65535:
        full = float(2 ** 32 - 1)
    return Image.fromarray(np.rint(np.clip(gray / full, 0.0, 1.0) * 255.0).astype(np.uint8), "L")
