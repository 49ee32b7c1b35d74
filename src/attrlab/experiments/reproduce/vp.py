"""Paper 05 (Variational Perturbations) reproduced on MNIST: ``attrlab reproduce vp``.

On the shipped MNIST CNN (the paper's three conv + two linear layers), over test images the
classifier gets right with probability > 0.5 (section 4.2), drawn anew for every seed:

* Table 1: consistency (SSIM, Pearson, PSNR; upsample pairs {1, 2}, {2, 4}, {1, 4}) of the
  mask-based methods, ``consistency_samples`` images per seed (paper: 50, 4 repeats);
* Table 2: stability, the local Lipschitz estimate (random search, ``stability_budget`` points
  in an L2 ball of ``stability_radius``), ``stability_samples`` images per seed (paper: 30);
* Table 3: the top-k / low-k area of the probability, logit and KL output changes (gray
  substitution, k = 0, 10, ..., 100 %), ``limit`` images per seed (paper: 200);
* Figure 6: the time to explain one image, every method measured side by side here.

Methods: InputGrad (``saliency``), L2X, nVP and VP (m = 2 for Tables 2-3), and every other
method of the paper that the registry holds (MP, RISE, EP, AP, by their registry names); those that
are not registered are named in the report. The explainers are the shipped ones
(:data:`SHIPPED`, trained by the command in :data:`SHIPPED_COMMAND`) unless ``train=True``,
which fits them here (resumable: ``out/explainers/*.ckpt``) and can ``export_explainers`` to a
file. The CIFAR-10 run is not part of this module (see README).

Scores are means over the images of a seed; the tables give the mean over seeds and the
spread (standard deviation over seeds). The record (``record.sqlite``) keeps every finished
(part, seed), so an interrupted run resumes; other settings start a fresh record.
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path
from typing import Any, Mapping

import torch
from torch import Tensor

from .common import load_record, markdown_table, write_report

SHIPPED = Path(__file__).with_name("checkpoints") / "paper05_mnist_explainers.pt"
SHIPPED_COMMAND = ("attrlab reproduce vp --no-progress --option train=true --option "
                   "train_steps=400 --option only=train --option export_explainers="
                   "src/attrlab/experiments/reproduce/checkpoints/paper05_mnist_explainers.pt")
SIZES = (1, 2, 4)
# the explainers and their training, for MNIST (section 4.1: five layers, m = 2,
# beta = 1 / (1000 H W)); width, baseline and the SOFT top-k iterations are ours
EXPLAINER = {"width": 16, "depth": 5, "batch_size": 64, "lr": 1e-3}
LEARNED = {"vp": {"beta_scale": 1000.0, "baseline": "blur", "topk_iters": 50},
           "nvp": {"baseline": "blur", "topk_iters": 50},
           "l2x": {"k_fraction": 0.2, "tau": 0.5}}
LABEL = {"vp": "VP", "nvp": "nVP", "l2x": "L2X"}
# registry candidates for the other baselines of the paper (first registered name wins)
OTHERS = {"MP": ("mp", "meaningful_perturbation"), "RISE": ("rise",),
          "EP": ("ep", "extremal_perturbation"), "AP": ("ap", "adversarial_perturbation")}
# Baselines at MNIST's 28 px: the 224 px defaults scaled by 28/224 (MP's coarse mask 28 -> 7
# cells and blur sigma 10 -> 1.25, with the larger L1 weight small images need; EP's grid step
# 7 -> 1 and smoothing sigma 21 -> 3); quick runs cut the iterations and masks to a pipeline
# check.
OTHER_OPTIONS = {"meaningful_perturbation": {"mask_size": 7, "blur_sigma": 1.25, "l1": 0.01},
                 "extremal_perturbation": {"step": 1, "sigma": 3.0}, "rise": {}}
QUICK_OPTIONS = {"meaningful_perturbation": {"iterations": 10},
                 "extremal_perturbation": {"iterations": 10}, "rise": {"n_masks": 200}}
ORDER = ("InputGrad", "L2X", "MP", "RISE", "EP", "AP", "nVP", "VP")

# The paper's MNIST column, typed from the paper.
PAPER_TABLE1 = {"L2X": (0.40, 0.59, 9.49), "MP": (0.52, 0.48, 11.50), "RISE": (0.11, 0.07, 12.51),
                "EP": (0.58, 0.81, 13.15), "nVP": (0.49, 0.81, 13.07), "VP": (0.56, 0.85, 13.81)}
PAPER_TABLE2 = {"InputGrad": (1.53, 0.27), "L2X": (0.99, 0.25), "MP": (3.73, 2.08),
                "RISE": (0.16, 0.19), "EP": (3.48, 0.88), "AP": (1.60, 0.26),
                "nVP": (0.13, 0.03), "VP": (0.06, 0.01)}
PAPER_TABLE3 = {"InputGrad": (0.44, 7.61, 0.24), "L2X": (0.43, 7.65, 0.24),
                "MP": (0.37, 5.61, 0.30), "RISE": (0.22, 4.52, 0.33), "EP": (0.40, 6.87, 0.35),
                "AP": (0.51, 8.25, 0.31), "nVP": (0.70, 12.91, 0.37), "VP": (0.70, 12.97, 0.37)}
PARTS = ("train", "consistency", "stability", "perturbation", "sanity", "timing")


def eligible(model: torch.nn.Module, x: Tensor, y: Tensor, batch_size: int = 500) -> Tensor:
    """Indices of the images classified correctly with probability > 0.5 (section 4.2)."""
    keep = []
    with torch.no_grad():
        for i in range(0, len(x), batch_size):
            p = torch.softmax(model(x[i:i + batch_size]), 1)
            conf, pred = p.max(1)
            keep.append((pred == y[i:i + batch_size]) & (conf > 0.5))
    return torch.cat(keep).nonzero().flatten()


def build_explainers(model: torch.nn.Module, train_data: Any, *, train: bool, steps: int,
                     out: Path, progress: bool, batch_size: int | None = None
                     ) -> dict[str, Any]:
    """VP, nVP and L2X fitted at every size of :data:`SIZES`: the shipped state, or trained
    here (``steps`` steps each, in batches of ``batch_size`` (default
    ``EXPLAINER["batch_size"]``), resumable from ``out/explainers``)."""
    from ...methods import get

    recipe = {**EXPLAINER, "batch_size": batch_size or EXPLAINER["batch_size"]}
    found = {name: get(name, model, max_steps=steps, progress=progress, **recipe, **extra)
             for name, extra in LEARNED.items()}
    if not train:
        if not SHIPPED.is_file():
            raise FileNotFoundError(f"{SHIPPED} is missing: run with train=true")
        state = torch.load(SHIPPED, map_location="cpu", weights_only=True)
        for name, method in found.items():
            method.load_state_dict(state[name])
        return found
    for name, method in found.items():
        for m in SIZES:
            method.fit(train_data, upsample=m, generator=torch.Generator().manual_seed(m),
                       checkpoint=out / "explainers" / f"{name}_m{m}.ckpt")
    return found


def _methods(model: torch.nn.Module, explainers: Mapping[str, Any], quick: bool = False
             ) -> tuple[dict, list[str]]:
    from ...methods import available, get

    out: dict[str, Any] = {"InputGrad": get("saliency", model)}
    missing = []
    for label, names in OTHERS.items():
        name = next((n for n in names if n in available()), None)
        if name is None:
            missing.append(label)
        else:
            out[label] = get(name, model, **OTHER_OPTIONS.get(name, {}),
                             **(QUICK_OPTIONS.get(name, {}) if quick else {}))
    out.update({LABEL[name]: e for name, e in explainers.items()})
    return {k: out[k] for k in ORDER if k in out}, missing


def _mean(values: Tensor) -> float:
    return float(values.double().mean())


def _time_one(method: Any, x: Tensor, y: Tensor, repeats: int, device: str) -> float:
    """Median seconds to explain one image (after one warm-up call)."""
    def sync():
        if device.startswith("cuda"):
            torch.cuda.synchronize()

    times = []
    for r in range(repeats + 1):
        xi, yi = x[r % len(x)][None], y[r % len(y)][None]
        sync()
        t0 = time.perf_counter()
        method.attribute(xi, yi)
        sync()
        if r:
            times.append(time.perf_counter() - t0)
    return statistics.median(times)


def _spread(per_seed: list[float]) -> tuple[float, float]:
    m = sum(per_seed) / len(per_seed)
    sd = statistics.stdev(per_seed) if len(per_seed) > 1 else 0.0
    return m, sd


def _cell(per_seed: list[float] | None, paper: float | None, digits: int = 2) -> str:
    if not per_seed:
        return "-"
    m, sd = _spread(per_seed)
    text = f"{m:.{digits}f} ± {sd:.{digits}f}"
    return text if paper is None else f"{text} ({paper:.{digits}f})"


def reproduce(out: Path, *, limit: int = 200, seeds: int = 3, device: str = "cpu",
              data_dir: str | None = None, quick: bool = False, progress: bool = True,
              train: bool = False, train_steps: int = 400,
              export_explainers: str | None = None, consistency_samples: int = 50,
              stability_samples: int = 30, stability_budget: int = 32,
              stability_radius: float = 0.1, timing_repeats: int = 5,
              sanity_samples: int = 50, sanity_steps: int = 200,
              only: str | None = None) -> Path:
    """Run paper 05's MNIST experiments (module docstring) into ``out``; returns the path of
    ``REPORT.md``. ``quick`` shrinks every budget (2 seeds, 16 images, 4 for consistency and
    stability with 4 search points, 2 timing repeats; 2 training steps of 8 images with
    ``train``) to
    check the pipeline. ``only``: a comma-separated subset of :data:`PARTS`."""
    from ...data import load_dataset
    from ...metrics import get as get_metric
    from ...models import load_checkpoint
    from .common import select_parts

    out = Path(out)
    parts = select_parts(only, PARTS)
    if quick:
        limit, seeds = min(limit, 16), min(seeds, 2)
        consistency_samples, stability_samples = min(consistency_samples, 4), \
            min(stability_samples, 4)
        stability_budget, timing_repeats, train_steps = min(stability_budget, 4), \
            min(timing_repeats, 2), min(train_steps, 2)
        sanity_samples, sanity_steps = min(sanity_samples, 4), min(sanity_steps, 2)
    settings = {"limit": limit, "seeds": seeds, "train": train, "train_steps": train_steps,
                "consistency_samples": consistency_samples,
                "stability_samples": stability_samples, "stability_budget": stability_budget,
                "stability_radius": stability_radius, "timing_repeats": timing_repeats,
                "sanity_samples": sanity_samples, "sanity_steps": sanity_steps,
                "explainer": EXPLAINER, "learned": LEARNED, "quick": quick}
    record = load_record(out)
    if record.get("settings") != settings:
        record = {"settings": settings}
    results: dict[str, Any] = record

    model, meta = load_checkpoint("mnist_cnn")
    model = model.to(device)
    test = load_dataset("mnist", "test", data_dir)
    train_data = load_dataset("mnist", "train", data_dir) \
        if "train" in parts or "sanity" in parts or train else None
    explainers = build_explainers(model, train_data, train=train, steps=train_steps, out=out,
                                  progress=progress, batch_size=8 if quick else None)
    for e in explainers.values():
        for net in e.explainers.values():
            net.to(device)
    if export_explainers:
        path = Path(export_explainers)
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save({k: e.state_dict() for k, e in explainers.items()}, path)
        results["exported"] = str(path)
    methods, missing = _methods(model, explainers, quick)
    results["missing_methods"] = missing

    # quick: only the first 2,000 test images are screened
    x_all, y_all = test.tensors(torch.arange(2000) if quick else None)
    x_all, y_all = x_all.to(device), y_all.to(device)
    pool = eligible(model, x_all, y_all)
    results["eligible"] = int(pool.numel())
    gray = (0.5 - meta["mean"][0]) / meta["std"][0]

    def sample(seed: int, n: int) -> tuple[Tensor, Tensor]:
        pick = pool[torch.randperm(len(pool), generator=torch.Generator().manual_seed(seed))
                    [:n].to(pool.device)]
        return x_all[pick], y_all[pick]

    def save() -> Path:
        return write_report(out, "Paper 05 reproduced: Variational Perturbations (MNIST)",
                            _sections(results), results)

    for seed in range(seeds):
        key = str(seed)
        if "consistency" in parts and key not in results.get("consistency", {}):
            x, y = sample(1000 + seed, consistency_samples)
            row = {}
            for label, method in methods.items():
                if getattr(method, "resolution_option", None) is None:
                    continue
                row[label] = {kind: _mean(get_metric("consistency", similarity=kind)
                                          .evaluate(model, x, y, method.attribute(x, y),
                                                    method=method))
                              for kind in ("ssim", "pearson", "psnr")}
            results.setdefault("consistency", {})[key] = row
            save()
        if "stability" in parts and key not in results.get("stability", {}):
            x, y = sample(2000 + seed, stability_samples)
            metric = get_metric("stability", n_samples=stability_budget,
                                radius=stability_radius, seed=seed)
            results.setdefault("stability", {})[key] = {
                label: _mean(metric.evaluate(model, x, y, method.attribute(x, y),
                                             method=method))
                for label, method in methods.items()}
            save()
        if "perturbation" in parts and key not in results.get("perturbation", {}):
            x, y = sample(seed, limit)
            row, curves = {}, {}
            for label, method in methods.items():
                a = method.attribute(x, y).detach()
                row[label] = {}
                for output in ("prob", "logit", "kl"):
                    metric = get_metric("topk_lowk_area", baseline=gray, output=output)
                    # both curves in one pass; the score is the metric's summary of them
                    with torch.no_grad():
                        top, low = metric.curves(model.eval(), x, y, a)
                    area = metric.summarize(metric.fractions.to(top), top - low)
                    row[label][output] = _mean(area)
                    if output == "prob":
                        curves[label] = (top.mean(0).tolist(), low.mean(0).tolist())
            results.setdefault("perturbation", {})[key] = row
            results.setdefault("curves", {})[key] = curves
            save()
    if "sanity" in parts and "sanity" not in results:
        x, y = sample(4000, sanity_samples)
        results["sanity"] = sanity_cascade(model, methods["VP"], methods["InputGrad"], x, y,
                                           train_data, sanity_steps)
        save()
    if "timing" in parts and "timing" not in results:
        x, y = sample(3000, max(timing_repeats + 1, 2))
        results["timing"] = {label: _time_one(method, x, y, timing_repeats, device)
                             for label, method in methods.items()}
        results["timing_device"] = device
    _plots(results, out)
    return save()


def sanity_cascade(model: torch.nn.Module, vp: Any, reference: Any, x: Tensor, y: Tensor,
                   train_data: Any, steps: int) -> dict[str, Any]:
    """Figure 5: mean SSIM (per image, maps normalised as ``sanity_ssim``) between VP's maps
    on the trained classifier and after each top-down cascade step, VP re-fitted (``steps``
    steps, seed 0) on every copy, the unrandomised one included (the re-training floor);
    ``reference``'s plain ``sanity_ssim`` curve beside it."""
    from ...metrics import get as get_metric
    from ...metrics.randomisation import similarity

    metric = get_metric("sanity_ssim")
    original = vp.attribute(x, y).detach()
    layers, curve = [], []
    for name, bound in metric.randomized(vp.bind(max_steps=steps), x):
        # re-fitted at every step, the unrandomised one too: its row is the floor that
        # re-training alone (another seed, this budget) gives
        bound.fit(train_data, generator=torch.Generator().manual_seed(0))
        layers.append(name)
        curve.append(float(similarity(original, bound.attribute(x, y), "ssim").mean()))
    ref = metric.compute(model, x, y, reference.attribute(x, y), method=reference)
    return {"layers": layers, "VP (re-fitted)": curve,
            "InputGrad": [float(v) for v in ref.curve[1].mean(0)]}


