"""Paper 04 (Distilled Gradient Aggregation, DGA) reproduced: ``attrlab reproduce dga``.

The paper (section 4) compares DGA (Algorithm 1, N = 30, q = 0.9) with G*I, GBP, IG, FullGrad
(FG) and Guided IG (GIG) on ImageNet models; here the same comparison runs on attrlab's
shipped CIFAR-10 / MNIST checkpoints:

* Table 1 (section 4.1): MoRF and LeRF, the normalised trapezoidal AUC of the target's
  softmax probability while pixels are replaced by zero (the dataset mean, in the model's
  normalised input space) in order of relevance, 0, 10, ..., 100 % removed, per model.
* Table 2 (section 4.2, eq. 13): Sensitivity-n with 100 random 14 x 14 patch masks per image
  and q = 10 .. 90 % of the patches removed, on the ResNet8 (the paper reports Table 2 for
  its ResNet-18 only).
* Figure 5 (section 4.3): ROAR on the ResNet8 at 10, 30, 50, 70, 90 % removal, retrained with
  the paper's optimiser (Adam, lr 3e-4) on a reduced budget (:data:`ROAR_TRAIN` training
  images, :data:`ROAR_EPOCHS` epochs, one seed; the paper: 50k images, 100 epochs, 10
  trials), plus the random-ranking control and the no-removal baseline. The retraining uses
  the channels-last memory format (faster on CPUs; the same arithmetic up to rounding).
* Figure 2 (section 3.1): FG, IG and DGA maps of a few test images and of the same images
  plus Gaussian noise; SSIM between the two maps and the MoRF/LeRF AUC of both.

Options shared by every experiment (paper 04 section 4 unless noted): attributions explain
the true label; IG and GIG start from the zero baseline (section 3.1, Fig. 3c). The paper's
main text gives no step counts for IG and GIG (its appendix is not in our copy), so IG
(Gauss-Legendre rule) and GIG (fraction 0.25, max_dist 0.02, the defaults of the GIG
reference code) get DGA's budget: 30 steps, i.e. about the N + 1 = 31 gradient evaluations
DGA spends. ``quick=True`` shrinks everything (see :func:`settings`) to check the pipeline.

Every experiment is resumable: Table 1 is an :mod:`attrlab.bench` run per model, Table 2 a
result store per model that shares each batch's maps over the q values and the masked
forward passes over the methods (:func:`table2`), ROAR stores its runs in its store and
Figure 2 keeps its numbers and maps as store artefacts named by content, so a second call recomputes nothing and an interrupted
one continues. The record (``record.sqlite``, exported as ``results.json``) accumulates over calls (:func:`reproduce`): ``only`` runs some
experiments, ``q_values`` some columns of Table 2, and the report shows everything measured
in the folder so far.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch

from . import common
from .common import (
    BenchConfig,
    bench,
    best_method,
    cell,
    label_summary,
    mean_curves,
    method_means,
    parse_q_values,
    pct,
    plot_lines,
    select_parts,
    write_report,
)
from .dga_paper import (  # noqa: F401 (re-exported: dga.METHODS etc.)
    DGA_N,
    DGA_Q,
    FIGURE2_METHODS,
    LABELS,
    METHODS,
    METRIC_LABELS,
    MODEL_NOTES,
    NOISE_SIGMA,
    PAPER_FIGURE5_TEXT,
    PAPER_MODEL,
    PAPER_TABLE1,
    PAPER_TABLE2,
    Q_VALUES,
    ROAR_EPOCHS,
    ROAR_FRACTIONS,
    ROAR_MODEL,
    ROAR_TRAIN,
    TABLE2_MODELS,
)
from .dga_report import (
    _calls_text,
    _figure2_section,
    _figure5_section,
    _table1_section,
    _table2_section,
)
from .noise import add_pixel_noise, noise_consistency


@dataclass(frozen=True)
class Settings:
    """Everything that sizes the reproduction (recorded in ``results.json``)."""

    limit: int                           # test images of Tables 1 and 2
    n_steps: int                         # IG and GIG steps, DGA's N
    q_values: tuple[float, ...]          # Table 2's q
    n_subsets: int                       # Table 2's random masks per image
    roar_fractions: tuple[float, ...]
    roar_train: int
    roar_test: int
    roar_epochs: int
    fig2_images: int
    noise_sigma: float
    batch_size: int


def settings(limit: int, quick: bool) -> Settings:
    """Full settings, or with ``quick`` tiny ones: at most 8 images, 5 steps, q = 10 and
    50 %, 20 masks, ROAR at 10 and 90 % on 64 training / 32 test images for 1 epoch."""
    if not isinstance(limit, int) or isinstance(limit, bool) or limit < 1:
        raise ValueError(f"limit must be a positive int, got {limit!r}")
    if quick:
        return Settings(limit=min(limit, 8), n_steps=5, q_values=(0.1, 0.5), n_subsets=20,
                        roar_fractions=(0.1, 0.9), roar_train=64, roar_test=32, roar_epochs=1,
                        fig2_images=min(limit, 2), noise_sigma=NOISE_SIGMA, batch_size=32)
    return Settings(limit=limit, n_steps=DGA_N, q_values=Q_VALUES, n_subsets=100,
                    roar_fractions=ROAR_FRACTIONS, roar_train=ROAR_TRAIN, roar_test=limit,
                    roar_epochs=ROAR_EPOCHS, fig2_images=min(limit, 10), noise_sigma=NOISE_SIGMA,
                    batch_size=32)


def method_options(n_steps: int) -> dict[str, dict[str, Any]]:
    """Options of the compared methods (module docstring): IG and GIG with ``n_steps`` steps
    from the zero baseline, DGA with N = ``n_steps`` and q = 0.9."""
    return {"ig": {"n_steps": n_steps, "internal_batch_size": 512},
            "guided_ig": {"n_steps": n_steps, "fraction": 0.25, "max_dist": 0.02},
            "dga": {"n_steps": n_steps, "q": DGA_Q}}


# ------------------------------------------------------------------------------------------
# experiments
# ------------------------------------------------------------------------------------------


def _bench_config(ckpt: str, s: Settings, metrics: dict[str, dict[str, Any]], out: Path,
                  device: str, data_dir: str | None) -> BenchConfig:
    return BenchConfig(checkpoint=ckpt, limit=s.limit, methods=list(METHODS),
                       metrics=list(metrics), method_options=method_options(s.n_steps),
                       metric_options=metrics, target="label", batch_size=s.batch_size,
                       seed=0, device=device, data_dir=data_dir, out=str(out),
                       report_samples=0)


PIXEL_PERTURBATION = {k: {"steps": 10, "baseline": "zero", "output": "prob"}
                      for k in ("morf", "lerf")}


def table1(ckpt: str, s: Settings, out: Path, device: str, data_dir: str | None,
           progress: bool) -> dict[str, Any]:
    """Table 1 on one model: per metric (morf, lerf) and method the (mean, sem) AUC and the
    mean curve, from the resumable bench run in ``out``."""
    cfg = _bench_config(ckpt, s, PIXEL_PERTURBATION, out, device, data_dir)
    with bench(cfg, progress) as store:
        return {k: {"auc": method_means(store, k), "curve": mean_curves(store, k)}
                for k in PIXEL_PERTURBATION}


TABLE2_METRIC = {"grid": 14, "baseline": "zero", "output": "logit", "seed": 0}


def table2_metric_name(q: float) -> str:
    """Table 2's store key of q (``"sensitivity_n_q60"`` for 0.6)."""
    return f"sensitivity_n_q{pct(q)}"


