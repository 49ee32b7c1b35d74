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
:func:`roar` is an experiment driver that stores one unit per finished run.

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

Resume: every (method, fraction, seed) run is a unit of the store ``out_dir/results.sqlite``
(:mod:`attrlab.experiments.store`), named by content: the model's weights (SHA-1), the
training and test images used (SHA-1 of the subset's images and labels), the method and its
options, the fraction, the seed, the recipe and the fit options. Its test accuracy is stored
(as the unit's score of sample -1) as soon as it is computed; a restarted call skips units
already done, and any change of those settings makes new units (nothing stale is reused, no
folder is refused). Attributions of each method are stored as artefacts keyed by model, data
and method + options (channel-summed float32 maps, ``torch.load(weights_only=True)``).
Methods given as a spec ``{"name": registered method, "options": {...}}`` are named by their
options; a method given as a factory callable is named by its entry name only (pass a spec
to have changed options recomputed). Retrained models are written to
``out_dir/models/<method>-<fraction>-seed<seed>-<n_train>x<n_test>-<epochs>ep-<unit>.pt`` by
:func:`attrlab.train.fit`, which resumes an interrupted training from its ``.partial`` file;
a finished checkpoint whose score was not yet stored is evaluated instead of retrained.
:func:`stored_rows` reads the rows of the last call back from the store.
"""

from __future__ import annotations

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
from .planner import Group, Plan, Result, Unit, state_dict_sha1, tensor_digest
from .store import ResultStore

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
    return state_dict_sha1(model)


def _random_scores(data: NormalizedDataset, split: str) -> Tensor:
    n, _, h, w = data.images.shape
    gen = torch.Generator().manual_seed(0 if split == "train" else 1)
    return torch.rand(n, h, w, generator=gen)


def _data_id(ds: NormalizedDataset) -> dict[str, Any]:
    return {"n": len(ds), "images": tensor_digest(ds.images), "labels": tensor_digest(ds.labels)}


def _method_spec(name: str, entry: Any) -> dict[str, Any]:
    """The content of a method entry: a spec's name and options, or the entry name alone for
    a factory callable."""
    if isinstance(entry, Mapping):
        if set(entry) - {"name", "options"} or "name" not in entry:
            raise ValueError(f"method {name!r}: a spec is {{'name': ..., 'options': {{...}}}}, "
                             f"got keys {sorted(entry)}")
        return {"name": str(entry["name"]), "options": dict(entry.get("options") or {})}
    if not callable(entry):
        raise TypeError(f"method {name!r}: give a factory callable or a spec dict, got "
                        f"{type(entry).__name__}")
    return {"name": name, "factory": True}


def _build(model: nn.Module, spec: dict[str, Any], train_ds: NormalizedDataset) -> Any:
    """The method of a spec on ``model``, fitted on ``train_ds`` if it needs data; what the
    fit learned is added to the spec (``"state"``), so it names the stored maps."""
    from ..methods import get
    from ..methods.options import check_options
    from .fitting import fit_methods

    method = get(spec["name"], model, **check_options(spec["name"], spec["options"]))
    fit_methods({spec["name"]: method}, train_ds, "the training set")
    if method.needs_data:
        spec["state"] = method.state_dict()
    return method


def _row(unit: Unit, accuracy: float) -> dict:
    e = unit.extra
    return {"method": e["method"], "fraction": e["fraction"], "seed": unit.seed,
            "accuracy": accuracy, "n_train": e["n_train"], "n_test": e["n_test"],
            "epochs": e["epochs"], "full_data": e["full_data"]}


def stored_rows(out_dir: str | os.PathLike) -> list[dict]:
    """The rows of the last :func:`roar` call in ``out_dir`` that are stored, in its order."""
    path = Path(out_dir) / "results.sqlite"
    if not path.exists():
        return []
    with ResultStore(path) as store:
        units = {u.key: u for u in store.units()}
        rows = []
        for key in store.plan_keys() or []:
            got = store.unit_scores(key)
            if got and key in units:
                rows.append(_row(units[key], got[0][1]))
    return rows


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
    are built from ``model.arch``). ``method_factories``: name -> a spec ``{"name":
    registered method, "options": {...}}`` (named by its options in the store) or a
    ``factory(model)`` returning an Attribution or a callable ``(x, y) -> maps`` (named by
    the entry name only); ``"random"`` and
    ``"baseline"`` are reserved for the controls added by ``include_random`` and
    ``include_baseline``. ``recipe``: training of the retrained models (default
    ``PRESETS["paper01"]``). ``subset``: first n (or (n_train, n_test)) images.
    ``fit_options``: extra keyword arguments for :func:`attrlab.train.fit` (all but
    ``device`` and ``channels_last`` name the units).
    Runs already stored in ``out_dir/results.sqlite`` are returned without recomputation.
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

    specs = {m: _method_spec(m, e) for m, e in method_factories.items()}
    factories = {}
    for m, e in method_factories.items():
        if isinstance(e, Mapping):
            built = _build(model, specs[m], train_ds)
            factories[m] = lambda mdl, built=built: built
        else:
            factories[m] = e
    jobs: list[tuple[str, float, int]] = []
    if include_baseline:
        jobs += [("baseline", 0.0, s) for s in seeds]
    names = list(method_factories) + (["random"] if include_random else [])
    jobs += [(m, f, s) for m in names for f in fractions for s in seeds]

    fingerprint = model_fingerprint(model)
    data = {"train": _data_id(train_s), "test": _data_id(test_s)}
    rec = {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(recipe).items()}
    training = {"recipe": rec, "fit_options": {k: v for k, v in (fit_options or {}).items()
                                               if k not in ("device", "channels_last")}}

    def unit_of(method: str, fraction: float, seed: int) -> Unit:
        spec = specs.get(method, {"name": method, "options": {}})
        return Unit("roar", {"sha1": fingerprint}, data, (), spec,
                    {"name": "roar", "options": {"fraction": fraction, **training}}, seed,
                    {"method": method, "fraction": fraction, **budget})

    units = [unit_of(*job) for job in jobs]
    plan = Plan(tuple(Group({"unit": u.key}, (u,)) for u in units))
    store_path = out_dir / "results.sqlite"
    with ResultStore(store_path) as store:
        store.set_plan(plan)
        done = store.done_keys()
        todo = [(u, job) for u, job in zip(units, jobs) if u.key not in done]
        print(f"ROAR budget: {n_train}/{len(train_ds)} training and {n_test}/{len(test_ds)} "
              f"test images, {recipe.epochs} epochs ({recipe.optimizer}, lr {recipe.lr}, batch "
              f"{recipe.batch_size}); {len(names)} methods x {len(fractions)} fractions x "
              f"{len(seeds)} seeds + {len(seeds) if include_baseline else 0} baselines; "
              f"{len(jobs) - len(todo)} of {len(jobs)} runs already in {store_path}",
              file=sys.stderr)

        scores: dict[str, tuple[Tensor, Tensor]] = {}

        def scores_of(method: str) -> tuple[Tensor, Tensor]:
            if method in scores:
                return scores[method]
            if method == "random":
                scores[method] = (_random_scores(train_s, "train"),
                                  _random_scores(test_s, "test"))
                return scores[method]
            key = {"kind": "roar-maps", "model": fingerprint, "data": data,
                   "method": specs[method]}
            blob = store.artefact(key)
            if blob is None:
                factory = factories[method]
                tr = compute_scores(model, factory, train_s, batch_size, progress,
                                    f"{method} train")
                te = compute_scores(model, factory, test_s, batch_size, progress,
                                    f"{method} test")
                blob = {"train": tr, "test": te}
                store.put_artefact(key, blob)
            scores[method] = (blob["train"], blob["test"])
            return scores[method]

        bar = tqdm(todo, desc="ROAR", disable=not progress)
        for unit, (method, fraction, seed) in bar:
            bar.set_postfix(method=method, fraction=fraction, seed=seed)
            if method == "baseline":
                tr_ds, te_ds = train_s, test_s
            else:
                tr_sc, te_sc = scores_of(method)
                tr_ds = NormalizedDataset(remove_top(train_s.images, tr_sc, fraction),
                                          train_s.labels, train_s.info)
                te_ds = NormalizedDataset(remove_top(test_s.images, te_sc, fraction),
                                          test_s.labels, test_s.info)
            ckpt = out_dir / "models" / (f"{method}-{fraction:g}-seed{seed}-{n_train}x{n_test}-"
                                         f"{recipe.epochs}ep-{unit.key[:12]}.pt")
            acc = _retrain(model.arch, tr_ds, te_ds, recipe, seed, ckpt,
                           {"method": method, "fraction": fraction, "unit": unit.key,
                            **budget}, progress, dict(fit_options or {}))
            store.put(unit, Result(unit.key, (-1,), (float(acc),)))
        accuracy = {u.key: store.unit_scores(u.key)[0][1] for u in units}
    return [_row(u, accuracy[u.key]) for u in units]


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
