"""RemOve And Retrain (ROAR; Hooker et al. 2019, "A benchmark for interpretability methods in
deep neural networks"), as run in paper 02 (InputIBA) section 4.4.3, paper 03 (PruneGrad)
section 4.5 and paper 04 (DGA) section 4.3.

For every attribution method and every fraction ``k`` (default 10, 30, 50, 70, 90 %, paper 03
section 4.5): attributions of the trained model are computed for every training and test
image; in each image the top-``k`` pixels are replaced by the image's per-channel mean
("replacing them with the average pixel value of the input", paper 04 section 4.3); a fresh
model of the same architecture is trained from scratch on the modified training set and its
accuracy on the modified test set is reported. The more the accuracy drops, the better the
method found the features the task depends on. This is not a per-sample :class:`Metric`:
:func:`roar` is an experiment driver that writes one JSON line per finished run.

Definitions (documented choices):

* Pixel importance is the attribution summed over the channels; ``round-half-up(k * H * W)``
  pixels are removed per image, all channels of a pixel together. Ties (e.g. the zero region
  of a ReLU'd map) are broken by a seeded random order, not by raster position, so that a
  constant region is not removed top rows first.
* The replacement value is the mean of each channel over the whole *original* image
  (removed pixels included), rounded to the nearest integer for uint8 images.
* Attributions explain the true label of each image (``target=labels``).
* Controls: a ``"random"`` method (i.i.d. uniform scores, fixed generator, identical for all
  seeds) -- the standard ROAR control -- and a ``"baseline"`` row per seed with fraction 0
  (no removal).
* Seeds: each seed fixes the initial weights of the retrained model (``torch.manual_seed(seed)``
  before ``attrlab.models.build(model.arch)``) and the training order (``fit(seed=seed)``);
  the initialisation is therefore shared across methods within a seed (paper 04 section 4.3:
  "random initialized at each trial and fixed between attribution methods"). The global RNG
  of the caller is restored afterwards.

Budget: ``subset`` takes the first ``n`` training and test images; ``recipe`` (for instance
``Recipe.with_epochs(e)``) sets the training; every row records ``n_train``, ``n_test``,
``epochs`` and ``full_data``, and a one-line summary stating the budget is printed.

Resume: rows are appended (and flushed) to ``out_dir/roar.jsonl`` as soon as they are
computed; a restarted call skips rows already present for the same (method, fraction,
seed, n_train, n_test, epochs). Attributions of each method are cached in
``out_dir/attr-<method>.pt`` (channel-summed float32 maps and a SHA-1 fingerprint of the
model's weights; ``torch.load(weights_only=True)``); a cache made for another model or
subset is recomputed. Delete it after changing a method's options under the same name.
``out_dir/config.json`` records the model's fingerprint and the recipe (all but the epochs);
a later call with another model or recipe is refused. Retrained models are written to
``out_dir/models/<method>-<fraction>-seed<seed>-<n_train>x<n_test>-<epochs>ep.pt`` by
:func:`attrlab.train.fit`, which resumes an interrupted training from its ``.partial`` file;
a finished checkpoint whose row was not yet written is evaluated instead of retrained.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import torch
from torch import Tensor, nn

from ..data import NormalizedDataset
from ..models import build
from . import train as _train

FRACTIONS = (0.1, 0.3, 0.5, 0.7, 0.9)
RESERVED = ("random", "baseline")


# --------------------------------------------------------------------------------------------
# Removing the top pixels
# --------------------------------------------------------------------------------------------


def _n_removed(fraction: float, pixels: int) -> int:
    if not (isinstance(fraction, (int, float)) and 0.0 <= fraction <= 1.0):
        raise ValueError(f"fraction must be in [0, 1], got {fraction!r}")
    return min(pixels, int(math.floor(fraction * pixels + 0.5 + 1e-9)))


def pixel_scores(attributions: Tensor) -> Tensor:
    """(N, C, H, W) or (N, H, W) attributions -> (N, H, W) per-pixel scores (channel sum)."""
    if attributions.dim() == 4:
        return attributions.float().sum(1)
    if attributions.dim() == 3:
        return attributions.float()
    raise ValueError(f"attributions must be (N, C, H, W) or (N, H, W), got "
                     f"{tuple(attributions.shape)}")


def remove_top(images: Tensor, attributions: Tensor, fraction: float, replacement: str = "mean",
               seed: int = 0) -> Tensor:
    """Replace the top ``fraction`` of the pixels of each image by the image's per-channel mean.

    ``images``: (N, C, H, W), uint8 or floating; returned in the same dtype (a new tensor).
    ``attributions``: (N, C, H, W) or (N, H, W); a pixel's score is the sum over channels.
    ``round-half-up(fraction * H * W)`` pixels are replaced per image, all channels together.
    Ties are broken by a random order drawn from ``seed``. ``replacement="mean"`` is the mean
    of each channel over the original image (rounded for uint8), the only option (paper 04,
    section 4.3).
    """
    if replacement != "mean":
        raise ValueError(f"replacement must be 'mean', got {replacement!r}")
    if not isinstance(images, Tensor) or images.dim() != 4:
        raise ValueError("images must be a (N, C, H, W) tensor")
    scores = pixel_scores(attributions)
    n, c, h, w = images.shape
    if scores.shape != (n, h, w):
        raise ValueError(f"attributions of shape {tuple(attributions.shape)} do not match "
                         f"images of shape {tuple(images.shape)}")
    if not torch.isfinite(scores).all():
        raise ValueError("attributions contain NaN or inf values")
    k = _n_removed(fraction, h * w)
    out = images.clone()
    if k == 0:
        return out
    flat = scores.reshape(n, h * w).to(images.device)
    # random tie-break: sort a random permutation of the pixels stably by descending score
    gen = torch.Generator().manual_seed(seed)
    perm = torch.argsort(torch.rand(n, h * w, generator=gen), dim=1).to(flat.device)
    order = torch.argsort(flat.gather(1, perm), dim=1, descending=True, stable=True)
    top = perm.gather(1, order[:, :k])
    mask = torch.zeros(n, h * w, dtype=torch.bool, device=flat.device)
    mask.scatter_(1, top, True)
    mask = mask.view(n, 1, h, w)
    mean = images.double().mean((2, 3), keepdim=True)
    if not images.is_floating_point():
        mean = mean.round()
    return torch.where(mask, mean.to(images.dtype).expand_as(images), out)


# --------------------------------------------------------------------------------------------
# The experiment
# --------------------------------------------------------------------------------------------


def _safe(name: str) -> str:
    if not re.fullmatch(r"[A-Za-z0-9_.+-]+", name):
        raise ValueError(f"method name {name!r} must use only letters, digits and _ . + -")
    return name


def _head(ds: NormalizedDataset, n: int) -> NormalizedDataset:
    if n == len(ds):
        return ds
    return NormalizedDataset(ds.images[:n], ds.labels[:n], ds.info)


def _budget(subset: Any, n_train: int, n_test: int) -> tuple[int, int]:
    if subset is None:
        return n_train, n_test
    if isinstance(subset, int):
        subset = (subset, subset)
    if (not isinstance(subset, (tuple, list)) or len(subset) != 2
            or not all(isinstance(s, int) and s > 0 for s in subset)):
        raise ValueError(f"subset must be a positive int or (n_train, n_test), got {subset!r}")
    return min(subset[0], n_train), min(subset[1], n_test)


def _device(model: nn.Module) -> torch.device:
    p = next(model.parameters(), None)
    return p.device if p is not None else torch.device("cpu")


def compute_scores(model: nn.Module, factory: Callable[[nn.Module], Any], data: NormalizedDataset,
                   batch_size: int = 256, progress: bool = False, desc: str = "") -> Tensor:
    """Per-pixel scores (N, H, W) of the method ``factory(model)`` for all of ``data``,
    explaining the true labels, ``batch_size`` images at a time. The factory may return an
    :class:`~attrlab.methods.Attribution` (``.attribute(x, target=y)`` is called) or any
    callable ``(x, y) -> maps`` (to pass call options such as DeepSHAP baselines)."""
    from tqdm.auto import tqdm

    method = factory(model)
    if hasattr(method, "attribute"):
        def call(x: Tensor, y: Tensor) -> Tensor:
            return method.attribute(x, target=y)
    elif callable(method):
        call = method
    else:
        raise TypeError(f"the factory returned {type(method).__name__}, neither an Attribution "
                        "nor a callable (x, y) -> maps")
    dev = _device(model)
    out = []
    for i in tqdm(range(0, len(data), batch_size), desc=desc, disable=not progress, leave=False):
        x, y = data.tensors(torch.arange(i, min(i + batch_size, len(data))))
        maps = call(x.to(dev), y.to(dev))
        out.append(pixel_scores(maps.detach()).cpu())
    return torch.cat(out)


def model_fingerprint(model: nn.Module) -> str:
    """SHA-1 of the model's state dict (names, dtypes, shapes and values)."""
    h = hashlib.sha1()
    for name, v in model.state_dict().items():
        t = v.detach().cpu().contiguous()
        h.update(f"{name}:{t.dtype}:{tuple(t.shape)}".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def _random_scores(data: NormalizedDataset, split: str) -> Tensor:
    n, _, h, w = data.images.shape
    gen = torch.Generator().manual_seed(0 if split == "train" else 1)
    return torch.rand(n, h, w, generator=gen)


def _load_rows(path: Path) -> list[dict]:
    rows = []
    if path.exists():
        for line in path.read_text().splitlines():
            line = line.strip()
            if not line:
                continue
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:  # a line cut by a crash: ignore it
                continue
    return rows


def _key(row: Mapping) -> tuple:
    return (row["method"], round(float(row["fraction"]), 6), int(row["seed"]), int(row["n_train"]),
            int(row["n_test"]), int(row["epochs"]))


def roar(model: nn.Module, train_ds: NormalizedDataset, test_ds: NormalizedDataset,
         method_factories: Mapping[str, Callable[[nn.Module], Any]],
         fractions: Sequence[float] = FRACTIONS, recipe: _train.Recipe | None = None,
         seeds: Sequence[int] = (0,), out_dir: str | os.PathLike = "roar",
         subset: int | tuple[int, int] | None = None, progress: bool = True,
         include_random: bool = True, include_baseline: bool = True, batch_size: int = 256,
         fit_options: Mapping[str, Any] | None = None) -> list[dict]:
    """Run ROAR and return one row per (method, fraction, seed):
    ``{method, fraction, seed, accuracy, n_train, n_test, epochs, full_data}``.

    ``model``: the trained model (attributions are computed with it; the retrained models
    are built from ``model.arch``). ``method_factories``: name -> ``factory(model)``
    returning an Attribution or a callable ``(x, y) -> maps``; ``"random"`` and
    ``"baseline"`` are reserved for the controls added by ``include_random`` and
    ``include_baseline``. ``recipe``: training of the retrained models (default
    ``PRESETS["paper01"]``). ``subset``: first n (or (n_train, n_test)) images.
    ``fit_options``: extra keyword arguments for :func:`attrlab.train.fit`.
    Rows already in ``out_dir/roar.jsonl`` are returned without recomputation.
    """
    from tqdm.auto import tqdm

    if not hasattr(model, "arch"):
        raise ValueError("model has no .arch: ROAR retrains a fresh model built from model.arch")
    for name in method_factories:
        _safe(name)
        if name in RESERVED:
            raise ValueError(f"method name {name!r} is reserved for the ROAR controls")
    fractions = [float(f) for f in fractions]
    for f in fractions:
        _n_removed(f, 1)
    if not seeds:
        raise ValueError("seeds must not be empty")
    recipe = recipe or _train.PRESETS["paper01"]
    out_dir = Path(out_dir)
    (out_dir / "models").mkdir(parents=True, exist_ok=True)
    n_train, n_test = _budget(subset, len(train_ds), len(test_ds))
    train_s, test_s = _head(train_ds, n_train), _head(test_ds, n_test)
    budget = {"n_train": n_train, "n_test": n_test, "epochs": recipe.epochs,
              "full_data": n_train == len(train_ds) and n_test == len(test_ds)}

    jobs: list[tuple[str, float, int]] = []
    if include_baseline:
        jobs += [("baseline", 0.0, s) for s in seeds]
    names = list(method_factories) + (["random"] if include_random else [])
    jobs += [(m, f, s) for m in names for f in fractions for s in seeds]

    fingerprint = model_fingerprint(model)
    _check_config(out_dir, recipe, fingerprint)
    log = out_dir / "roar.jsonl"
    done = {_key(r): r for r in _load_rows(log)}
    todo = [(m, f, s) for m, f, s in jobs
            if _key({"method": m, "fraction": f, "seed": s, **budget}) not in done]
    print(f"ROAR budget: {n_train}/{len(train_ds)} training and {n_test}/{len(test_ds)} test "
          f"images, {recipe.epochs} epochs ({recipe.optimizer}, lr {recipe.lr}, batch "
          f"{recipe.batch_size}); {len(names)} methods x {len(fractions)} fractions x "
          f"{len(seeds)} seeds + {len(seeds) if include_baseline else 0} baselines; "
          f"{len(jobs) - len(todo)} of {len(jobs)} runs already in {log}", file=sys.stderr)

    scores: dict[str, tuple[Tensor, Tensor]] = {}

    def scores_of(method: str) -> tuple[Tensor, Tensor]:
        if method in scores:
            return scores[method]
        if method == "random":
            scores[method] = (_random_scores(train_s, "train"), _random_scores(test_s, "test"))
            return scores[method]
        cache = out_dir / f"attr-{method}.pt"
        if cache.exists():
            blob = torch.load(cache, weights_only=True)
            if (blob.get("model") == fingerprint and blob["train"].shape[0] == n_train
                    and blob["test"].shape[0] == n_test):
                scores[method] = (blob["train"], blob["test"])
                return scores[method]
        factory = method_factories[method]
        tr = compute_scores(model, factory, train_s, batch_size, progress, f"{method} train")
        te = compute_scores(model, factory, test_s, batch_size, progress, f"{method} test")
        tmp = cache.with_suffix(".tmp")
        torch.save({"train": tr, "test": te, "model": fingerprint}, tmp)
        os.replace(tmp, cache)
        scores[method] = (tr, te)
        return scores[method]

    rows_by_key = dict(done)
    bar = tqdm(todo, desc="ROAR", disable=not progress)
    for method, fraction, seed in bar:
        bar.set_postfix(method=method, fraction=fraction, seed=seed)
        if method == "baseline":
            tr_ds, te_ds = train_s, test_s
        else:
            tr_sc, te_sc = scores_of(method)
            tr_ds = NormalizedDataset(remove_top(train_s.images, tr_sc, fraction), train_s.labels,
                                      train_s.info)
            te_ds = NormalizedDataset(remove_top(test_s.images, te_sc, fraction), test_s.labels,
                                      test_s.info)
        acc = _retrain(model.arch, tr_ds, te_ds, recipe, seed,
                       out_dir / "models" / (f"{method}-{fraction:g}-seed{seed}-"
                                             f"{n_train}x{n_test}-{recipe.epochs}ep.pt"),
                       {"method": method, "fraction": fraction, **budget}, progress,
                       dict(fit_options or {}))
        row = {"method": method, "fraction": fraction, "seed": seed, "accuracy": acc, **budget}
        with open(log, "a") as fh:
            fh.write(json.dumps(row) + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        rows_by_key[_key(row)] = row
    return [rows_by_key[_key({"method": m, "fraction": f, "seed": s, **budget})]
            for m, f, s in jobs]


def _check_config(out_dir: Path, recipe: _train.Recipe, fingerprint: str) -> None:
    """One output directory belongs to one trained model and one recipe (up to the number of
    epochs, which is part of every row's key): refuse to mix results otherwise."""
    rec = {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(recipe).items()
           if k not in ("epochs", "milestones")}
    config = {"model": fingerprint, "recipe": rec}
    path = out_dir / "config.json"
    if path.exists():
        old = json.loads(path.read_text())
        if old != json.loads(json.dumps(config)):
            what = [k for k in config if old.get(k) != json.loads(json.dumps(config))[k]]
            raise ValueError(f"{out_dir} holds ROAR results for another {' and '.join(what)} "
                             f"(see {path}); use a new out_dir")
        return
    path.write_text(json.dumps(config, indent=1) + "\n")


def _retrain(arch: dict, train_ds: NormalizedDataset, test_ds: NormalizedDataset,
             recipe: _train.Recipe, seed: int, out: Path, roar_meta: dict, progress: bool,
             fit_options: dict) -> float:
    """Train a fresh ``build(arch)`` (initialised under ``seed``) and return its test
    accuracy; reuse a finished checkpoint written for the same run."""
    with torch.random.fork_rng(devices=[]):
        if out.exists():
            blob = torch.load(out, weights_only=True)
            meta = blob["meta"]
            if meta.get("roar") == roar_meta and meta.get("seed") == seed:
                fresh = build(arch)
                fresh.load_state_dict({k: v.float() if v.is_floating_point() else v
                                       for k, v in blob["state_dict"].items()})
                return _train.accuracy(fresh, test_ds)
        torch.manual_seed(seed)
        fresh = build(arch)
        meta = _train.fit(fresh, train_ds, test_ds, recipe, out, seed=seed, progress=progress,
                          meta={"roar": roar_meta}, **fit_options)
    return float(meta["test_accuracy"])