def table2(ckpt: str, s: Settings, out: Path, device: str, data_dir: str | None,
           progress: bool) -> dict[str, dict[str, tuple[float, float]]]:
    """Table 2 on one model: per method and q (key ``"10"`` .. ``"90"``, percent) the (mean,
    sem) Sensitivity-n correlation (:class:`attrlab.metrics.sensitivity.SensitivityN` with
    :data:`TABLE2_METRIC`, ``s.n_subsets`` masks) over the first ``s.limit`` test images.

    One pass over the images, ``s.batch_size`` at a time: each batch's maps are computed once
    for every q, and at each q the forward passes of the masked inputs are shared by the six
    methods (:meth:`SensitivityN.evaluate_many`; the masks do not depend on the method), so
    the cost is one set of maps plus ``n_subsets`` forward passes per image and q, not six.
    The scores are the same as separate ``attrlab bench`` runs with one
    ``sensitivity_n`` metric per q. Resumable: each (method, q, batch) is a unit of the
    store ``out/results.sqlite`` (:mod:`attrlab.experiments.planner`; metric name
    :func:`table2_metric_name`, options naming q, ``n_subsets`` and :data:`TABLE2_METRIC`), so
    a later call with more q values computes only those, and other settings are other units."""
    from tqdm.auto import tqdm

    from ...metrics.faithfulness.sensitivity_n import SensitivityN
    from ..bench import resolve, versions
    from ..planner import Group, Plan, Result, Unit
    from ..store import ResultStore

    cfg = _bench_config(ckpt, s, {}, out, device, data_dir)
    setup = resolve(cfg, with_metrics=False)
    metrics = {q: SensitivityN(fraction=q, n_subsets=s.n_subsets, **TABLE2_METRIC)
               for q in s.q_values}
    specs = {q: {"name": table2_metric_name(q), "options": {
        "metric": "sensitivity_n", "fraction": q, "n_subsets": s.n_subsets, **TABLE2_METRIC}}
        for q in s.q_values}
    groups = []
    for idx in setup.indices.split(s.batch_size):
        samples = tuple(idx.tolist())
        units = tuple(Unit("bench", setup.fingerprint, setup.data_spec, samples,
                           setup.method_specs[m], specs[q], cfg.seed, {"target": cfg.target})
                      for q in s.q_values for m in METHODS)
        groups.append(Group({"table2": ckpt, "samples": samples}, units))
    plan = Plan(tuple(groups))
    out.mkdir(parents=True, exist_ok=True)
    with ResultStore(out / "results.sqlite") as store:
        store.set_plan(plan)
        store.set_info("versions", versions())
        done = store.done_keys()
        for group in tqdm(plan.pending(done).groups, desc=f"table2 {ckpt}",
                          disable=not progress):
            pending = [u for u in group.units if u.key not in done]
            needed = list(dict.fromkeys(u.method_name for u in pending))
            idx = torch.tensor(group.units[0].samples, dtype=torch.long)
            x, y = setup.dataset.tensors(idx)
            x, y = x.to(device), y.to(device)
            seed = cfg.seed * 100003 + int(idx[0])  # as attrlab bench
            maps = {m: setup.methods[m].attribute(x, y, **setup.methods[m].seeded(seed)).detach()
                    for m in needed}
            for q in s.q_values:
                units = {u.method_name: u for u in pending if u.metric == specs[q]}
                if units:
                    scores = metrics[q].evaluate_many(setup.model, x, y,
                                                      {m: maps[m] for m in units})
                    for m, u in units.items():
                        store.put(u, Result(u.key, u.samples, tuple(scores[m].tolist())))
        res: dict[str, dict[str, tuple[float, float]]] = {m: {} for m in METHODS}
        for q in s.q_values:
            for m, v in method_means(store, table2_metric_name(q)).items():
                res[m][pct(q)] = v
    return res


