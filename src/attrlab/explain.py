"""``attrlab explain``: attribution maps of a classifier for some inputs, as a picture and as
arrays.

Everything the command does is available from Python::

    from attrlab.explain import load_model, load_samples, explain
    model, meta = load_model("digits_nib_cnn")
    x, labels, info = load_samples("digits", indices=[0, 5, 9])
    maps = explain(model, x, labels, ["saliency", "ig"], {"ig": {"n_steps": 16}},
                   "out", meta)

Defaults of methods that need data:

* ``deepshap`` needs a batch of baselines. Unless ``--method-arg deepshap.baselines=V`` is
  given, it gets :data:`N_BASELINES` (16) samples drawn (seed 0) from the **train split** of
  the data set when one is available (the ``--dataset``, or the checkpoint's data set when
  ``--images`` are explained and that data set can be loaded); otherwise 16 **uniform-noise
  images** (pixels uniform in [0, 1], normalised like the inputs, seed 0).
* ``gradcam`` without ``gradcam.layer`` uses the model's last convolution (the method's own
  default); ``smoothgrad`` without ``smoothgrad.base`` smooths ``saliency``.
"""

from __future__ import annotations

import argparse
import inspect
import sys
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import torch
from torch import Tensor, nn

from .cli import UserError, parse_kv

DEFAULT_CHECKPOINT = "digits_nib_cnn"
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
N_BASELINES = 16
PNG_NAME = "explain.png"
NPZ_NAME = "attributions.npz"
# Arrays of attributions.npz that are not methods.
NPZ_FIXED = ("inputs", "labels", "preds", "targets")


# ------------------------------------------------------------------------------------ models

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
                raise UserError(f"{opt} only applies to --model torchvision:NAME")
        from .models import load_checkpoint

        model, meta = load_checkpoint(checkpoint or DEFAULT_CHECKPOINT)
        return model, dict(meta)
    if checkpoint is not None:
        raise UserError("use either --checkpoint or --model, not both")
    return _torchvision_model(torchvision_model, weights, num_classes, input_size)


def _torchvision_model(spec: str, weights: str | None, num_classes: int | None,
                       input_size: int | None) -> tuple[nn.Module, dict[str, Any]]:
    import torchvision

    prefix, _, name = spec.partition(":")
    if prefix != "torchvision" or not name:
        raise UserError(f"--model must look like torchvision:NAME (e.g. torchvision:resnet18), "
                        f"got {spec!r}")
    names = torchvision.models.list_models(module=torchvision.models)
    if name not in names:
        raise UserError(f"unknown torchvision classification model {name!r}; e.g. "
                        f"{', '.join(n for n in names if n.startswith('resnet'))}")
    if weights is None:
        raise UserError("--model needs --weights FILE (a state_dict saved with torch.save); "
                        "attrlab never downloads weights")
    num_classes = 1000 if num_classes is None else num_classes
    input_size = 224 if input_size is None else input_size
    if num_classes < 1:
        raise UserError(f"--num-classes must be positive, got {num_classes}")
    if input_size < 1:
        raise UserError(f"--input-size must be positive, got {input_size}")
    path = Path(weights)
    if not path.is_file():
        raise FileNotFoundError(f"weights file {str(path)!r} not found")
    try:
        state = torch.load(path, weights_only=True, map_location="cpu")
    except Exception as err:
        raise UserError(f"cannot read weights {path} with torch.load(weights_only=True): "
                        f"{type(err).__name__}: {_one_line(err)}") from err
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise UserError(f"weights {path} hold a {type(state).__name__}, not a state_dict")
    try:
        model = torchvision.models.get_model(name, weights=None, num_classes=num_classes)
    except (TypeError, ValueError) as err:
        raise UserError(f"cannot build torchvision:{name}: {_one_line(err)}") from err
    try:
        model.load_state_dict(state)
    except RuntimeError as err:
        raise UserError(f"weights {path} do not fit torchvision:{name} with {num_classes} "
                        f"classes (check --num-classes): {_one_line(err)}") from err
    meta = {"arch": {"name": f"torchvision:{name}"}, "dataset": None,
            "mean": list(IMAGENET_MEAN), "std": list(IMAGENET_STD), "classes": [],
            "input_size": input_size, "in_channels": 3, "num_classes": num_classes}
    return model.eval(), meta


