"""``attrlab explain``: attribution maps of a classifier for some inputs (PNG grid + npz)."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..data.files import load_images
from ..experiments.explain import NPZ_NAME, PNG_NAME, explain, load_samples
from ..experiments.fitting import reference_data
from ..methods import method_class
from ..models.loading import DEFAULT_CHECKPOINT, load_model
from .common import UserError, parse_method_args, parse_methods


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


def cmd_explain(args: argparse.Namespace) -> int:
    import json

    import torch

    from ..experiments.api import DEFAULT_METHODS
    from ..experiments.explain import JSON_NAME

    methods_ = parse_methods(args.methods) if args.methods else list(DEFAULT_METHODS)
    options = parse_method_args(args.method_arg)
    unused = [m for m in options if m not in methods_]
    if unused:
        raise UserError(f"--method-arg {unused[0]}.*: {unused[0]} is not among the methods run "
                        f"({', '.join(methods_)}); add it to --methods")
    if args.images and (args.dataset or args.indices):
        raise UserError("use either --images or --dataset/--indices, not both")
    if args.n < 1:
        raise UserError(f"--n must be positive, got {args.n}")
    indices = parse_indices(args.indices)
    model, meta = load_model(args.checkpoint, args.model, args.weights, args.num_classes,
                             args.input_size, random_init=args.random_init)
    try:
        device = torch.device(args.device)
    except RuntimeError as err:
        raise UserError(f"--device {args.device!r}: {err}") from err
    model = model.to(device)
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
    reference, what = reference_data(x, meta, base_dataset, data_dir)
    if isinstance(reference, torch.Tensor):
        reference = reference.to(device)
    out = Path(args.out)
    explain(model, x.to(device), labels, methods_, options, out, meta, target=args.target,
            reference=reference, overlay=args.overlay, progress=not args.no_progress)
    record = json.loads((out / JSON_NAME).read_text(encoding="utf-8"))
    for name, layer in record["layers"].items():
        print(f"{name} layer: {layer}" + ("" if name in options and "layer" in options[name]
                                           else f" (default; set --method-arg {name}.layer=NAME)"))
    fitted = [m for m in methods_ if method_class(m).needs_data
              and "baselines" not in options.get(m, {})]
    if fitted:
        print(f"{', '.join(fitted)} fitted on {what}")
    print(f"wrote {out / PNG_NAME}")
    print(f"wrote {out / NPZ_NAME}")
    return 0


def add_explain_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add the ``explain`` subcommand to the ``attrlab`` subparsers ``sub``."""
    from ..methods import available

    e = sub.add_parser(
        "explain", help="attribution maps of a model for some inputs (PNG grid + npz arrays)",
        description="Compute attribution maps of a classifier for data-set samples or image "
        "files; write OUT/explain.png (one row per input: the input, then one heatmap per "
        "method; signed maps in a diverging, non-negative maps in a sequential colour map) "
        "and OUT/attributions.npz (inputs, labels (-1 if unknown), preds, targets and one "
        "array per method). DeepSHAP's baselines: 16 train samples of the data set when one "
        "is available, else 16 uniform-noise images.")
    g = e.add_argument_group("model (an attrlab checkpoint, a torchvision/timm architecture, "
                             "or your own module:function)")
    g.add_argument("--checkpoint", metavar="NAME|FILE",
                   help=f"attrlab checkpoint: a shipped name or a .pt file "
                   f"(default: {DEFAULT_CHECKPOINT})")
    g.add_argument("--model", metavar="SPEC",
                   help="torchvision:NAME (e.g. torchvision:resnet18; ImageNet normalisation, "
                   "resize 256 + centre crop 224, ImageNet class names for 1000 outputs), "
                   "timm:NAME (if timm is installed), or module:function / file.py:function "
                   "returning an nn.Module or (module, meta dict with mean, std, input_size, "
                   "classes); torchvision/timm need --weights or --random-init")
    g.add_argument("--weights", metavar="FILE|NAME",
                   help="state_dict file for --model (torch.load(weights_only=True)), or a "
                   "torchvision weights name (DEFAULT, IMAGENET1K_V1, ...) already in the torch "
                   "hub cache; nothing is downloaded")
    g.add_argument("--random-init", action="store_true",
                   help="keep --model's random initialisation (seed 0): to try the pipeline")
    g.add_argument("--device", default="cpu", metavar="DEV",
                   help="torch device for the model and inputs (default: cpu; e.g. cuda)")
    g.add_argument("--num-classes", type=int, metavar="K",
                   help="number of outputs of --model (default: 1000)")
    g.add_argument("--input-size", type=int, metavar="S",
                   help="image side in pixels for --model (default: 224)")
    m = e.add_argument_group("methods")
    m.add_argument("--methods", metavar="LIST",
                   help=f"comma-separated methods or 'all' ({', '.join(available())}; default: "
                   "saliency,ig,gbp,gradcam)")
    m.add_argument("--method-arg", action="append", metavar="METHOD.KEY=VALUE",
                   help="a method option, repeatable (e.g. ig.n_steps=16, "
                   "gradcam.layer=features.10, smoothgrad.base=gxi, saliency.abs=false, "
                   "ig.baselines=0): a declared option of the method (or a constructor "
                   "parameter such as gradcam.layer); 'none' means None")
    i = e.add_argument_group("inputs (image files, or data-set samples)")
    i.add_argument("--images", nargs="+", metavar="FILE",
                   help="PNG/JPEG files, converted to the model's channels (L or RGB), the "
                   "shorter side resized and centre-cropped to the model's input size (as "
                   "torchvision's weights.transforms(); an image already of that size is used "
                   "as it is) and normalised with its mean/std")
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