def roar_recipe(epochs: int):
    """Section 4.3's optimiser: Adam, lr 3e-4, constant (no schedule, no weight decay, no
    augmentation: the paper names none), batch 128, for ``epochs`` epochs."""
    from ..train import Recipe

    return Recipe(optimizer="adam", lr=3e-4, weight_decay=0.0, epochs=epochs,
                  schedule="step", milestones=(), augment=False)


def figure5(s: Settings, out: Path, device: str, data_dir: str | None,
            progress: bool) -> dict[str, dict[str, float]]:
    """ROAR (section 4.3) on the ResNet8: per method (and ``random``, ``baseline``) and
    removal percentage (key ``"10"`` ..; ``"0"`` for the baseline) the test accuracy (%),
    mean over seeds, from the resumable :func:`attrlab.metrics.roar.roar` run in ``out`` on
    the first ``s.roar_train`` / ``s.roar_test`` training / test images (the CIFAR-10 loader
    deals the classes out in turn, so these are class-balanced)."""
    from ...data import load_dataset
    from ...models import load_checkpoint
    from ..roar import roar

    model, meta = load_checkpoint(ROAR_MODEL)
    model = model.to(device).eval()
    train, test = (load_dataset(meta["dataset"], split, data_dir) for split in ("train", "test"))
    opts = method_options(s.n_steps)
    # the store names each method's maps by its options: other options are other units
    specs = {m: {"name": m, "options": opts.get(m, {})} for m in METHODS}
    rows = roar(model, train, test, specs, fractions=s.roar_fractions,
                recipe=roar_recipe(s.roar_epochs), seeds=(0,), out_dir=out,
                subset=(s.roar_train, s.roar_test), progress=progress, batch_size=128,
                fit_options={"device": device, "channels_last": True})
    acc: dict[str, dict[str, list[float]]] = {}
    for r in rows:
        acc.setdefault(r["method"], {}).setdefault(pct(r["fraction"]), []).append(
            100.0 * r["accuracy"])
    return {m: {f: sum(v) / len(v) for f, v in d.items()} for m, d in acc.items()}


