"""Loading a model to explain: an attrlab checkpoint or a torchvision architecture with a local
state_dict (nothing is ever downloaded)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..core.checks import one_line

DEFAULT_CHECKPOINT = "digits_nib_cnn"
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def load_model(checkpoint: str | None = None, torchvision_model: str | None = None,
               weights: str | None = None, num_classes: int | None = None,
               input_size: int | None = None) -> tuple[nn.Module, dict[str, Any]]:
    """The model (eval mode) and its meta (mean, std, classes, dataset, input_size,
    in_channels, num_classes).

    Either an attrlab checkpoint (shipped name or file; default :data:`DEFAULT_CHECKPOINT`) or
    ``torchvision_model="torchvision:NAME"`` built with ``weights=None`` (nothing is ever
    downloaded) and loaded from the state_dict file ``weights`` (``torch.load`` with
    ``weights_only=True``); such a model expects ImageNet-normalised RGB images of
    ``input_size`` (default 224) pixels and has ``num_classes`` (default 1000) outputs.
    """
    if torchvision_model is None:
        for opt, val in (("--weights", weights), ("--num-classes", num_classes),
                         ("--input-size", input_size)):
            if val is not None:
                raise ValueError(f"{opt} only applies to --model torchvision:NAME")
        from .shipped import load_checkpoint

        model, meta = load_checkpoint(checkpoint or DEFAULT_CHECKPOINT)
        return model, dict(meta)
    if checkpoint is not None:
        raise ValueError("use either --checkpoint or --model, not both")
    return _torchvision_model(torchvision_model, weights, num_classes, input_size)


def _torchvision_model(spec: str, weights: str | None, num_classes: int | None,
                       input_size: int | None) -> tuple[nn.Module, dict[str, Any]]:
    import torchvision

    prefix, _, name = spec.partition(":")
    if prefix != "torchvision" or not name:
        raise ValueError(f"--model must look like torchvision:NAME (e.g. torchvision:resnet18), "
                        f"got {spec!r}")
    names = torchvision.models.list_models(module=torchvision.models)
    if name not in names:
        raise ValueError(f"unknown torchvision classification model {name!r}; e.g. "
                        f"{', '.join(n for n in names if n.startswith('resnet'))}")
    if weights is None:
        raise ValueError("--model needs --weights FILE (a state_dict saved with torch.save); "
                        "attrlab never downloads weights")
    num_classes = 1000 if num_classes is None else num_classes
    input_size = 224 if input_size is None else input_size
    if num_classes < 1:
        raise ValueError(f"--num-classes must be positive, got {num_classes}")
    if input_size < 1:
        raise ValueError(f"--input-size must be positive, got {input_size}")
    path = Path(weights)
    if not path.is_file():
        raise FileNotFoundError(f"weights file {str(path)!r} not found")
    try:
        state = torch.load(path, weights_only=True, map_location="cpu")
    except Exception as err:
        raise ValueError(f"cannot read weights {path} with torch.load(weights_only=True): "
                        f"{type(err).__name__}: {one_line(err)}") from err
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise ValueError(f"weights {path} hold a {type(state).__name__}, not a state_dict")
    try:
        model = torchvision.models.get_model(name, weights=None, num_classes=num_classes)
    except (TypeError, ValueError) as err:
        raise ValueError(f"cannot build torchvision:{name}: {one_line(err)}") from err
    try:
        model.load_state_dict(state)
    except RuntimeError as err:
        raise ValueError(f"weights {path} do not fit torchvision:{name} with {num_classes} "
                        f"classes (check --num-classes): {one_line(err)}") from err
    meta = {"arch": {"name": f"torchvision:{name}"}, "dataset": None,
            "mean": list(IMAGENET_MEAN), "std": list(IMAGENET_STD), "classes": [],
            "input_size": input_size, "in_channels": 3, "num_classes": num_classes}
    return model.eval(), meta
