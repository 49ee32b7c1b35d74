"""Attribution maps of a classifier for some inputs, as a picture and as arrays (what
``attrlab explain`` writes).

Everything the command does is available from Python::

    from attrlab.models.loading import load_model
    from attrlab.experiments.explain import load_samples, explain
    model, meta = load_model("digits_nib_cnn")
    x, labels, info = load_samples("digits", indices=[0, 5, 9])
    maps = explain(model, x, labels, ["saliency", "ig"], {"ig": {"n_steps": 16}},
                   "out", meta)

Defaults of methods that need data:

* ``deepshap`` needs a batch of baselines. Unless ``--method-arg deepshap.baselines=V`` is
  given, it is fitted on 16 samples drawn (seed 0) from the **train split** of
  the data set when one is available (the ``--dataset``, or the checkpoint's data set when
  ``--images`` are explained and that data set can be loaded); otherwise 16 **uniform-noise
  images** (pixels uniform in [0, 1], normalised like the inputs, seed 0).
* ``gradcam`` without ``gradcam.layer`` uses the output of the model's last feature block
  (the method's own default, e.g. ``layer4`` on a ResNet; printed); ``smoothgrad`` without ``smoothgrad.base`` smooths ``saliency``.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import torch
from torch import Tensor, nn

from ..core.checks import one_line
from .fitting import fit_methods, reference_data

PNG_NAME = "explain.png"
NPZ_NAME = "attributions.npz"
#: Layers used (Grad-CAM's), seconds and options per method.
JSON_NAME = "explain.json"
# Arrays of attributions.npz that are not methods.
NPZ_FIXED = ("inputs", "labels", "preds", "targets")


def load_samples(dataset: str, indices: Sequence[int] | None = None, n: int = 6,
                 data_dir: str | None = None):
    """Test samples of a registered data set: the given ``indices`` or the first ``n``.

    Returns ``(x, labels, info)``: the normalised batch, its labels and the DatasetInfo.
    """
    from ..data import load_dataset

    ds = load_dataset(dataset, "test", data_dir)
    if indices is None:
        if n < 1:
            raise ValueError(f"--n must be positive, got {n}")
        indices = list(range(min(n, len(ds))))
    bad = [i for i in indices if not 0 <= i < len(ds)]
    if bad:
        raise ValueError(f"index {bad[0]} out of range: the {dataset} test split has {len(ds)} "
                        f"samples (0..{len(ds) - 1})")
    x, labels = ds.tensors(torch.tensor(list(indices), dtype=torch.long))
    return x, labels, ds.info


def class_name(meta: Mapping[str, Any], k: int) -> str:
    classes = meta.get("classes") or ()
    return str(classes[k]) if 0 <= k < len(classes) else str(k)


def row_titles(preds: Tensor, labels: Tensor, meta: Mapping[str, Any]) -> list[str]:
    """``"pred P / true T"`` per sample, with class names where meta has them (``"pred P"``
    for an unknown label, -1)."""
    return [f"pred {class_name(meta, int(p))}" + (f" / true {class_name(meta, int(t))}"
                                                   if int(t) >= 0 else "")
            for p, t in zip(preds, labels)]


@dataclass
class MethodRun:
    """What :func:`attribute_all` computed: maps (on the CPU), whether each is signed, the
    built methods, seconds per method and the layer each layer-based method used."""

    maps: dict[str, Tensor]
    signed: dict[str, bool]
    methods: dict[str, Any]
    seconds: dict[str, float]
    layers: dict[str, str]
    notes: list[str] = field(default_factory=list)


def attribute_all(model: nn.Module, x: Tensor, targets: Tensor, method_names: Sequence[str],
                  method_options: Mapping[str, Mapping[str, Any]] | None,
                  meta: Mapping[str, Any], reference: Any = None, progress: bool = False,
                  seed: int = 0) -> MethodRun:
    """Build every method of ``method_names`` on ``model`` (options checked first), fit those
    that need data on ``reference`` (default: 16 uniform-noise images normalised with
    ``meta``'s mean/std) and attribute ``x`` to ``targets`` with each; random methods draw
    from a generator seeded with ``seed``. Errors name the method."""
    import time

    from tqdm.auto import tqdm

    from .. import methods
    from ..methods.options import check_options

    method_options = method_options or {}
    unknown = [m for m in method_names if m not in methods.available()]
    if unknown:
        raise ValueError(f"unknown method {unknown[0]!r}; available: "
                        f"{', '.join(methods.available())}")
    options = {m: check_options(m, method_options.get(m, {})) for m in method_names}
    built = {}  # constructors validate their options (a layer name, ...) before any work
    for name in method_names:
        try:
            built[name] = methods.get(name, model, **options[name])
        except (RuntimeError, TypeError) as err:
            raise ValueError(f"method {name}: {one_line(err)}") from err
    notes = []
    if any(m.needs_data for m in built.values()):
        data, what = (reference, "the given reference data") if reference is not None \
            else reference_data(x.cpu(), meta)
        if isinstance(data, Tensor):
            data = data.to(x.device)
        notes = fit_methods(built, data, what)
    maps: dict[str, Tensor] = {}
    signed: dict[str, bool] = {}
    seconds: dict[str, float] = {}
    bar = tqdm(method_names, desc="explain", unit="method", disable=not progress,
               file=sys.stderr)
    with bar:
        for name in bar:
            bar.set_postfix_str(name)
            method = built[name]
            start = time.perf_counter()
            try:
                a = method.attribute(x, target=targets.to(x.device), **method.seeded(seed))
            except RuntimeError as err:
                raise ValueError(f"method {name} failed: {one_line(err)}") from err
            except TypeError as err:
                raise ValueError(f"method {name}: {one_line(err)}") from err
            maps[name] = a.detach().float().cpu()
            seconds[name] = time.perf_counter() - start
            signed[name] = bool(method.signed)
    layers = {k: str(m.layer_name) for k, m in built.items()
              if getattr(m, "layer_name", None) is not None}
    return MethodRun(maps, signed, built, seconds, layers, notes)


def explain(model: nn.Module, x: Tensor, labels: Tensor | None, method_names: Sequence[str],
            method_options: Mapping[str, Mapping[str, Any]] | None, out_dir: str | Path,
            meta: Mapping[str, Any], target: int | None = None,
            reference: Any = None, overlay: bool = False,
            progress: bool = True, seed: int = 0) -> dict[str, Tensor]:
    """Attribute ``x`` (normalised (N, C, H, W)) with every method in ``method_names`` and write
    ``out_dir/explain.png``, ``out_dir/attributions.npz`` and ``out_dir/explain.json`` (the
    layer each layer-based method used, seconds and options per method); returns
    {method: map}.

    ``labels`` are the true classes (-1 or None: unknown). The explained class is ``target``
    if given, else the true label where known, else the predicted class.
    ``method_options`` maps a method to its options (see
    :func:`~attrlab.methods.options.check_options`). Methods that need data (DeepSHAP) are
    fitted on ``reference`` (a data set or a tensor batch; default: 16 uniform-noise images,
    see :func:`~attrlab.experiments.fitting.reference_data`) unless their options carry the
    data. ``meta`` needs ``mean``/``std`` (for display) and optionally ``classes`` and
    ``num_classes``. Random methods (``smoothgrad``) draw from a ``torch.Generator`` seeded
    with ``seed``, so results repeat and the caller's RNG is untouched.
    """
    from ..viz import denormalize, plot_grid

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
    preds = logits.argmax(1).cpu()
    if target is not None:
        if not 0 <= target < num_classes:
            raise ValueError(f"--target {target} out of range: the model has {num_classes} "
                            f"classes (0..{num_classes - 1})")
        targets = torch.full((n,), target, dtype=torch.long)
    else:
        targets = torch.where(labels >= 0, labels, preds)
    run = attribute_all(model, x, targets, method_names, method_options, meta,
                        reference=reference, progress=progress, seed=seed)
    maps, signed = run.maps, run.signed

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    arrays = {"inputs": x.cpu().numpy(), "labels": labels.numpy(), "preds": preds.numpy(),
              "targets": targets.numpy()}
    arrays.update({k: v.numpy() for k, v in maps.items()})
    np.savez_compressed(out / NPZ_NAME, **arrays)
    record = {"layers": run.layers, "seconds": run.seconds, "notes": run.notes,
              "options": {k: {o: repr(v) for o, v in m.bound_options.items()}
                          for k, m in run.methods.items()}}
    (out / JSON_NAME).write_text(json.dumps(record, indent=2), encoding="utf-8")

    if target is not None:
        what = f"maps explain class {class_name(meta, target)}"
    elif bool((labels >= 0).all()):
        what = "maps explain the true class"
    elif bool((labels < 0).all()):
        what = "maps explain the predicted class"
    else:
        what = "maps explain the true class (predicted where unknown)"
    images = denormalize(x.cpu(), meta["mean"], meta["std"])
    from ..viz import CELL_INCHES

    cell = CELL_INCHES if x.shape[-1] < 64 else 2.2  # photos get larger cells
    # layer-based methods' columns name the layer they used, e.g. "gradcam (layer4)"
    shown = {f"{k} ({run.layers[k]})" if k in run.layers else k: k for k in maps}
    plot_grid(images, {t: maps[k] for t, k in shown.items()},
              {t: signed[k] for t, k in shown.items()}, row_titles(preds, labels, meta),
              out / PNG_NAME, overlay=overlay, title=what, cell_inches=cell)
    return maps