def figure2_key(fingerprint: Mapping[str, Any], dataset: str, s: Settings) -> dict[str, Any]:
    """What Figure 2's numbers and maps depend on (their store key, hashed by content): the
    model (:func:`attrlab.experiments.planner.model_fingerprint`), the images (data set, test
    split, the first ``s.fig2_images``), the methods with their options, the noise (sigma,
    seed) and the MoRF/LeRF metrics (their default options)."""
    opts = method_options(s.n_steps)
    return {"kind": "figure2", "model": dict(fingerprint),
            "data": {"dataset": dataset, "split": "test"},
            "samples": list(range(s.fig2_images)),
            "methods": [{"name": m, "options": opts.get(m, {})} for m in FIGURE2_METHODS],
            "noise": {"sigma": s.noise_sigma, "seed": 0}, "target": "label",
            "metrics": ["morf", "lerf", "ssim"]}


def figure2(ckpt: str, s: Settings, out: Path, device: str,
            data_dir: str | None) -> tuple[dict[str, Any], Path]:
    """Figure 2 on one model for the first ``s.fig2_images`` test images: the numbers of
    :func:`noise_consistency` for FG, IG and DGA plus the predictions on both inputs, kept as
    artefacts of the store ``out/results.sqlite`` under the content key :func:`figure2_key`
    (numbers as JSON, maps as tensors), so a later call with the same settings reuses them and
    changed settings compute anew; returns them and the PNG grid (redrawn when computed)."""
    from ...data import load_dataset
    from ...methods import get as get_method
    from ...models import load_checkpoint
    from ...viz import denormalize, plot_grid
    from ..planner import content_key, model_fingerprint
    from ..store import ResultStore

    png = out / "figure2.png"
    model, meta = load_checkpoint(ckpt)
    model = model.to(device).eval()
    data = load_dataset(meta["dataset"], "test", data_dir)
    x, y = data.tensors(torch.arange(min(s.fig2_images, len(data))))
    key = content_key(figure2_key(model_fingerprint(model, ckpt), meta["dataset"], s))
    out.mkdir(parents=True, exist_ok=True)
    with ResultStore(out / "results.sqlite") as store:
        res = store.artefact(f"figure2:{key}")
        maps = store.artefact(f"figure2-maps:{key}") if res is not None else None
        fresh = res is None or maps is None
        if fresh:
            x_noisy = add_pixel_noise(x, s.noise_sigma, meta["std"], seed=0)
            opts = method_options(s.n_steps)
            methods = {m: get_method(m, model, **opts.get(m, {})) for m in FIGURE2_METHODS}
            xd, yd, nd = x.to(device), y.to(device), x_noisy.to(device)
            scores, pairs = noise_consistency(model, methods, xd, yd, nd)
            with torch.no_grad():
                pred = model(xd).argmax(1).tolist()
                pred_noisy = model(nd).argmax(1).tolist()
            res = {"key": key, "labels": y.tolist(), "pred_clean": pred,
                   "pred_noisy": pred_noisy, "scores": scores}
            maps = {"x_noisy": x_noisy}
            for m, (a, b) in pairs.items():
                maps[f"{m}_clean"], maps[f"{m}_noisy"] = a, b
            store.put_artefact(f"figure2-maps:{key}", maps)
            store.put_artefact(f"figure2:{key}", res, kind="json")
    if fresh or not png.exists():
        grid = {}
        for m in FIGURE2_METHODS:
            grid[LABELS[m]] = maps[f"{m}_clean"]
            grid[f"{LABELS[m]} +noise"] = maps[f"{m}_noisy"]
        signed = {k: k.startswith("IG") for k in grid}
        classes = meta.get("classes") or [str(i) for i in range(meta["num_classes"])]
        rows = [f"{classes[t]} / {classes[p]}, {classes[q]}"
                for t, p, q in zip(res["labels"], res["pred_clean"], res["pred_noisy"])]
        plot_grid(denormalize(x, meta["mean"], meta["std"]), grid, signed, rows, png,
                  title=f"{ckpt}: maps of x and x + N(0, {s.noise_sigma}^2) "
                        "(rows: true / pred, pred noisy)")
    return res, png


