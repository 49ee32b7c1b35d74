"""``attrlab.explain``: attribution maps of any classifier for any images, plus a figure, in
one call.

>>> result = attrlab.explain(model, "cat.jpg", methods=["saliency", "ig", "gradcam"],
...                          classes="imagenet")                           # doctest: +SKIP
>>> result.maps["ig"].shape, result.layers["gradcam"]                      # doctest: +SKIP
(torch.Size([1, 3, 224, 224]), 'layer4')
>>> result.figure.savefig("cat-maps.png")                                  # doctest: +SKIP

Inputs, in any mix of a list:

* a **tensor or float numpy array** is taken as model input, already normalised: (C, H, W)
  is a batch of one, (N, C, H, W) a batch; ``mean``/``std`` (if given) only undo the
  normalisation for display (otherwise each image is min-max scaled for display);
* a **file path, a PIL image or a uint8 numpy array** (H, W[, C]) is an image: converted to
  the model's channels, resized so its shorter side is ``resize`` pixels (default
  ``size * 256 / 224``, torchvision's ``weights.transforms()``), centre-cropped to ``size``
  (default 224), scaled to [0, 1] and normalised with ``mean``/``std`` (default ImageNet's
  for 3 channels, none for 1).

A Hugging Face classifier (whose output is a ``ModelOutput`` with ``.logits``) works: the
methods read its ``.logits`` (and :class:`LogitsOf` wraps it for metrics and the harness). The user's model is never moved, changed or left with hooks.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import torch
from torch import Tensor, nn

from ..data.files import load_image

#: A small, fast default set: one method per family (gradient, path, backprop rule, CAM).
DEFAULT_METHODS = ("saliency", "ig", "gbp", "gradcam")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass
class Explanation:
    """The result of :func:`explain`.

    ``maps``: {method: (N, C, H, W) map on the CPU}; ``inputs``: the model inputs
    (normalised); ``images``: the same images in [0, 1] for display; ``targets``/``preds``:
    explained and predicted class per input; ``probs``: softmax probability of the predicted
    class; ``classes``: class names (or None); ``layers``: the layer each layer-based method
    used (Grad-CAM's default is chosen from the model and reported here); ``seconds``:
    wall time per method; ``figure``: the matplotlib figure (None with ``figure=False``).
    """

    maps: dict[str, Tensor]
    inputs: Tensor
    images: Tensor
    targets: Tensor
    preds: Tensor
    probs: Tensor
    classes: list[str] | None
    layers: dict[str, str]
    seconds: dict[str, float]
    signed: dict[str, bool]
    notes: list[str] = field(default_factory=list)
    figure: Any = None

    def name(self, k: int) -> str:
        """Class ``k``'s name (its number when there are no names)."""
        return self.classes[k] if self.classes and 0 <= k < len(self.classes) else str(k)

    def save(self, path: str | os.PathLike, dpi: int | None = None) -> Path:
        """Write the figure (PNG, PDF or SVG by the suffix); returns the path."""
        if self.figure is None:
            raise ValueError("this explanation was made with figure=False")
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        self.figure.savefig(path, dpi=dpi or self.figure.dpi)
        return path


class LogitsOf(nn.Module):
    """Wraps a model whose forward returns an object with ``.logits`` (Hugging Face
    ``ModelOutput``) so that it returns the logits tensor."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, *args: Any, **kwargs: Any) -> Tensor:
        return self.model(*args, **kwargs).logits


def imagenet_classes() -> list[str]:
    """The 1,000 ImageNet category names from torchvision's weights metadata (no download)."""
    from torchvision.models import ResNet50_Weights

    return list(ResNet50_Weights.IMAGENET1K_V1.meta["categories"])


def _model_device(model: nn.Module) -> torch.device:
    p = next(iter(model.parameters()), None)
    return p.device if p is not None else torch.device("cpu")


def _is_image(item: Any) -> bool:
    if isinstance(item, (str, os.PathLike)):
        return True
    if isinstance(item, np.ndarray):
        return item.dtype == np.uint8
    return type(item).__module__.startswith("PIL.")


def prepare_inputs(inputs: Any, channels: int | None = None, size: int | None = None,
                   resize: int | None = None, mean: Sequence[float] | None = None,
                   std: Sequence[float] | None = None) -> tuple[Tensor, Tensor, tuple, tuple]:
    """Model inputs and display images from whatever :func:`explain` accepts (see the module
    docstring). Returns ``(x, images, mean, std)`` with the mean/std used (empty if none)."""
    items = list(inputs) if isinstance(inputs, (list, tuple)) else [inputs]
    if not items:
        raise ValueError("no inputs given")
    if any(_is_image(i) for i in items):
        channels = channels or 3
        size = size or 224
        if mean is None and std is None and channels == 3:
            mean, std = IMAGENET_MEAN, IMAGENET_STD
    mean_t = torch.tensor(mean or (0.0,), dtype=torch.float32).view(-1, 1, 1)
    std_t = torch.tensor(std or (1.0,), dtype=torch.float32).view(-1, 1, 1)
    if (mean is None) != (std is None):
        raise ValueError("give both mean and std, or neither")
    xs, shows = [], []
    for item in items:
        if _is_image(item):
            img = load_image(item, channels, size, resize)
            xs.append(((img - mean_t) / std_t).unsqueeze(0))
            shows.append(img.unsqueeze(0))
            continue
        t = torch.as_tensor(np.asarray(item) if isinstance(item, np.ndarray) else item)
        if not isinstance(t, Tensor) or not t.is_floating_point():
            raise ValueError(f"inputs must be float tensors/arrays (model inputs) or images "
                             f"(paths, PIL images, uint8 arrays); got {type(item).__name__} "
                             f"of dtype {getattr(t, 'dtype', '?')}")
        if t.dim() == 3:
            t = t.unsqueeze(0)  # (C, H, W): a batch of one
        if t.dim() != 4:
            raise ValueError(f"an input tensor must be (C, H, W) or (N, C, H, W), got shape "
                             f"{tuple(t.shape)}")
        t = t.detach().float().cpu()
        xs.append(t)
        if mean is not None:
            shows.append((t * std_t + mean_t).clamp(0, 1))
        else:
            lo = t.flatten(1).min(1).values.view(-1, 1, 1, 1)
            hi = t.flatten(1).max(1).values.view(-1, 1, 1, 1)
            shows.append((t - lo) / (hi - lo).clamp(min=1e-12))
    shapes = {tuple(x.shape[1:]) for x in xs}
    if len(shapes) > 1:
        raise ValueError(f"inputs have different shapes {sorted(shapes)}: give images (which "
                         "are resized) or tensors of one shape")
    return torch.cat(xs), torch.cat(shows), tuple(mean or ()), tuple(std or ())


def explain(model: nn.Module, inputs: Any, methods: Sequence[str] | str = DEFAULT_METHODS,
            target: int | Sequence[int] | Tensor | None = None, *,
            method_options: Mapping[str, Mapping[str, Any]] | None = None,
            classes: Sequence[str] | str | None = None, mean: Sequence[float] | None = None,
            std: Sequence[float] | None = None, size: int | None = None,
            resize: int | None = None, device: str | torch.device | None = None,
            reference: Any = None, seed: int = 0, figure: bool = True,
            overlay: bool = False, clip: float = 2.0, cell_inches: float = 1.6,
            dpi: int = 100, progress: bool = False) -> Explanation:
    """Attribution maps of ``model`` for ``inputs`` with each of ``methods``, and a figure.

    ``inputs``: a tensor/array (C, H, W) or (N, C, H, W) of model inputs, or images (paths,
    PIL images, uint8 arrays) that are resized, centre-cropped and normalised (see the module
    docstring); a list mixes them. ``methods``: names (``attrlab.methods.available()``) or
    ``"all"``; ``method_options``: {method: {option: value}}, e.g.
    ``{"ig": {"n_steps": 16}, "gradcam": {"layer": "layer4"}}``. ``target``: the class to
    explain, per input or one for all (default: the predicted class). ``classes``: class
    names, or ``"imagenet"`` for torchvision's 1,000 names. ``device``: where the inputs go
    (default: the model's device; the model itself is not moved). ``reference``: data for
    methods that need it (DeepSHAP; default 16 uniform-noise images). The figure (one row
    per input: the input with its prediction, then a map per method) takes
    :func:`attrlab.viz.make_grid_figure`'s ``overlay``, ``clip`` (percentile of the largest
    |a| that saturates), ``cell_inches`` and ``dpi``.
    """
    from .. import methods as registry
    from ..viz import make_grid_figure
    from .explain import attribute_all

    if isinstance(methods, str):
        methods = registry.available() if methods == "all" else [methods]
    methods = list(dict.fromkeys(methods))
    if not methods:
        raise ValueError("methods is empty")
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    first_conv = next((m for m in model.modules() if isinstance(m, nn.Conv2d)), None)
    channels = first_conv.in_channels if first_conv is not None else None
    x, images, mean_used, std_used = prepare_inputs(inputs, channels, size, resize, mean, std)
    dev = torch.device(device) if device is not None else _model_device(model)
    if dev != _model_device(model):
        raise ValueError(f"device {dev} differs from the model's ({_model_device(model)}); "
                         "move the model first (attrlab never moves your model)")
    x = x.to(dev)
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            out = model(x)
        forward = model  # the methods read a ModelOutput's .logits themselves
        if not isinstance(out, Tensor) and isinstance(getattr(out, "logits", None), Tensor):
            out = out.logits
        if not isinstance(out, Tensor) or out.dim() != 2:
            raise ValueError("the model must return (N, num_classes) logits (or an object with "
                             f".logits); got {getattr(out, 'shape', type(out).__name__)}")
        probs_all = out.float().softmax(1).cpu()
        preds = probs_all.argmax(1)
        probs = probs_all.gather(1, preds[:, None])[:, 0]
        n, k = out.shape
        if target is None:
            targets = preds.clone()
        else:
            targets = torch.as_tensor(target, dtype=torch.long).view(-1).cpu()
            targets = targets.expand(n).clone() if targets.numel() == 1 else targets
            if targets.shape[0] != n:
                raise ValueError(f"{targets.shape[0]} targets for {n} inputs")
            if bool(((targets < 0) | (targets >= k)).any()):
                raise ValueError(f"target out of range: the model has {k} classes (0..{k - 1})")
        names = _class_names(classes, k)
        meta = {"mean": list(mean_used or (0.0,)), "std": list(std_used or (1.0,))}
        run = attribute_all(forward, x, targets, methods, method_options, meta,
                            reference=reference, progress=progress, seed=seed)
    finally:
        model.train(was_training)
    result = Explanation(run.maps, x.cpu(), images, targets, preds, probs, names, run.layers,
                         run.seconds, run.signed, run.notes)
    if figure:
        titles = []
        for i in range(n):
            t = f"{result.name(int(preds[i]))}\n(pred, p = {float(probs[i]):.2f})"
            if int(targets[i]) != int(preds[i]):
                t += f"\nmap of {result.name(int(targets[i]))}"
            titles.append(t)
        cols = {(f"{m}\n@{run.layers[m]}" if m in run.layers else m): v
                for m, v in run.maps.items()}
        signed = {(f"{m}\n@{run.layers[m]}" if m in run.layers else m): v
                  for m, v in run.signed.items()}
        result.figure = make_grid_figure(images, cols, signed, titles, overlay=overlay,
                                         clip=clip, cell_inches=cell_inches, dpi=dpi)
    return result


def _class_names(classes: Sequence[str] | str | None, k: int) -> list[str] | None:
    if classes is None:
        return None
    if isinstance(classes, str):
        if classes != "imagenet":
            raise ValueError(f"classes must be a list of names or 'imagenet', got {classes!r}")
        classes = imagenet_classes()
    names = [str(c) for c in classes]
    if len(names) != k:
        raise ValueError(f"{len(names)} class names for a model with {k} outputs")
    return names


__all__ = ["DEFAULT_METHODS", "Explanation", "LogitsOf", "explain", "imagenet_classes",
           "prepare_inputs"]