def _one_line(err: BaseException, limit: int = 300) -> str:
    text = " ".join(str(err).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


# ------------------------------------------------------------------------------------ inputs

def load_images(paths: Sequence[str], meta: Mapping[str, Any]) -> Tensor:
    """Read image files with PIL, convert them to the model's channels (L or RGB), resize to
    its input size and normalise with meta's mean/std -> (N, C, S, S) float32."""
    from PIL import Image, UnidentifiedImageError

    channels, size = int(meta["in_channels"]), int(meta["input_size"])
    if channels not in (1, 3):
        raise UserError(f"image files can feed 1- or 3-channel models, not {channels}")
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
                im = im.convert(mode)
                if im.size != (size, size):
                    im = im.resize((size, size), Image.Resampling.BILINEAR)
                arr = np.asarray(im, dtype=np.float32) / 255.0
        except (UnidentifiedImageError, OSError, ValueError) as err:
            raise UserError(f"cannot read image {str(path)!r}: {_one_line(err)}") from err
        t = torch.from_numpy(arr.copy())
        t = t.unsqueeze(0) if t.dim() == 2 else t.permute(2, 0, 1)
        out.append((t - mean) / std)
    return torch.stack(out)


def parse_indices(text: str | None) -> list[int] | None:
    """``"0,5,9"`` -> [0, 5, 9] (None stays None)."""
    if text is None:
        return None
    try:
        idx = [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise UserError(f"--indices must be comma-separated integers like 0,5,9; got {text!r}")
    if not idx:
        raise UserError("--indices is empty")
    if min(idx) < 0:
        raise UserError(f"--indices must be >= 0; got {text!r}")
    return idx


def load_samples(dataset: str, indices: Sequence[int] | None = None, n: int = 6,
                 data_dir: str | None = None):
    """Test samples of a registered data set: the given ``indices`` or the first ``n``.

    Returns ``(x, labels, info)``: the normalised batch, its labels and the DatasetInfo.
    """
    from .data import load_dataset

    ds = load_dataset(dataset, "test", data_dir)
    if indices is None:
        if n < 1:
            raise UserError(f"--n must be positive, got {n}")
        indices = list(range(min(n, len(ds))))
    bad = [i for i in indices if not 0 <= i < len(ds)]
    if bad:
        raise UserError(f"index {bad[0]} out of range: the {dataset} test split has {len(ds)} "
                        f"samples (0..{len(ds) - 1})")
    x, labels = ds.tensors(torch.tensor(list(indices), dtype=torch.long))
    return x, labels, ds.info


def default_baselines(x: Tensor, meta: Mapping[str, Any], dataset: str | None = None,
                      data_dir: str | None = None, n: int = N_BASELINES) -> tuple[Tensor, str]:
    """DeepSHAP's reference batch: ``n`` train samples of ``dataset`` (seed 0) when it can be
    loaded, else ``n`` uniform-noise images normalised with meta's mean/std.
    Returns ``(baselines, description)``."""
    gen = torch.Generator().manual_seed(0)
    if dataset:
        from .data import load_dataset

        try:
            train = load_dataset(dataset, "train", data_dir)
        except (FileNotFoundError, ValueError):
            train = None
        if train is not None and len(train):
            pick = torch.randperm(len(train), generator=gen)[:n]
            b, _ = train.tensors(pick)
            if b.shape[1:] == x.shape[1:]:
                return b, f"{len(b)} {dataset} train samples"
    noise = torch.rand((n,) + tuple(x.shape[1:]), generator=gen)
    mean = torch.tensor(meta["mean"], dtype=torch.float32).view(-1, 1, 1)
    std = torch.tensor(meta["std"], dtype=torch.float32).view(-1, 1, 1)
    return ((noise - mean) / std).to(x.dtype), f"{n} uniform-noise images"


# ---------------------------------------------------------------------------- method options

_NOT_OPTIONS = {"self", "model", "inputs", "target"}


def _named_params(fn) -> tuple[dict[str, inspect.Parameter], bool]:
    params = inspect.signature(fn).parameters
    named = {k: p for k, p in params.items()
             if k not in _NOT_OPTIONS and not k.startswith("_")
             and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
    varkw = any(p.kind is p.VAR_KEYWORD for p in params.values())
    return named, varkw


def _coerce(param: inspect.Parameter, value: Any) -> Any:
    """A value parsed by ``parse_kv`` fitted to the parameter: ``none`` -> None, and numbers
    for string-only parameters (``layer=4``) back to strings."""
    if isinstance(value, str) and value.lower() == "none":
        return None
    ann = param.annotation if isinstance(param.annotation, str) else str(param.annotation)
    if (isinstance(value, (int, float)) and not isinstance(value, bool) and "str" in ann
            and not any(t in ann for t in ("int", "float", "bool", "Any"))):
        return str(value)
    return value


def split_options(name: str, options: Mapping[str, Any]) -> tuple[dict, dict]:
    """Split ``options`` of method ``name`` into constructor and ``attribute`` options by
    inspecting the class's ``__init__`` and ``_attribute`` signatures (a key accepted by both
    goes to the constructor). Keys a wrapper (``smoothgrad``) forwards with ``**options`` are
    checked against its ``base`` method. Unknown keys raise :class:`UserError`."""
    from .methods import method_class

    cls = method_class(name)
    init, init_varkw = _named_params(cls.__init__)
    call, call_varkw = _named_params(cls._attribute)
    ctor_opts: dict = {}
    call_opts: dict = {}
    base_cls = None
    for key, value in options.items():
        if key in init:
            ctor_opts[key] = _coerce(init[key], value)
        elif key in call:
            call_opts[key] = _coerce(call[key], value)
        elif init_varkw and "base" in init:
            if base_cls is None:
                base = options.get("base", init["base"].default)
                base_cls = method_class(base) if isinstance(base, str) else type(base)
            b_init, _ = _named_params(base_cls.__init__)
            b_call, _ = _named_params(base_cls._attribute)
            if key in b_init:
                ctor_opts[key] = _coerce(b_init[key], value)
            elif key in b_call and call_varkw:
                call_opts[key] = _coerce(b_call[key], value)
            else:
                raise UserError(_unknown_key(name, key, init, call, base_cls.name))
        else:
            raise UserError(_unknown_key(name, key, init, call))
    if "baselines" in call_opts:
        v = call_opts["baselines"]
        if isinstance(v, bool) or not isinstance(v, (int, float, Tensor)):
            raise UserError(f"{name}.baselines must be a number (a constant baseline in "
                            f"normalised input units), got {v!r}")
    return ctor_opts, call_opts


def _unknown_key(name: str, key: str, init: Mapping, call: Mapping, base: str | None = None) -> str:
    known = sorted(set(init) | set(call))
    extra = f" and the options of its base method {base}" if base else ""
    return (f"unknown option {key!r} for method {name}; its options are: "
            f"{', '.join(known) or '(none)'}{extra}")


def parse_method_args(items: Sequence[str] | None) -> dict[str, dict[str, Any]]:
    """``["ig.n_steps=16", "gradcam.layer=features.10"]`` ->
    {"ig": {"n_steps": 16}, "gradcam": {"layer": "features.10"}}; method names and keys are
    validated against the registry."""
    from .methods import available

    out: dict[str, dict[str, Any]] = {}
    for item in items or ():
        lhs, sep, _ = item.partition("=")
        method, dot, key = lhs.partition(".")
        if not sep or not dot or not method or not key:
            raise UserError(f"--method-arg must look like METHOD.KEY=VALUE "
                            f"(e.g. ig.n_steps=16), got {item!r}")
        if method not in available():
            raise UserError(f"--method-arg {item!r}: unknown method {method!r}; available: "
                            f"{', '.join(available())}")
        out.setdefault(method, {}).update(parse_kv([f"{key}={item.partition('=')[2]}"],
                                                   "--method-arg"))
    for method, opts in out.items():
        split_options(method, opts)
    return out


def parse_methods(text: str | None) -> list[str]:
    """``"saliency,ig"`` -> ["saliency", "ig"]; ``"all"`` or None -> every registered method."""
    from .methods import available

    if text is None or text.strip() == "all":
        return available()
    names = [s.strip() for s in text.split(",") if s.strip()]
    if not names:
        raise UserError("--methods is empty")
    unknown = [s for s in names if s not in available()]
    if unknown:
        raise UserError(f"unknown method {unknown[0]!r}; available: {', '.join(available())} "
                        "(or all)")
    return list(dict.fromkeys(names))


# ----------------------------------------------------------------------------------- explain

def class_name(meta: Mapping[str, Any], k: int) -> str:
    classes = meta.get("classes") or ()
    return str(classes[k]) if 0 <= k < len(classes) else str(k)


def row_titles(preds: Tensor, labels: Tensor, meta: Mapping[str, Any]) -> list[str]:
    """``"pred P / true T"`` per sample, with class names where meta has them (``?``
    for an unknown label, -1)."""
    return [f"pred {class_name(meta, int(p))} / true "
            f"{class_name(meta, int(t)) if int(t) >= 0 else '?'}"
            for p, t in zip(preds, labels)]


def explain(model: nn.Module, x: Tensor, labels: Tensor | None, method_names: Sequence[str],
            method_options: Mapping[str, Mapping[str, Any]] | None, out_dir: str | Path,
            meta: Mapping[str, Any], target: int | None = None,
            baselines: Tensor | None = None, overlay: bool = False,
            progress: bool = True, seed: int | None = 0) -> dict[str, Tensor]:
    """Attribute ``x`` (normalised (N, C, H, W)) with every method in ``method_names`` and write
    ``out_dir/explain.png`` and ``out_dir/attributions.npz``; returns {method: map}.

    ``labels`` are the true classes (-1 or None: unknown). The explained class is ``target``
    if given, else the true label where known, else the predicted class.
    ``method_options`` maps a method to its options (constructor and call options mixed; see
    :func:`split_options`). ``baselines`` is DeepSHAP's reference batch (default: 16
    uniform-noise images, see :func:`default_baselines`). ``meta`` needs ``mean``/``std``
    (for display) and optionally ``classes`` and ``num_classes``. Random methods
    (``smoothgrad``) draw from torch's RNG seeded with ``seed`` inside a forked RNG state, so
    results repeat and the caller's RNG is untouched (``seed=None``: the global RNG as is).
    """
    from tqdm.auto import tqdm

    from . import methods
    from .viz import denormalize, plot_grid

    method_options = method_options or {}
    unknown = [m for m in method_names if m not in methods.available()]
    if unknown:
        raise UserError(f"unknown method {unknown[0]!r}; available: "
                        f"{', '.join(methods.available())}")
    split = {m: split_options(m, method_options.get(m, {})) for m in method_names}
    model.eval()
    x = x.detach().float()
    n = x.shape[0]
    labels = (torch.full((n,), -1, dtype=torch.long) if labels is None
              else torch.as_tensor(labels, dtype=torch.long).view(-1))
    if labels.shape[0] != n:
        raise ValueError(f"{labels.shape[0]} labels for {n} inputs")
    with torch.no_grad():
        logits = model(x)
    num_classes = logits.shape[1]
    preds = logits.argmax(1)
    if target is not None:
        if not 0 <= target < num_classes:
            raise UserError(f"--target {target} out of range: the model has {num_classes} "
                            f"classes (0..{num_classes - 1})")
        targets = torch.full((n,), target, dtype=torch.long)
    else:
        targets = torch.where(labels >= 0, labels, preds)

    built = {}  # constructors validate their options (a layer name, ...) before any work
    for name in method_names:
        try:
            built[name] = methods.get(name, model, **split[name][0])
        except (RuntimeError, TypeError) as err:
            raise UserError(f"method {name}: {_one_line(err)}") from err

    maps: dict[str, Tensor] = {}
    signed: dict[str, bool] = {}
    bar = tqdm(method_names, desc="explain", unit="method", disable=not progress,
               file=sys.stderr)
    with bar:
        for name in bar:
            bar.set_postfix_str(name)
            method, call_opts = built[name], split[name][1]
            if name == "deepshap":
                b = call_opts.get("baselines")
                if b is None:
                    b = baselines if baselines is not None else default_baselines(x, meta)[0]
                elif not isinstance(b, Tensor):
                    b = torch.full((1,) + tuple(x.shape[1:]), float(b))
                call_opts = {**call_opts, "baselines": b}
            try:
                with torch.random.fork_rng(devices=[], enabled=seed is not None):
                    if seed is not None:
                        torch.manual_seed(seed)
                    a = method.attribute(x, target=targets, **call_opts)
            except RuntimeError as err:
                raise UserError(f"method {name} failed: {_one_line(err)}") from err
            except TypeError as err:
                raise UserError(f"method {name}: {_one_line(err)}") from err
            maps[name] = a.detach().float().cpu()
            signed[name] = bool(method.signed)

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    arrays = {"inputs": x.cpu().numpy(), "labels": labels.numpy(), "preds": preds.numpy(),
              "targets": targets.numpy()}
    arrays.update({k: v.numpy() for k, v in maps.items()})
    np.savez_compressed(out / NPZ_NAME, **arrays)

    if target is not None:
        what = f"maps explain class {class_name(meta, target)}"
    elif bool((labels >= 0).all()):
        what = "maps explain the true class"
    elif bool((labels < 0).all()):
        what = "maps explain the predicted class"
    else:
        what = "maps explain the true class (predicted where unknown)"
    images = denormalize(x, meta["mean"], meta["std"])
    plot_grid(images, maps, signed, row_titles(preds, labels, meta), out / PNG_NAME,
              overlay=overlay, title=what)
    return maps


# ------------------------------------------------------------------------------------ command

def cmd_explain(args: argparse.Namespace) -> int:
    methods_ = parse_methods(args.methods)
    options = parse_method_args(args.method_arg)
    if args.images and (args.dataset or args.indices):
        raise UserError("use either --images or --dataset/--indices, not both")
    if args.n < 1:
        raise UserError(f"--n must be positive, got {args.n}")
    indices = parse_indices(args.indices)
    model, meta = load_model(args.checkpoint, args.model, args.weights, args.num_classes,
                             args.input_size)
    data_dir = args.data_dir
    if args.images:
        x = load_images(args.images, meta)
        labels = None
        base_dataset = meta.get("dataset")
    else:
        dataset = args.dataset or meta.get("dataset")
        if not dataset:
            raise UserError("this model has no data set: pass --images FILE [FILE ...] or "
                            "--dataset NAME")
        x, labels, info = load_samples(dataset, indices, args.n, data_dir)
        if x.shape[1] != meta["in_channels"]:
            raise UserError(f"data set {dataset} has {x.shape[1]} channels but the model "
                            f"expects {meta['in_channels']}")
        if args.model is None and x.shape[-1] != meta["input_size"]:
            raise UserError(f"data set {dataset} has {x.shape[-1]}-pixel images but the "
                            f"model expects {meta['input_size']}")
        # dataset samples are normalised with the data set's own mean/std
        meta = {**meta, "mean": list(info.mean), "std": list(info.std)}
        if not meta.get("classes") and len(info.classes) == meta["num_classes"]:
            meta["classes"] = list(info.classes)
        base_dataset = dataset
    baselines, note = None, None
    if "deepshap" in methods_ and "baselines" not in options.get("deepshap", {}):
        baselines, what = default_baselines(x, meta, base_dataset, data_dir)
        note = f"deepshap baselines: {what}"
    out = Path(args.out)
    explain(model, x, labels, methods_, options, out, meta, target=args.target,
            baselines=baselines, overlay=args.overlay, progress=not args.no_progress)
    if note:
        print(note)
    print(f"wrote {out / PNG_NAME}")
    print(f"wrote {out / NPZ_NAME}")
    return 0


def add_explain_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add the ``explain`` subcommand to the ``attrlab`` subparsers ``sub``."""
    from .methods import available

    e = sub.add_parser(
        "explain", help="attribution maps of a model for some inputs (PNG grid + npz arrays)",
        description="Compute attribution maps of a classifier for data-set samples or image "
        "files; write OUT/explain.png (one row per input: the input, then one heatmap per "
        "method; signed maps in a diverging, non-negative maps in a sequential colour map) "
        "and OUT/attributions.npz (inputs, labels (-1 if unknown), preds, targets and one "
        "array per method). DeepSHAP's baselines: 16 train samples of the data set when one "
        "is available, else 16 uniform-noise images.")
    g = e.add_argument_group("model (a checkpoint, or a torchvision model with its weights)")
    g.add_argument("--checkpoint", metavar="NAME|FILE",
                   help=f"attrlab checkpoint: a shipped name or a .pt file "
                   f"(default: {DEFAULT_CHECKPOINT})")
    g.add_argument("--model", metavar="torchvision:NAME",
                   help="a torchvision classification model instead (e.g. "
                   "torchvision:resnet18), built with weights=None; needs --weights; images are "
                   "normalised with ImageNet mean/std")
    g.add_argument("--weights", metavar="FILE",
                   help="state_dict for --model, read with torch.load(weights_only=True); "
                   "nothing is downloaded")
    g.add_argument("--num-classes", type=int, metavar="K",
                   help="number of outputs of --model (default: 1000)")
    g.add_argument("--input-size", type=int, metavar="S",
                   help="image side in pixels for --model (default: 224)")
    m = e.add_argument_group("methods")
    m.add_argument("--methods", metavar="LIST",
                   help=f"comma-separated methods or 'all' (default: all: {', '.join(available())})")
    m.add_argument("--method-arg", action="append", metavar="METHOD.KEY=VALUE",
                   help="a method option, repeatable (e.g. ig.n_steps=16, "
                   "gradcam.layer=features.10, smoothgrad.base=gxi, saliency.abs=false, "
                   "ig.baselines=0); constructor or attribute() option, found from the "
                   "method's signatures; 'none' means None")
    i = e.add_argument_group("inputs (image files, or data-set samples)")
    i.add_argument("--images", nargs="+", metavar="FILE",
                   help="PNG/JPEG files, converted to the model's channels (L or RGB), resized "
                   "to its input size and normalised with its mean/std")
    i.add_argument("--dataset", metavar="NAME",
                   help="registered data set for test samples (default: the checkpoint's)")
    i.add_argument("--indices", metavar="I,J,...",
                   help="test-split indices, e.g. 0,5,9 (default: the first --n samples)")
    i.add_argument("--n", type=int, default=6, metavar="N",
                   help="number of test samples when --indices is not given (default: 6)")
    i.add_argument("--data-dir", metavar="DIR",
                   help="where real data lives (default $ATTRLAB_DATA_DIR)")
    i.add_argument("--target", type=int, metavar="CLASS",
                   help="class to explain for every input (default: the true label of "
                   "data-set samples, the predicted class for image files)")
    o = e.add_argument_group("output")
    o.add_argument("--out", default="attrlab-explain", metavar="DIR",
                   help="output directory for explain.png and attributions.npz (default: "
                   "attrlab-explain)")
    o.add_argument("--overlay", action="store_true",
                   help="draw heatmaps semi-transparently over the greyscale input")
    o.add_argument("--no-progress", action="store_true", help="no progress bar")
    e.set_defaults(func=cmd_explain)
    return e