def _per_seed(results: Mapping[str, Any], part: str, label: str, key: str | None
              ) -> list[float]:
    vals = []
    for row in results.get(part, {}).values():
        if label in row:
            vals.append(row[label] if key is None else row[label][key])
    return vals


def _sections(results: Mapping[str, Any]) -> list[str]:
    s = results["settings"]
    missing = results.get("missing_methods", [])
    head = (f"MNIST test images classified correctly with probability > 0.5 "
            f"({results.get('eligible', '?')} eligible), drawn anew for each of {s['seeds']} "
            f"seeds; cells are mean ± standard deviation over the seeds, the paper's MNIST "
            f"figure in brackets. Explainers: width {EXPLAINER['width']}, depth "
            f"{EXPLAINER['depth']}; VP/nVP: beta = 1/(1000 HW), blur baseline, "
            f"50 Sinkhorn iterations; L2X: k = 20 %, tau = 0.5; "
            + (f"trained here for {s['train_steps']} steps each." if s["train"] else
               f"the shipped ones (`{SHIPPED_COMMAND}`).")
            + (f" Not registered, so not run: {', '.join(missing)}." if missing else "")
            + (" QUICK settings: a pipeline check, not a result." if s["quick"] else ""))
    out = [head]
    labels = [k for k in ORDER if any(k in r for part in ("stability", "perturbation")
                                      for r in results.get(part, {}).values())]
    if results.get("consistency"):
        rows = []
        for label in [k for k in ORDER if any(k in r for r in results["consistency"].values())]:
            paper = PAPER_TABLE1.get(label, (None,) * 3)
            rows.append([label] + [_cell(_per_seed(results, "consistency", label, kind), p)
                                   for kind, p in zip(("ssim", "pearson", "psnr"), paper)])
        out.append(f"### Table 1: consistency (upsample pairs {{1,2}}, {{2,4}}, {{1,4}}; "
                   f"{s['consistency_samples']} images per seed)\n\n"
                   + markdown_table(["method", "SSIM", "PC", "PSNR"], rows))
    if results.get("stability"):
        rows = [[label, _cell(_per_seed(results, "stability", label, None),
                              PAPER_TABLE2.get(label, (None,))[0])] for label in labels]
        out.append(f"### Table 2: stability (local Lipschitz estimate, lower is better; "
                   f"{s['stability_samples']} images per seed, random search over "
                   f"{s['stability_budget']} points of the L2 ball of radius "
                   f"{s['stability_radius']}; min-max normalised maps)\n\n"
                   + markdown_table(["method", "stability"], rows))
    if results.get("perturbation"):
        rows = []
        for label in labels:
            paper = PAPER_TABLE3.get(label, (None,) * 3)
            rows.append([label] + [_cell(_per_seed(results, "perturbation", label, o), p)
                                   for o, p in zip(("prob", "logit", "kl"), paper)])
        out.append(f"### Table 3: top-k / low-k area (gray substitution, k = 0..100 %; "
                   f"{s['limit']} images per seed; higher is better)\n\n"
                   + markdown_table(["method", "probability", "logit", "KL"], rows)
                   + "\n\n![Figure 4](figure4_topk_lowk.png)")
    if results.get("sanity"):
        sc = results["sanity"]
        rows = [[layer] + [f"{sc[k][i]:.2f}" for k in ("VP (re-fitted)", "InputGrad")]
                for i, layer in enumerate(sc["layers"])]
        out.append(f"### Figure 5: sanity check (cascading randomisation from the top, mean SSIM "
                   f"to the original maps; {s['sanity_samples']} images; VP re-fitted for "
                   f"{s['sanity_steps']} steps on every randomised copy)\n\n"
                   + markdown_table(["randomised down to", "VP (re-fitted)", "InputGrad"], rows))
    if results.get("timing"):
        t = results["timing"]
        vp = t.get("VP")
        rows = [[label, f"{1000 * sec:.2f}", f"{sec / vp:.1f}x" if vp else "-"]
                for label, sec in t.items()]
        out.append(f"### Figure 6: time to explain one image ({results.get('timing_device')}, "
                   f"median of {s['timing_repeats']} calls, measured side by side)\n\n"
                   + markdown_table(["method", "ms / image", "relative to VP"], rows))
    return out


def _plots(results: Mapping[str, Any], out: Path) -> None:
    from .common import plot_lines

    curves = results.get("curves", {})
    if not curves:
        return
    first = next(iter(curves.values()))
    k = len(next(iter(first.values()))[0])
    xs = [100 * i / (k - 1) for i in range(k)]
    series = {}
    for label, (top, low) in first.items():
        series[f"{label} top-k"] = (xs, top)
        series[f"{label} low-k"] = (xs, low)
    plot_lines(series, out / "figure4_topk_lowk.png", "Top-k / low-k (seed 0)", "k (%)",
               "probability drop")


__all__ = ["PAPER_TABLE1", "PAPER_TABLE2", "PAPER_TABLE3", "SHIPPED", "SHIPPED_COMMAND",
           "build_explainers", "eligible", "reproduce"]