# ------------------------------------------------------------------------------------------
# entry point
# ------------------------------------------------------------------------------------------


def evaluated_images(ckpt: str, limit: int, data_dir: str | None) -> str:
    """Which classes the first ``limit`` test images of ``ckpt``'s data set hold."""
    from ...data import load_dataset
    from ...models import load_checkpoint

    _, meta = load_checkpoint(ckpt)
    data = load_dataset(meta["dataset"], "test", data_dir)
    classes = meta.get("classes") or [str(i) for i in range(meta["num_classes"])]
    return label_summary(data.labels[:limit], classes)


def _series(curves: Mapping[str, tuple[list[float], list[float]]]) -> dict[str, tuple]:
    return {LABELS[m]: curves[m] for m in METHODS if m in curves}


PARTS = ("table1", "table2", "figure2", "figure5")


def parse_parts(only: Sequence[str] | str | None, roar: bool = True) -> tuple[str, ...]:
    """The experiments to run: ``only`` (names of :data:`PARTS`, a sequence or a
    comma-separated string; None: all), without ``figure5`` when ``roar`` is False."""
    return tuple(p for p in select_parts(only, PARTS) if roar or p != "figure5")


def load_record(out: Path, s: Settings, quick: bool) -> dict[str, Any]:
    """The record of earlier calls in ``out`` (:func:`common.load_record`; {} if none),
    refused when it was made with other settings (Table 2's q values may differ: they
    accumulate). A record older than the ``calls`` list gets one entry for all it holds, its
    device unrecorded."""
    record = common.load_record(out)
    if not record:
        return {}
    same = {k: v for k, v in json.loads(json.dumps(asdict(s))).items() if k != "q_values"}
    old = {k: v for k, v in record.get("settings", {}).items() if k != "q_values"}
    if old != same or bool(record.get("quick")) != quick:
        raise ValueError(f"{out} holds results of other settings ({old}, quick="
                         f"{record.get('quick')}); use another output folder")
    if "calls" not in record:  # made before calls were recorded: one entry says so
        present = [p for p in PARTS if record.get(p)]
        record["calls"] = [{"parts": present, "models": record.get("models", []),
                            "device": "a device not recorded",
                            "q_values": (record.get("settings", {}).get("q_values")
                                         if "table2" in present else None),
                            "finished": "time not recorded", "torch": "not recorded"}]
    return record


