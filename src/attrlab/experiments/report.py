"""Leaderboard (terminal) and HTML report of a bench run, from its result store alone."""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .store import ResultStore


@dataclass
class Cell:
    mean: float
    se: float
    n: int
    best: bool = False

    def text(self) -> str:
        return f"{self.mean:.4g} ± {self.se:.2g}"


def leaderboard(store: ResultStore) -> tuple[list[str], list[str], dict[tuple[str, str], Cell]]:
    """(methods, metrics, cells): mean and standard error (std / sqrt(n), ddof 1) per method
    and metric; the best method of each metric is marked (by the metric's direction)."""
    values: dict[tuple[str, str], list[float]] = defaultdict(list)
    for method, metric, _, score in store.scores():
        values[(method, metric)].append(score)
    methods = sorted({m for m, _ in values})
    metrics = sorted({k for _, k in values})
    cells = {}
    for key, v in values.items():
        arr = np.asarray(v, dtype=float)
        se = float(arr.std(ddof=1) / math.sqrt(len(arr))) if len(arr) > 1 else float("nan")
        cells[key] = Cell(float(arr.mean()), se, len(arr))
    direction = store.info("higher_is_better", {})
    for k in metrics:
        scored = [(cells[(m, k)].mean, m) for m in methods if (m, k) in cells]
        if scored:
            best = (max if direction.get(k, True) else min)(v for v, _ in scored)
            for v, m in scored:  # ties (e.g. GxI = IG = DeepLIFT on NIB nets) all count
                cells[(m, k)].best = math.isclose(v, best, rel_tol=1e-6, abs_tol=1e-12)
    return methods, metrics, cells


def format_leaderboard(store: ResultStore) -> str:
    """A plain-text table: methods x metrics, 'mean ± se', best marked with '*'."""
    methods, metrics, cells = leaderboard(store)
    direction = store.info("higher_is_better", {})
    head = ["method"] + [f"{k} ({'↑' if direction.get(k, True) else '↓'})" for k in metrics]
    rows = [[m] + [(cells[(m, k)].text() + (" *" if cells[(m, k)].best else ""))
                   if (m, k) in cells else "-" for k in metrics] for m in methods]
    widths = [max(len(r[i]) for r in [head] + rows) for i in range(len(head))]
    line = lambda r: "  ".join(c.ljust(w) for c, w in zip(r, widths))
    n = max((c.n for c in cells.values()), default=0)
    return "\n".join([line(head), line(["-" * w for w in widths])] + [line(r) for r in rows]
                     + [f"(mean ± standard error over {n} samples; * best)"])


