"""Loading a model to explain: an attrlab checkpoint, a torchvision (or timm) architecture with
random weights, a local state_dict or torchvision weights already in the torch hub cache, or
any ``module:function`` returning a model (nothing is ever downloaded)."""

from __future__ import annotations

import importlib
import importlib.util
import sys
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
               input_size: int | None = None,
               random_init: bool = False) -> tuple[nn.Module, dict[str, Any]]:
    """The model (eval mode) and its meta (mean, std, classes, dataset, input_size, resize,
    in_channels, num_classes).

    Either an attrlab checkpoint (shipped name or file; default :data:`DEFAULT_CHECKPOINT`) or
    ``torchvision_model``, one of:

    * ``"torchvision:NAME"``: built with ``weights=None`` and then ``random_init`` (keep the
      random weights), ``weights`` a state_dict file (``torch.load`` with
      ``weights_only=True``), or ``weights`` a torchvision weights name (``DEFAULT``,
      ``IMAGENET1K_V1``, ...) whose file is already in the torch hub cache
      (``torch.hub.get_dir()``); ImageNet normalisation, 224 px after resizing to 256 (or
      the weights' own transforms) and, for 1,000 outputs, ImageNet class names from
      torchvision's weights metadata;
    * ``"timm:NAME"`` (needs timm): ``timm.create_model(NAME, pretrained=False)`` with the
      same ``random_init``/``weights`` file choice and the model's own mean/std/size;
    * ``"package.module:function"`` or ``"file.py:function"``: ``function()`` returns an
      ``nn.Module`` or ``(module, meta)``; meta may give mean, std, input_size, classes.
    """
    if torchvision_model is None:
        for opt, val in (("--weights", weights), ("--num-classes", num_classes),
                         ("--input-size", input_size)):
            if val is not None:
                raise ValueError(f"{opt} only applies to --model")
        if random_init:
            raise ValueError("--random-init only applies to --model")
        from .shipped import load_checkpoint

        model, meta = load_checkpoint(checkpoint or DEFAULT_CHECKPOINT)
        return model, dict(meta)
    if checkpoint is not None:
        raise ValueError("use either --checkpoint or --model, not both")
    prefix, colon, name = torchvision_model.partition(":")
    if not colon or not name or not prefix:
        raise ValueError(f"--model must look like torchvision:NAME, timm:NAME or "
                         f"module:function, got {torchvision_model!r}")
    if num_classes is not None and num_classes < 1:
        raise ValueError(f"--num-classes must be positive, got {num_classes}")
    if input_size is not None and input_size < 1:
        raise ValueError(f"--input-size must be positive, got {input_size}")
    if prefix == "torchvision":
        return _torchvision_model(name, weights, num_classes, input_size, random_init)
    if prefix == "timm":
        return _timm_model(name, weights, num_classes, input_size, random_init)
    return _user_model(prefix, name, weights, input_size)


def _read_state(path: Path) -> dict:
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
    return state


def _weights_source(weights: str | None, random_init: bool) -> str:
    if random_init and weights is not None:
        raise ValueError("use either --random-init or --weights, not both")
    if not random_init and weights is None:
        raise ValueError("--model needs --weights (a state_dict file, or a torchvision weights "
                         "name such as DEFAULT found in the torch hub cache) or --random-init; "
                         "attrlab never downloads weights")
    return "random" if random_init else weights


def hub_weights(name: str, weights: str) -> tuple[Path, Any]:
    """The file of torchvision weights ``weights`` (``DEFAULT``, ``IMAGENET1K_V1``, ...) of
    model ``name`` in the torch hub cache, and the weights enum member (metadata,
    transforms); ``FileNotFoundError`` if it is not cached (nothing is downloaded)."""
    import torchvision

    try:
        enum = torchvision.models.get_model_weights(name)
        member = enum[weights] if weights != "DEFAULT" else enum.DEFAULT
    except (KeyError, ValueError) as err:
        raise ValueError(f"{weights!r} is neither a file nor weights of torchvision:{name} "
                         f"(known: DEFAULT, {', '.join(w.name for w in enum)})") from err
    path = Path(torch.hub.get_dir()) / "checkpoints" / Path(member.url).name
    if not path.is_file():
        raise FileNotFoundError(f"torchvision weights {name}.{member.name} are not in the torch "
                                f"hub cache ({path}); attrlab never downloads: fetch them once "
                                "elsewhere or pass a state_dict file")
    return path, member