def reproduce(out: Path, *, limit: int = 1000, device: str = "cpu", data_dir: str | None = None,
              quick: bool = False, roar: bool = True, progress: bool = True,
              models: Sequence[str] = ("cifar10_resnet8", "cifar10_nib_vgg16", "mnist_cnn"),
              q_values: Sequence[float] | str | None = None,
              only: Sequence[str] | str | None = None) -> Path:
    """Run paper 04's experiments (module docstring: Tables 1-2, Figures 2 and 5) into
    ``out`` and return the path of ``REPORT.md`` (``results.json`` and PNG plots beside it).

    ``limit``: first test images of Tables 1 and 2 (and ROAR's test set); ``models``: shipped
    checkpoints for Table 1 and Figure 2 (Table 2 runs on those of :data:`TABLE2_MODELS`);
    ``roar``: run Figure 5 (ROAR on the ResNet8, the slowest part); ``quick``: tiny settings
    (:func:`settings`) to check the pipeline; ``q_values``: Table 2's q (fractions in (0, 1],
    a sequence or a comma-separated string such as ``"0.1,0.3,0.5"``; default 10..90 %), the
    way to shorten Table 2, its costliest part; ``only``: the experiments of :data:`PARTS`
    to run (e.g. ``"table2,figure5"``; default all).

    The report is made from ``out/results.json``, which accumulates: experiments, models and
    q values not run in this call are kept from earlier calls in ``out`` (with the same
    settings; other settings are refused), so a long reproduction can be split into parts
    and over machines (copy the folder). Everything resumes where it stopped."""
    out = Path(out)
    models = [models] if isinstance(models, str) else list(models)
    if not models:
        raise ValueError("models must name at least one checkpoint")
    parts = parse_parts(only, roar)
    s = settings(limit, quick)
    if q_values is not None:
        s = replace(s, q_values=parse_q_values(q_values))
    record = load_record(out, s, quick)
    union = list(dict.fromkeys(record.get("models", []) + models))
    evaluated = dict(record.get("evaluated_images", {}))
    evaluated.update({c: evaluated_images(c, s.limit, data_dir) for c in models
                      if c not in evaluated})  # the record has the same limit
    plots: dict[str, str] = {}

    t1 = dict(record.get("table1", {}))
    t1_curves = dict(record.get("table1_curves", {}))
    if "table1" in parts:
        for ckpt in models:
            res = table1(ckpt, s, out / f"table1_{ckpt}", device, data_dir, progress)
            t1[ckpt] = {k: res[k]["auc"] for k in PIXEL_PERTURBATION}
            t1_curves[ckpt] = {k: res[k]["curve"] for k in PIXEL_PERTURBATION}
    t1_plots = {}
    for ckpt in t1_curves:
        for k in PIXEL_PERTURBATION:
            png = plot_lines(_series(t1_curves[ckpt][k]), out / f"table1_{ckpt}_{k}.png",
                             f"{METRIC_LABELS[k]}, {ckpt}", "fraction of pixels removed",
                             "softmax probability of the label")
            t1_plots[f"{METRIC_LABELS[k]} {ckpt}"] = png.name
    plots.update(t1_plots)

    t2 = {c: {m: dict(v) for m, v in r.items()} for c, r in record.get("table2", {}).items()}
    if "table2" in parts:
        for ckpt in (m for m in models if m in TABLE2_MODELS):
            for m, per_q in table2(ckpt, s, out / f"table2_{ckpt}", device, data_dir,
                                   progress).items():
                t2.setdefault(ckpt, {}).setdefault(m, {}).update(per_q)
    measured = {k for r in t2.values() for per_q in r.values() for k in per_q}
    q_all = tuple(sorted({round(100 * q) for q in s.q_values} | {int(k) for k in measured}))
    s_report = replace(s, q_values=tuple(q / 100 for q in q_all))
    t2_plots = {}
    for ckpt, res in t2.items():
        series = {}
        for m in METHODS:
            qs = [q for q in q_all if f"{q}" in res.get(m, {})]
            series[LABELS[m]] = (qs, [res[m][f"{q}"][0] for q in qs])
        t2_plots[ckpt] = plot_lines(series, out / f"table2_{ckpt}.png",
                                    f"Sensitivity-n, {ckpt}", "q (% of patches removed)",
                                    "Pearson r").name
    plots.update({f"table2 {k}": v for k, v in t2_plots.items()})

    f2 = dict(record.get("figure2", {}))
    f2_plots = {c: record["plots"][f"figure2 {c}"] for c in f2
                if f"figure2 {c}" in record.get("plots", {})}
    if "figure2" in parts:
        for ckpt in models:
            res, png = figure2(ckpt, s, out / f"figure2_{ckpt}", device, data_dir)
            f2[ckpt] = {k: v for k, v in res.items() if k != "key"}
            f2_plots[ckpt] = str(png.relative_to(out))
    plots.update({f"figure2 {k}": v for k, v in f2_plots.items()})

    f5 = record.get("figure5")
    if "figure5" in parts:
        f5 = figure5(s, out / f"figure5_roar_{ROAR_MODEL}", device, data_dir, progress)
    if f5:
        cols = [round(100 * f) for f in s.roar_fractions]
        series = {LABELS.get(m, m): (cols, [acc[f"{c}"] for c in cols])
                  for m, acc in f5.items() if m != "baseline"}
        plots["figure5"] = plot_lines(series, out / "figure5_roar.png", f"ROAR, {ROAR_MODEL}",
                                      "% of pixels removed", "test accuracy (%)").name

    calls = list(record.get("calls", []))
    if parts:
        calls.append({"parts": list(parts), "models": models, "device": device,
                      "q_values": list(s.q_values) if "table2" in parts else None,
                      "finished": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                      "torch": str(torch.__version__)})
    results: dict[str, Any] = {"settings": asdict(s_report), "methods": list(METHODS),
                               "method_options": method_options(s.n_steps), "quick": quick,
                               "models": union, "evaluated_images": evaluated,
                               "table1": t1, "table1_curves": t1_curves, "table2": t2,
                               "figure2": f2, "calls": calls}
    if f5:
        results["figure5"] = f5
    results["plots"] = plots
    shown = [c for c in union if c in t1 or c in t2 or c in f2]
    sections = [
        f"First {s.limit} test images per model{' (quick mode)' if quick else ''}; maps "
        f"explain the true label. Methods: G*I, GBP, IG (zero baseline, {s.n_steps} "
        f"Gauss-Legendre steps), FG, GIG (zero baseline, {s.n_steps} steps, fraction 0.25, "
        f"max_dist 0.02), DGA (N = {s.n_steps}, q = {DGA_Q}, UFG local maps, eq. 12 mean). "
        "The paper gives no IG/GIG step counts in its main text; they get DGA's budget of "
        "gradient evaluations. Our models are small CIFAR-10 / MNIST networks, not the "
        "paper's ImageNet models:\n\n"
        + "\n".join(f"* {c}: {MODEL_NOTES.get(c, 'no counterpart in the paper.')} "
                    f"The tables use its first {s.limit} test images: {evaluated.get(c, '?')}."
                    for c in shown)
        + ("\n\n**Caveat**: with so few test images not every class is represented; the "
           "paper averages over the whole ImageNet validation set."
           if any(evaluated.get(c, "").startswith("only") for c in shown) else "")
        + "\n\n" + _calls_text(calls),
        _table1_section(t1, t1_plots) if t1 else
        "### Table 1: pixel perturbation\n\nNot run yet.",
        _table2_section(t2, s_report, t2_plots),
        _figure5_section(f5, s, plots["figure5"]) if f5 else
        "### Figure 5: ROAR\n\nNot run (`roar=False` or not in `only`).",
        _figure2_section(f2, s, f2_plots) if f2 else
        "### Figure 2: maps under Gaussian input noise\n\nNot run yet.",
    ]
    return write_report(out, "Paper 04 reproduced: Distilled Gradient Aggregation (DGA)",
                        sections, results)


__all__ = [
    "LABELS",
    "METHODS",
    "PAPER_TABLE1",
    "PAPER_TABLE2",
    "Settings",
    "add_pixel_noise",
    "best_method",
    "cell",
    "evaluated_images",
    "figure2",
    "figure2_key",
    "figure5",
    "label_summary",
    "method_options",
    "noise_consistency",
    "parse_parts",
    "parse_q_values",
    "load_record",
    "reproduce",
    "roar_recipe",
    "settings",
    "table1",
    "table2",
]