def plot_curves(store: ResultStore, metric: str, path: Path) -> Path:
    """Mean curve (± standard error band) of every method for a curve metric."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(5, 3.6))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    from matplotlib import colormaps

    colours = colormaps["tab20"]
    for i, (method, (x, ys)) in enumerate(sorted(store.curves(metric).items())):
        y = np.asarray(ys, dtype=float)
        mean = y.mean(0)
        se = y.std(0, ddof=1) / math.sqrt(len(y)) if len(y) > 1 else np.zeros_like(mean)
        colour = colours(i % 20)
        ax.plot(x, mean, label=method, lw=1.4, color=colour, ls=("-", "--", ":")[i // 20 % 3])
        ax.fill_between(x, mean - se, mean + se, alpha=0.15, color=colour)
    ax.set_title(metric)
    ax.set_xlabel(_XLABEL.get(metric.split("_")[0], "step"))
    ax.legend(fontsize=6, ncol=2)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return path


_XLABEL = {"morf": "fraction of features removed", "lerf": "fraction of features removed",
           "deletion": "fraction of pixels deleted", "insertion": "fraction of pixels inserted",
           "sanity": "layers randomised (top down)"}


def sample_maps(cfg: dict[str, Any], out: Path) -> Path:
    """Heatmap grid of the first ``report_samples`` samples for every method of the run."""
    import torch

    from ..viz import denormalize, plot_grid
    from .bench import BenchConfig, resolve

    k = int(cfg["report_samples"])
    setup = resolve(BenchConfig.from_dict({**cfg, "limit": k}), with_metrics=False)
    x, y = setup.dataset.tensors(setup.indices[:k])
    maps, signed = {}, {}
    for name, method in setup.methods.items():
        with torch.random.fork_rng():
            torch.manual_seed(int(cfg.get("seed", 0)))
            maps[name] = method.attribute(x, y).detach()
        signed[name] = bool(getattr(method, "signed", True))
    with torch.no_grad():
        preds = setup.model(x).argmax(1).tolist()
    info = setup.dataset.info
    titles = [f"pred {p} / true {int(t)}" for p, t in zip(preds, y)]
    return plot_grid(denormalize(x, info.mean, info.std), maps, signed, titles,
                     out / "samples.png")


TEMPLATE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>attrlab bench report</title>
<style>
body { font-family: sans-serif; margin: 2em; color: #222; }
table { border-collapse: collapse; margin: 1em 0; }
th, td { border: 1px solid #ccc; padding: 4px 8px; text-align: right; }
th:first-child, td:first-child { text-align: left; }
td.best { font-weight: bold; background: #e8f4e8; }
img { max-width: 100%; }
.curves img { width: 32%; min-width: 300px; }
pre { background: #f6f6f6; padding: 1em; overflow-x: auto; }
</style>
</head>
<body>
<h1>attrlab bench report</h1>
<p>Model <b>{{ model }}</b> on <b>{{ dataset }}</b> ({{ split }} split, {{ n }} samples),
{{ methods|length }} methods x {{ metrics|length }} metrics.</p>
{% for note in notes %}<p><i>{{ note }}</i></p>{% endfor %}
<h2>Leaderboard</h2>
<p>Mean ± standard error over samples; the best method of each metric is in bold
(↑ higher is better, ↓ lower is better).</p>
<table>
<tr><th>method</th>{% for k in metrics %}<th>{{ k }} {{ '↑' if direction.get(k, True) else '↓' }}</th>{% endfor %}</tr>
{% for m in methods %}<tr><td>{{ m }}</td>{% for k in metrics %}{% set c = cells.get((m, k)) %}<td{% if c and c.best %} class="best"{% endif %}>{{ c.text() if c else '-' }}</td>{% endfor %}</tr>
{% endfor %}</table>
{% if samples %}<h2>Attribution maps</h2>
<p>Input, then one map per method (diverging colours for signed maps, sequential for
non-negative ones).</p>
<img src="{{ samples }}" alt="attribution maps">{% endif %}
{% if curves %}<h2>Curves</h2>
<div class="curves">{% for c in curves %}<img src="{{ c }}" alt="{{ c }}">{% endfor %}</div>{% endif %}
<h2>Configuration</h2>
<pre>{{ config }}</pre>
<h2>Versions</h2>
<pre>{{ versions }}</pre>
</body>
</html>
"""


def write_report(store_path: str | Path, with_maps: bool = True) -> Path:
    """Write ``report.html`` (plus its PNGs) next to the store; returns the HTML path."""
    import json

    from jinja2 import Environment, select_autoescape

    store_path = Path(store_path)
    out = store_path.parent
    with ResultStore(store_path) as store:
        methods, metrics, cells = leaderboard(store)
        if not methods:
            raise ValueError(f"{store_path} holds no results yet: run attrlab bench first")
        cfg = store.info("config", {})
        meta = store.info("meta", {})
        curves = [plot_curves(store, k, out / f"curve_{k}.png").name
                  for k in store.curve_metrics()]
        env = Environment(autoescape=select_autoescape(default=True))
        page = env.from_string(TEMPLATE).render(
            model=cfg.get("torchvision") or cfg.get("checkpoint"),
            dataset=cfg.get("dataset") or meta.get("dataset"), split=cfg.get("split"),
            n=max(c.n for c in cells.values()), methods=methods, metrics=metrics, cells=cells,
            direction=store.info("higher_is_better", {}), notes=store.info("notes", []),
            samples=(sample_maps(cfg, out).name
                     if with_maps and int(cfg.get("report_samples") or 0) > 0 else None),
            curves=curves, config=json.dumps(cfg, indent=2, default=str),
            versions=json.dumps(store.info("versions", {}), indent=2))
    path = out / "report.html"
    path.write_text(page, encoding="utf-8")
    return path


__all__ = ["leaderboard", "format_leaderboard", "plot_curves", "write_report"]
