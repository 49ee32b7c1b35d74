"""Paper 03 (PruneGrad / PrunePGD) reproduced: ``attrlab reproduce prunegrad``.

On the shipped CIFAR-10 ResNet8 (the paper's model, width 32) for Gradient (``saliency``),
GxI, IG, GBP, RectGrad, Grad-CAM, PruneGrad and PrunePGD:

* Calibration (section 4.1): the CIFAR-10 training split is split 90/10; the pruning
  percentage of every output-change threshold is chosen by ``PruneGrad.fit`` on the first
  ``calibration_samples`` images of the last 10 % (the percentage whose mean relative change
  of the predicted logit equals the threshold). PrunePGD uses the same percentage.
* Figure 4a: absolute fractional change of the true class's logit when the least important
  pixels are removed first (``lerf_change``: 10 %, ..., 90 % of the pixels set to 0 in the
  normalised input, i.e. the data set mean), on the first ``limit`` test images.
* Figure 4b: ROAR at k = 10, 30, 50, 70, 90 % (:func:`attrlab.experiments.roar.roar`: top-k
  pixels replaced by the image mean, a fresh ResNet8 retrained per method, k and seed) with the
  random-removal control, mean and spread over ``roar_seeds``.
* Figure 2: cascading parameter randomisation from the last block to the first (steps: fc,
  layer3, layer2, layer1, the stem conv1; N(0, 0.01) as section 4.2), Spearman rank
  correlation signed and absolute and SSIM of maps normalised to [-1, 1].
* Figures 11, 12a and 6: PruneGrad and PrunePGD at output-change thresholds 5, 10, 15, 20,
  30 %: the sanity checks, LeRF and a visual grid.

Every run goes through the resumable :mod:`attrlab.bench` store and the ROAR store; the
calibrations are artefacts of ``out/calibration.sqlite`` keyed by content, so an interrupted
reproduction continues where it stopped.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from .common import (
    BenchConfig,
    bench,
    fmt,
    markdown_table,
    mean_curves,
    mean_sem,
    method_means,
    parse_q_values,
    plot_lines,
    replace,
    write_report,
)

CHECKPOINT = "cifar10_resnet8"
METHODS = ("saliency", "gxi", "ig", "gbp", "rectgrad", "gradcam", "prunegrad", "prunepgd")
LABELS = {"saliency": "Gradient", "gxi": "GxI", "ig": "IG", "gbp": "GBP",
          "rectgrad": "RectGrad", "gradcam": "Grad-CAM", "prunegrad": "PruneGrad",
          "prunepgd": "PrunePGD", "random": "random", "baseline": "no removal"}
PRUNING = ("prunegrad", "prunepgd")
THRESHOLDS = (0.05, 0.10, 0.15, 0.20, 0.30)
DEFAULT_THRESHOLD = 0.15
ROAR_FRACTIONS = (0.1, 0.3, 0.5, 0.7, 0.9)
CASCADE = ["fc", "layer3", "layer2", "layer1", "conv1"]
SANITY = ("sanity_spearman", "sanity_spearman_abs", "sanity_ssim")

# The paper's claims (its figures are plots without numbers), checked against ours.
CLAIMS = {
    "figure4a": "PruneGrad and PrunePGD have the lowest LeRF output change (Fig. 4a).",
    "figure4b": "Grad-CAM, PruneGrad and PrunePGD drop ROAR accuracy the most; IG the least "
                "(Fig. 4b).",
    "figure2": "PruneGrad and PrunePGD are less similar after randomisation than GBP, "
               "RectGrad, IG and GxI (Fig. 2b-d).",
    "figure6": "A higher output-change threshold focuses the maps on fewer, more "
               "discriminative features (Fig. 6).",
}


@dataclass(frozen=True)
class Settings:
    """Everything that sizes the reproduction (recorded in ``results.json``)."""

    limit: int                      # test images of Fig. 4a
    sanity_images: int              # test images of Fig. 2 / 11
    calibration_samples: int        # images of the 10 % validation split used by fit
    thresholds: tuple[float, ...]
    ig_steps: int
    pgd_iterations: int
    roar: bool
    roar_fractions: tuple[float, ...]
    roar_train: int
    roar_test: int
    roar_epochs: int
    roar_seeds: tuple[int, ...]
    grid_images: int
    batch_size: int


def settings(limit: int = 1000, quick: bool = False, roar: bool = True,
             **budget: Any) -> Settings:
    """The paper's sizes (limit 1000, IG 50 steps, PGD 20 iterations, 5 thresholds, ROAR at
    five k on the 90 % training part, 3 seeds), or with ``quick`` tiny ones for a check of the
    pipeline: 8 images, 2 for the sanity checks, 64 calibration images, thresholds 15 and
    30 %, IG 5 steps, PGD 5 iterations, ROAR at k = 50 % on 64 / 32 images for 1 epoch.
    ``budget`` overrides single fields (``None`` values are ignored); fractions and seeds may
    be given as strings such as ``"0.1,0.5"`` (``--option`` on the command line)."""
    if not isinstance(limit, int) or isinstance(limit, bool) or limit < 1:
        raise ValueError(f"limit must be a positive int, got {limit!r}")
    if quick:
        s = Settings(limit=min(limit, 8), sanity_images=min(limit, 2), calibration_samples=64,
                     thresholds=(0.15, 0.30), ig_steps=5, pgd_iterations=5, roar=roar,
                     roar_fractions=(0.5,), roar_train=64, roar_test=32, roar_epochs=1,
                     roar_seeds=(0,), grid_images=2, batch_size=32)
    else:
        s = Settings(limit=limit, sanity_images=min(limit, 1000), calibration_samples=1000,
                     thresholds=THRESHOLDS, ig_steps=50, pgd_iterations=20, roar=roar,
                     roar_fractions=ROAR_FRACTIONS, roar_train=45000, roar_test=10000,
                     roar_epochs=10, roar_seeds=(0, 1, 2), grid_images=6, batch_size=50)
    over: dict[str, Any] = {}
    for k, v in budget.items():
        if v is None:
            continue
        if k not in Settings.__dataclass_fields__ or k in ("limit", "roar"):
            raise ValueError(f"unknown budget option {k!r}")
        if k in ("thresholds", "roar_fractions"):
            v = parse_q_values(v)
        elif k == "roar_seeds":
            v = tuple(int(i) for i in (str(v).split(",") if isinstance(v, (str, int)) else v))
        elif not isinstance(v, int) or isinstance(v, bool) or v < 1:
            raise ValueError(f"{k} must be a positive int, got {v!r}")
        over[k] = v
    return replace(s, **over)


def method_options(s: Settings, percentage: float) -> dict[str, dict[str, Any]]:
    """Options of the compared methods: IG with ``s.ig_steps`` steps from the zero baseline,
    Grad-CAM on the last convolution (its default), RectGrad q = 98 (its default), PruneGrad / PrunePGD with the
    calibrated ``percentage`` (PGD: 20 iterations, step 0.01, L2 bound 0.1 in the normalised
    32 px input, as given; see the README). The gradient-type maps (Gradient, PruneGrad,
    PrunePGD: a direction of change, whose sign says which way, not how much) are ranked by
    magnitude (``abs=True``: per pixel max_c |g_c|, Simonyan et al.'s saliency); the
    contribution maps (GxI, IG, GBP, RectGrad) and Grad-CAM keep their sign, the metrics'
    convention."""
    return {"ig": {"n_steps": s.ig_steps, "internal_batch_size": 500},
            "saliency": {"abs": True},
            "prunegrad": {"percentage": percentage, "abs": True},
            "prunepgd": {"percentage": percentage, "iterations": s.pgd_iterations, "abs": True}}


# ------------------------------------------------------------------------------------------
# calibration
# ------------------------------------------------------------------------------------------


def validation_split(train: Any) -> tuple[int, int]:
    """Index range of the last 10 % of the training split (section 4.1's validation set)."""
    n = len(train)
    return n - n // 10, n


def calibrate(s: Settings, out: Path, device: str, data_dir: str | None
              ) -> dict[str, dict[str, float]]:
    """Per threshold (key: its percentage, ``"15"``) the fitted pruning percentage and the
    mean relative output change measured there, from the first ``s.calibration_samples``
    images of the validation split; artefacts of ``out/calibration.sqlite`` keyed by model,
    data and settings."""
    from ...data import load_dataset
    from ...methods import get as get_method
    from ...models import load_checkpoint
    from ..planner import model_fingerprint
    from ..store import ResultStore

    model, meta = load_checkpoint(CHECKPOINT)
    model = model.to(device).eval()
    train = load_dataset(meta["dataset"], "train", data_dir)
    lo, hi = validation_split(train)
    n = min(s.calibration_samples, hi - lo)
    out.mkdir(parents=True, exist_ok=True)
    res: dict[str, dict[str, float]] = {}
    x = None
    with ResultStore(out / "calibration.sqlite") as store:
        for thr in s.thresholds:
            spec = {"kind": "prunegrad_calibration", "model": model_fingerprint(model, CHECKPOINT),
                    "data": {"dataset": meta["dataset"], "split": "train",
                             "indices": [lo, lo + n]}, "output_change": thr}
            saved = store.artefact(spec)
            if saved is None:
                if x is None:
                    x, _ = train.tensors(torch.arange(lo, lo + n))
                    x = x.to(device)
                m = get_method("prunegrad", model, output_change=thr, calibration_samples=n)
                saved = m.fit(x).state_dict()
                store.put_artefact(spec, saved, kind="json")
            res[f"{round(100 * thr)}"] = {"percentage": saved["percentage"],
                                          "mean_change": saved["mean_change"]}
    return res


# ------------------------------------------------------------------------------------------
# experiments
# ------------------------------------------------------------------------------------------


def _run(s: Settings, names: Sequence[str], metrics: dict[str, dict[str, Any]], limit: int,
         percentage: float, out: Path, device: str, data_dir: str | None, progress: bool):
    opts = {m: o for m, o in method_options(s, percentage).items() if m in names}
    cfg = BenchConfig(checkpoint=CHECKPOINT, limit=limit, methods=list(names),
                      metrics=list(metrics), method_options=opts,
                      metric_options=metrics, target="label", batch_size=s.batch_size, seed=0,
                      device=device, data_dir=data_dir, out=str(out), report_samples=0)
    return bench(cfg, progress)


LERF = {"lerf_change": {"steps": 10, "baseline": "zero"}}
SANITY_OPTIONS = {m: {"layers": CASCADE} for m in SANITY}


def figure4a(s: Settings, names: Sequence[str], percentage: float, out: Path, device: str,
             data_dir: str | None, progress: bool) -> dict[str, Any]:
    """LeRF: per method the mean curve (fractions, change) and the (mean, sem) score."""
    with _run(s, names, LERF, s.limit, percentage, out, device, data_dir, progress) as store:
        curves = mean_curves(store, "lerf_change")
        scores = method_means(store, "lerf_change")
    return {m: {"x": curves[m][0], "y": curves[m][1], "score": scores[m]} for m in names}


def figure2(s: Settings, names: Sequence[str], percentage: float, out: Path, device: str,
            data_dir: str | None, progress: bool) -> dict[str, Any]:
    """Cascading randomisation: per metric and method the mean curve over the cascade steps
    (step 0 = no randomisation) and the (mean, sem) score (mean over steps 1..K)."""
    res: dict[str, Any] = {}
    with _run(s, names, SANITY_OPTIONS, s.sanity_images, percentage, out, device, data_dir,
              progress) as store:
        for metric in SANITY:
            curves, scores = mean_curves(store, metric), method_means(store, metric)
            res[metric] = {m: {"y": curves[m][1], "score": scores[m]} for m in names}
    return res


def roar_recipe(epochs: int):
    """The retraining of Fig. 4b: the paper names no recipe; Adam, lr 1e-3, batch 128,
    no augmentation, ``epochs`` epochs."""
    from ..train import Recipe

    return Recipe(optimizer="adam", lr=1e-3, weight_decay=0.0, epochs=epochs,
                  schedule="step", milestones=(), augment=False)


def figure4b(s: Settings, percentage: float, out: Path, device: str, data_dir: str | None,
             progress: bool) -> dict[str, dict[str, list[float]]]:
    """ROAR: per method (and ``random``, ``baseline``) and k (key ``"10"``, ..) the test
    accuracies (%) of the seeds."""
    from ...data import load_dataset
    from ...models import load_checkpoint
    from ..roar import roar

    model, meta = load_checkpoint(CHECKPOINT)
    model = model.to(device).eval()
    train, test = (load_dataset(meta["dataset"], split, data_dir) for split in ("train", "test"))
    lo, _ = validation_split(train)
    n_train = min(s.roar_train, lo)  # the 90 % training part (section 4.1)
    opts = method_options(s, percentage)
    specs = {m: {"name": m, "options": opts.get(m, {})} for m in METHODS}
    rows = roar(model, train, test, specs, fractions=s.roar_fractions,
                recipe=roar_recipe(s.roar_epochs), seeds=s.roar_seeds, out_dir=out,
                subset=(n_train, min(s.roar_test, len(test))), progress=progress,
                batch_size=128, fit_options={"device": device})
    acc: dict[str, dict[str, list[float]]] = {}
    for r in rows:
        acc.setdefault(r["method"], {}).setdefault(f"{round(100 * r['fraction'])}", []).append(
            100.0 * r["accuracy"])
    return acc


def figure6(s: Settings, calibration: dict[str, dict[str, float]], out: Path, device: str,
            data_dir: str | None) -> Path:
    """PruneGrad and PrunePGD maps of the first ``s.grid_images`` test images at every
    threshold, one column per (method, threshold)."""
    from ...data import load_dataset
    from ...methods import get as get_method
    from ...models import load_checkpoint
    from ...viz import denormalize, plot_grid

    model, meta = load_checkpoint(CHECKPOINT)
    model = model.to(device).eval()
    test = load_dataset(meta["dataset"], "test", data_dir)
    x, y = test.tensors(torch.arange(s.grid_images))
    x, y = x.to(device), y.to(device)
    maps, signed = {}, {}
    for name in PRUNING:
        for key, cal in calibration.items():
            opts = method_options(s, cal["percentage"])[name]
            col = f"{LABELS[name]} {key}%"
            maps[col] = get_method(name, model, **opts).attribute(x, target=y).cpu()
            signed[col] = True
    images = denormalize(x.cpu(), meta["mean"], meta["std"])
    classes = meta.get("classes") or [str(i) for i in range(10)]
    return plot_grid(images, maps, signed, [classes[int(t)] for t in y], out / "figure6.png",
                     title="PruneGrad / PrunePGD by output-change threshold")


# ------------------------------------------------------------------------------------------
# report
# ------------------------------------------------------------------------------------------


def _rank(scores: dict[str, float]) -> list[str]:
    return sorted(scores, key=lambda m: scores[m])


def verdicts(results: dict[str, Any]) -> dict[str, str]:
    """Whether each of the paper's claims (:data:`CLAIMS`) holds in our numbers."""
    out = {}
    f4a = results.get("figure4a")
    if f4a:
        order = _rank({m: v["score"][0] for m, v in f4a.items()})
        ok = set(order[:2]) == set(PRUNING)
        out["figure4a"] = ("holds" if ok else "not reproduced") + \
            f": lowest first {', '.join(LABELS[m] for m in order)}"
    f4b = results.get("figure4b")
    if f4b:
        mean = {m: sum(sum(v) / len(v) for v in d.values()) / len(d)
                for m, d in f4b.items() if m != "baseline"}
        order = _rank(mean)
        ranked = [m for m in order if m in METHODS]
        ok = set(ranked[:3]) == {"gradcam", *PRUNING} and ranked[-1] == "ig"
        out["figure4b"] = ("holds" if ok else "not reproduced") + \
            f": mean accuracy over k, lowest first {', '.join(LABELS[m] for m in order)}"
    f2 = results.get("figure2")
    if f2:
        parts = []
        for metric, per in f2.items():
            sc = {m: v["score"][0] for m, v in per.items()}
            others = [sc[m] for m in ("gbp", "rectgrad", "ig", "gxi") if m in sc]
            ok = all(sc[p] < min(others) for p in PRUNING if p in sc)
            parts.append(f"{metric}: {'holds' if ok else 'not reproduced'}")
        out["figure2"] = "; ".join(parts)
    return out


def _lerf_section(f4a: dict[str, Any], title: str) -> str:
    rows = [[LABELS.get(m, m)] + [fmt(v, 3) for v in d["y"]] + [fmt(d["score"][0], 3)]
            for m, d in f4a.items()]
    xs = next(iter(f4a.values()))["x"]
    head = ["method"] + [f"{round(100 * x)}%" for x in xs] + ["mean"]
    return f"### {title}\n\n" + markdown_table(head, rows)


def _sanity_section(f2: dict[str, Any], title: str) -> str:
    steps = ["none"] + CASCADE
    text = [f"### {title}"]
    for metric, per in f2.items():
        rows = [[LABELS.get(m, m)] + [fmt(v, 3) for v in d["y"]] + [fmt(d["score"][0], 3)]
                for m, d in per.items()]
        text.append(f"{metric} (randomised up to and including):\n\n"
                    + markdown_table(["method"] + steps + ["mean 1..K"], rows))
    return "\n\n".join(text)


def reproduce(out: Path, *, limit: int = 1000, device: str = "cpu",
              data_dir: str | None = None, quick: bool = False, roar: bool = True,
              sanity_images: int | None = None, calibration_samples: int | None = None,
              thresholds: Any = None, ig_steps: int | None = None,
              roar_fractions: Any = None, roar_train: int | None = None,
              roar_test: int | None = None, roar_epochs: int | None = None,
              roar_seeds: Any = None, progress: bool = True) -> Path:
    """Run paper 03's experiments (module docstring) into ``out``; returns ``REPORT.md``'s
    path. ``quick`` runs tiny settings (:func:`settings`); the keyword sizes override the
    budget (the report and ``results.json`` state the budget used)."""
    out = Path(out)
    s = settings(limit, quick, roar, sanity_images=sanity_images,
                 calibration_samples=calibration_samples, thresholds=thresholds,
                 ig_steps=ig_steps, roar_fractions=roar_fractions, roar_train=roar_train,
                 roar_test=roar_test, roar_epochs=roar_epochs, roar_seeds=roar_seeds)
    results: dict[str, Any] = {"settings": asdict(s), "claims": CLAIMS}
    sections = []
    cal = calibrate(s, out, device, data_dir)
    results["calibration"] = cal
    key = f"{round(100 * DEFAULT_THRESHOLD)}"
    if key not in cal:
        key = next(iter(cal))
    p15 = cal[key]["percentage"]
    sections.append(
        "### Calibration (section 4.1)\n\nPruning percentage chosen by `fit` on the first "
        f"{s.calibration_samples} images of the last 10 % of the CIFAR-10 training split "
        "(mean relative change of the predicted logit = threshold); the paper's example "
        "percentage for ResNet-50 is 60 %.\n\n" + markdown_table(
            ["threshold", "pruned %", "mean change measured"],
            [[f"{k}%", fmt(v["percentage"], 2), fmt(v["mean_change"], 4)]
             for k, v in cal.items()]))

    f4a = figure4a(s, METHODS, p15, out / "figure4a_lerf", device, data_dir, progress)
    results["figure4a"] = f4a
    sections.append(_lerf_section(f4a, f"Figure 4a: LeRF output change (first {s.limit} test "
                                       f"images, threshold {key} %; lower is better)"))
    png = plot_lines({LABELS[m]: (d["x"], d["y"]) for m, d in f4a.items()},
                     out / "figure4a_lerf.png", "LeRF (ResNet8, CIFAR-10)",
                     "fraction of pixels removed", "|f(x') - f(x)| / |f(x)|")
    sections.append(f"![Figure 4a]({png.name})")

    f2 = figure2(s, METHODS, p15, out / "figure2_sanity", device, data_dir, progress)
    results["figure2"] = f2
    sections.append(_sanity_section(f2, f"Figure 2: cascading randomisation (first "
                                        f"{s.sanity_images} test images; lower is better)"))

    if s.roar:
        f4b = figure4b(s, p15, out / "figure4b_roar", device, data_dir, progress)
        results["figure4b"] = f4b
        cols = [f"{round(100 * f)}" for f in s.roar_fractions]
        rows = []
        for m, d in f4b.items():
            cells = []
            for c in (["0"] if m == "baseline" else cols):
                mu, se = mean_sem(d.get(c, []))
                cells.append(f"{fmt(mu)} ± {fmt(se)}")
            rows.append([LABELS.get(m, m)] + cells + ([""] * (len(cols) - 1)
                                                      if m == "baseline" else []))
        sections.append(
            f"### Figure 4b: ROAR (test accuracy %, mean ± sem over seeds {list(s.roar_seeds)}; "
            f"{s.roar_train} training / {s.roar_test} test images, {s.roar_epochs} epochs; "
            "lower is better)\n\n" + markdown_table(["method"] + [f"k={c}%" for c in cols], rows))
    else:
        sections.append("### Figure 4b: ROAR\n\nNot run (`roar=False`).")

    sweep: dict[str, Any] = {}
    for k, c in cal.items():
        if k == key and set(PRUNING) <= set(f4a):  # the main figures' threshold: same runs
            sweep[k] = {"figure12a": {m: f4a[m] for m in PRUNING},
                        "figure11": {metric: {m: per[m] for m in PRUNING}
                                     for metric, per in f2.items()}}
            continue
        sweep[k] = {"figure12a": figure4a(s, PRUNING, c["percentage"], out / f"sweep_{k}",
                                          device, data_dir, progress),
                    "figure11": figure2(s, PRUNING, c["percentage"], out / f"sweep_{k}",
                                        device, data_dir, progress)}
    results["threshold_sweep"] = sweep
    rows = []
    for k, d in sweep.items():
        for m in PRUNING:
            rows.append([f"{k}%", LABELS[m], fmt(d["figure12a"][m]["score"][0], 3)]
                        + [fmt(d["figure11"][metric][m]["score"][0], 3) for metric in SANITY])
    sections.append("### Figures 11 and 12a: output-change threshold\n\nMean over the LeRF "
                    "fractions and over the cascade steps 1..K (lower is better).\n\n"
                    + markdown_table(["threshold", "method", "LeRF"] + list(SANITY), rows))
    grid = figure6(s, cal, out, device, data_dir)
    sections.append(f"### Figure 6: maps by threshold\n\n![Figure 6]({grid.name})")

    results["verdicts"] = verdicts(results)
    sections.append("### The paper's claims at this budget\n\n" + "\n".join(
        f"- {CLAIMS[k]} **{v}**" for k, v in results["verdicts"].items()))
    header = (f"Model: shipped {CHECKPOINT} (test accuracy in its checkpoint); maps for the true "
              f"label; budget: {'quick check' if quick else 'as stated per figure'}.")
    return write_report(out, "Paper 03 reproduced: PruneGrad and PrunePGD", [header, *sections],
                        results)


__all__ = ["CLAIMS", "METHODS", "Settings", "calibrate", "method_options", "reproduce",
           "settings", "validation_split", "verdicts"]