def _torchvision_model(name: str, weights: str | None, num_classes: int | None,
                       input_size: int | None, random_init: bool
                       ) -> tuple[nn.Module, dict[str, Any]]:
    import torchvision

    names = torchvision.models.list_models(module=torchvision.models)
    if name not in names:
        raise ValueError(f"unknown torchvision classification model {name!r}; e.g. "
                        f"{', '.join(n for n in names if n.startswith('resnet'))}")
    source = _weights_source(weights, random_init)
    member = None
    if source == "random":
        state = None
    elif Path(source).suffix or Path(source).exists() or "/" in source:
        state = _read_state(Path(source))
    else:
        path, member = hub_weights(name, source)
        state = _read_state(path)
        num_classes = num_classes or len(member.meta["categories"])
    num_classes = 1000 if num_classes is None else num_classes
    try:
        with torch.random.fork_rng():  # random init must not touch the caller's RNG
            torch.manual_seed(0)
            model = torchvision.models.get_model(name, weights=None, num_classes=num_classes)
    except (TypeError, ValueError) as err:
        raise ValueError(f"cannot build torchvision:{name}: {one_line(err)}") from err
    if state is not None:
        try:
            model.load_state_dict(state)
        except RuntimeError as err:
            raise ValueError(f"weights {source} do not fit torchvision:{name} with "
                             f"{num_classes} classes (check --num-classes): "
                             f"{one_line(err)}") from err
    crop, resize = 224, 256
    if member is None:
        try:
            member = torchvision.models.get_model_weights(name).DEFAULT
        except (KeyError, ValueError, AttributeError):
            member = None
    if member is not None:
        tf = member.transforms()
        crop = int(getattr(tf, "crop_size", [crop])[0])
        resize = int(getattr(tf, "resize_size", [resize])[0])
    if input_size is not None:
        crop, resize = input_size, round(input_size * resize / crop)
    classes = (list(member.meta["categories"]) if member is not None
               and len(member.meta.get("categories", ())) == num_classes else [])
    meta = {"arch": {"name": f"torchvision:{name}"}, "dataset": None,
            "mean": list(IMAGENET_MEAN), "std": list(IMAGENET_STD), "classes": classes,
            "input_size": crop, "resize": resize, "in_channels": 3,
            "num_classes": num_classes, "weights": source}
    return model.eval(), meta


def _timm_model(name: str, weights: str | None, num_classes: int | None,
                input_size: int | None, random_init: bool) -> tuple[nn.Module, dict[str, Any]]:
    try:
        import timm
    except ImportError as err:
        raise ValueError("timm:NAME needs timm (pip install timm)") from err
    source = _weights_source(weights, random_init)
    kwargs = {} if num_classes is None else {"num_classes": num_classes}
    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = timm.create_model(name, pretrained=False, **kwargs)
    if source != "random":
        try:
            model.load_state_dict(_read_state(Path(source)))
        except RuntimeError as err:
            raise ValueError(f"weights {source} do not fit timm:{name}: {one_line(err)}") from err
    cfg = getattr(model, "pretrained_cfg", {}) or {}
    crop = input_size or int(cfg.get("input_size", (3, 224, 224))[-1])
    meta = {"arch": {"name": f"timm:{name}"}, "dataset": None,
            "mean": list(cfg.get("mean", IMAGENET_MEAN)), "std": list(cfg.get("std", IMAGENET_STD)),
            "classes": [], "input_size": crop,
            "resize": round(crop / float(cfg.get("crop_pct", 0.875))), "in_channels": 3,
            "num_classes": getattr(model, "num_classes", num_classes),
            "weights": source}
    return model.eval(), meta


def _user_model(module: str, function: str, weights: str | None,
                input_size: int | None) -> tuple[nn.Module, dict[str, Any]]:
    """``module:function`` -> ``function()`` (a module or (module, meta)); the module is a
    dotted import name or a ``.py`` file."""
    if module.endswith(".py"):
        path = Path(module)
        if not path.is_file():
            raise FileNotFoundError(f"model file {module!r} not found")
        spec = importlib.util.spec_from_file_location(path.stem, path)
        mod = importlib.util.module_from_spec(spec)
        sys.modules.setdefault(path.stem, mod)
        spec.loader.exec_module(mod)
    else:
        try:
            mod = importlib.import_module(module)
        except ImportError as err:
            raise ValueError(f"cannot import {module!r} for --model {module}:{function}: "
                             f"{one_line(err)}") from err
    fn = getattr(mod, function, None)
    if not callable(fn):
        raise ValueError(f"{module} has no function {function!r}")
    made = fn()
    model, meta = made if isinstance(made, tuple) else (made, {})
    if not isinstance(model, nn.Module):
        raise ValueError(f"{module}:{function}() returned {type(model).__name__}, not an "
                         "nn.Module (or (module, meta))")
    if weights is not None:
        model.load_state_dict(_read_state(Path(weights)))
    first = next((m for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Conv1d))), None)
    channels = int(meta.get("in_channels", first.in_channels if first is not None else 3))
    size = int(input_size or meta.get("input_size", 224))
    out_meta = {"arch": {"name": f"{module}:{function}"}, "dataset": meta.get("dataset"),
                "mean": list(meta.get("mean", IMAGENET_MEAN if channels == 3 else (0.0,))),
                "std": list(meta.get("std", IMAGENET_STD if channels == 3 else (1.0,))),
                "classes": list(meta.get("classes", [])), "input_size": size,
                "resize": int(meta.get("resize", round(size * 256 / 224))),
                "in_channels": channels, "num_classes": meta.get("num_classes")}
    return model.eval(), out_meta
