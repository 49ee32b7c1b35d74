"""Leaderboard (terminal), exports (CSV, LaTeX) and the self-contained HTML report of a bench
run, from its result store alone.

Statistics, per metric:

* each cell is the mean and standard error (std / sqrt(n), ddof 1) over samples;
* methods are sorted by their mean rank over the metrics (rank 1 = best by the metric's
  direction; ties share the mean rank);
* the leader of a metric is marked *best* only where a two-sided Wilcoxon signed-rank test
  over the samples both were scored on (paired) separates it from the runner-up, the next
  method by mean whose scores are not identical to the leader's, at p < :data:`ALPHA`.
  Methods whose per-sample scores equal the leader's share the mark;
* methods with identical per-sample scores in every metric are named in a note (on a
  bias-free ReLU network GxI, IG, DeepLIFT and uniform FullGrad coincide by paper 01's
  theorem).
"""

from __future__ import annotations

import base64
import csv
import inspect
import math
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from .store import ResultStore

#: Significance level of the paired test behind a "best" mark.
ALPHA = 0.05
#: Methods per map grid in the report (small multiples stay readable at page width).
GRID_METHODS = 6
#: Per-sample scores closer than this (relative) count as identical.
IDENTICAL_RTOL = 1e-6


@dataclass
class Cell:
    mean: float
    se: float
    n: int
    best: bool = False
    p: float | None = None  # p-value of the leader vs the runner-up (leader cells only)

    def text(self) -> str:
        return f"{self.mean:.4g} ± {self.se:.2g}"


def _per_sample(store: ResultStore) -> dict[tuple[str, str], dict[int, float]]:
    values: dict[tuple[str, str], dict[int, float]] = defaultdict(dict)
    for method, metric, sample, score in store.scores():
        values[(method, metric)][int(sample)] = float(score)
    return values


def _same(a: Mapping[int, float], b: Mapping[int, float]) -> bool:
    if a.keys() != b.keys():
        return False
    x = np.array([a[s] for s in a])
    y = np.array([b[s] for s in a])
    return bool(np.allclose(x, y, rtol=IDENTICAL_RTOL, atol=1e-12, equal_nan=True))


def paired_p(a: Mapping[int, float], b: Mapping[int, float]) -> float:
    """Two-sided Wilcoxon signed-rank p-value of the paired differences a - b over the
    samples both have (1.0 when fewer than two differ from zero)."""
    from scipy.stats import wilcoxon

    common = sorted(set(a) & set(b))
    d = np.array([a[s] - b[s] for s in common])
    d = d[np.isfinite(d)]
    if np.count_nonzero(d) < 2:
        return 1.0
    return float(wilcoxon(d, zero_method="wilcox", alternative="two-sided").pvalue)


def leaderboard(store: ResultStore) -> tuple[list[str], list[str], dict[tuple[str, str], Cell]]:
    """(methods, metrics, cells): mean and standard error per method and metric; methods
    sorted by mean rank over the metrics; a metric's leader marked best only where it is
    significantly better than the runner-up (module docstring)."""
    values = _per_sample(store)
    methods = sorted({m for m, _ in values})
    metrics = sorted({k for _, k in values})
    direction = store.info("higher_is_better", {})
    cells = {}
    for key, v in values.items():
        arr = np.asarray(list(v.values()), dtype=float)
        se = float(arr.std(ddof=1) / math.sqrt(len(arr))) if len(arr) > 1 else float("nan")
        cells[key] = Cell(float(arr.mean()), se, len(arr))
    ranks: dict[str, list[float]] = defaultdict(list)
    for k in metrics:
        up = direction.get(k, True)
        scored = sorted((m for m in methods if (m, k) in cells),
                        key=lambda m: -cells[(m, k)].mean if up else cells[(m, k)].mean)
        if not scored:
            continue
        means = np.array([cells[(m, k)].mean for m in scored])
        from scipy.stats import rankdata

        for m, r in zip(scored, rankdata(-means if up else means)):
            ranks[m].append(float(r))
        leader = scored[0]
        tied = [m for m in scored if _same(values[(m, k)], values[(leader, k)])]
        rest = [m for m in scored if m not in tied]
        if not rest:
            continue
        p = paired_p(values[(leader, k)], values[(rest[0], k)])
        for m in tied:
            cells[(m, k)].p = p
            cells[(m, k)].best = p < ALPHA
    methods.sort(key=lambda m: (np.mean(ranks[m]) if ranks[m] else math.inf, m))
    return methods, metrics, cells


def identical_groups(store: ResultStore) -> list[list[str]]:
    """Groups (of two or more) of methods whose per-sample scores agree in every metric."""
    values = _per_sample(store)
    methods = sorted({m for m, _ in values})
    metrics = sorted({k for _, k in values})
    groups: list[list[str]] = []
    for m in methods:
        for g in groups:
            if all((m, k) in values and (g[0], k) in values
                   and _same(values[(m, k)], values[(g[0], k)]) for k in metrics):
                g.append(m)
                break
        else:
            groups.append([m])
    return [g for g in groups if len(g) > 1]


_NIB_THEOREM = {"gxi", "ig", "deeplift", "ufg"}


def coincidence_notes(store: ResultStore) -> list[str]:
    """One note per group of methods with identical scores, saying why where it is known."""
    cfg = store.info("config", {}) or {}
    meta = store.info("meta", {}) or {}
    model = " ".join(str(v) for v in (cfg.get("checkpoint"), (meta.get("arch") or {}).get("name"))
                     if v)
    notes = []
    for g in identical_groups(store):
        text = f"{', '.join(g)} have identical per-sample scores in every metric."
        if len(_NIB_THEOREM & set(g)) >= 2:
            if "nib" in model.lower():
                text += (" This is expected, not a bug: the model is a ReLU network with no "
                         "implicit bias (NIB: no bias terms, bias-free BatchNorm), hence "
                         "positively homogeneous, and paper 01 (Lee & Chang, Attribution "
                         "Mask) shows that Gradient x Input then equals Integrated Gradients "
                         "and DeepLIFT with a zero baseline; FullGrad's bias terms vanish, so "
                         "uniform FullGrad equals Gradient x Input too.")
            else:
                text += (" Gradient x Input, IG and DeepLIFT (zero baseline) and uniform "
                         "FullGrad coincide on networks without biases (paper 01).")
        notes.append(text)
    return notes


def format_leaderboard(store: ResultStore) -> str:
    """A plain-text table: methods (by mean rank) x metrics, 'mean ± se', '*' best."""
    methods, metrics, cells = leaderboard(store)
    direction = store.info("higher_is_better", {})
    head = ["method"] + [f"{k} ({'↑' if direction.get(k, True) else '↓'})" for k in metrics]
    rows = [[m] + [(cells[(m, k)].text() + (" *" if cells[(m, k)].best else ""))
                   if (m, k) in cells else "-" for k in metrics] for m in methods]
    widths = [max(len(r[i]) for r in [head] + rows) for i in range(len(head))]
    line = lambda r: "  ".join(c.ljust(w) for c, w in zip(r, widths))
    n = max((c.n for c in cells.values()), default=0)
    return "\n".join([line(head), line(["-" * w for w in widths])] + [line(r) for r in rows]
                     + [f"(mean ± standard error over {n} samples; rows by mean rank; * best: "
                        f"better than the runner-up, Wilcoxon signed-rank p < {ALPHA:g})"]
                     + [f"note: {t}" for t in coincidence_notes(store)])


# ---------------------------------------------------------------------------------- exports

def write_csv(store: ResultStore, out: Path) -> tuple[Path, Path]:
    """``leaderboard.csv`` (method, metric, direction, mean, se, n, best, p) and
    ``scores.csv`` (method, metric, sample, score); returns both paths."""
    methods, metrics, cells = leaderboard(store)
    direction = store.info("higher_is_better", {})
    board = out / "leaderboard.csv"
    with board.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["method", "metric", "higher_is_better", "mean", "se", "n", "best", "p"])
        for m in methods:
            for k in metrics:
                c = cells.get((m, k))
                if c is not None:
                    w.writerow([m, k, direction.get(k, True), repr(c.mean), repr(c.se), c.n,
                                c.best, "" if c.p is None else repr(c.p)])
    scores = out / "scores.csv"
    with scores.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["method", "metric", "sample", "score"])
        for row in store.scores():
            w.writerow([row[0], row[1], row[2], repr(row[3])])
    return board, scores


def _tex(s: str) -> str:
    return s.replace("\\", r"\textbackslash{}").replace("_", r"\_").replace("&", r"\&") \
        .replace("%", r"\%").replace("#", r"\#")


def write_latex(store: ResultStore, out: Path) -> Path:
    """``leaderboard.tex``: a booktabs ``tabular`` of the leaderboard (best in bold)."""
    methods, metrics, cells = leaderboard(store)
    direction = store.info("higher_is_better", {})
    arrows = {True: r"$\uparrow$", False: r"$\downarrow$"}
    lines = [r"% attrlab bench leaderboard: mean $\pm$ standard error over samples; bold: "
             rf"better than the runner-up (Wilcoxon signed-rank, $p < {ALPHA:g}$)",
             r"\begin{tabular}{l" + "r" * len(metrics) + "}", r"\toprule",
             "method & " + " & ".join(f"{_tex(k)} {arrows[bool(direction.get(k, True))]}"
                                      for k in metrics) + r" \\", r"\midrule"]
    for m in methods:
        row = []
        for k in metrics:
            c = cells.get((m, k))
            if c is None:
                row.append("--")
                continue
            t = f"{c.mean:.4g} $\\pm$ {c.se:.2g}"
            row.append(rf"\textbf{{{t}}}" if c.best else t)
        lines.append(_tex(m) + " & " + " & ".join(row) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}", ""]
    path = out / "leaderboard.tex"
    path.write_text("\n".join(lines), encoding="utf-8")
    return path


# ----------------------------------------------------------------------------------- figures

_XLABEL = {"morf": "fraction of features removed (most relevant first)",
           "lerf": "fraction of features removed (least relevant first)",
           "lerf_change": "fraction of features removed (least relevant first)",
           "deletion": "fraction of pixels deleted (most relevant first)",
           "insertion": "fraction of pixels inserted (most relevant first)",
           "mia": "mask iteration", "sanity": "layers randomised (top down)"}
_YLABEL = {"morf": "target probability", "lerf": "target probability",
           "deletion": "target probability", "insertion": "target probability",
           "lerf_change": "|fractional change of the target logit|",
           "mia": "fraction classified correctly", "sanity": "similarity to the original map"}


def _label(table: Mapping[str, str], metric: str, default: str) -> str:
    return table.get(metric, table.get(metric.split("_")[0], default))


def curve_style(i: int) -> dict[str, Any]:
    """Line style of the i-th method: 10 distinct colours (tab10) x solid/dashed/dotted, with
    a marker per colour cycle, so 16+ methods stay distinguishable."""
    from matplotlib import colormaps

    markers = ("", "o", "s")
    return {"color": colormaps["tab10"](i % 10), "ls": ("-", "--", ":")[i // 10 % 3],
            "marker": markers[i // 10 % 3], "markersize": 3}


def plot_curves(store: ResultStore, metric: str, path: Path) -> Path:
    """Mean curve of every method for a curve metric, ± one standard error as a band, axes
    labelled, the legend outside the plot (methods in leaderboard order)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    curves = store.curves(metric)
    order = [m for m in leaderboard(store)[0] if m in curves] + \
        sorted(m for m in curves if m not in leaderboard(store)[0])
    fig = Figure(figsize=(6.4, 3.6), layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    for i, method in enumerate(order):
        x, ys = curves[method]
        y = np.asarray(ys, dtype=float)
        mean = y.mean(0)
        se = y.std(0, ddof=1) / math.sqrt(len(y)) if len(y) > 1 else np.zeros_like(mean)
        style = curve_style(i)
        ax.plot(x, mean, label=method, lw=1.3, **style)
        ax.fill_between(x, mean - se, mean + se, alpha=0.12, color=style["color"], lw=0)
    direction = store.info("higher_is_better", {}).get(metric, True)
    ax.set_title(f"{metric} (score: {'higher' if direction else 'lower'} is better)",
                 fontsize=10)
    ax.set_xlabel(_label(_XLABEL, metric, "step"), fontsize=9)
    ax.set_ylabel(_label(_YLABEL, metric, "value"), fontsize=9)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False,
              title="mean ± 1 s.e.", title_fontsize=7)
    ax.grid(alpha=0.3)
    fig.savefig(path, dpi=110)
    return path


def sample_maps(cfg: dict[str, Any], out: Path, per_grid: int = GRID_METHODS,
                order: Sequence[str] = (), setup: Any = None) -> list[Path]:
    """Heatmap grids of the first ``report_samples`` samples: the methods in groups of at most
    ``per_grid`` per figure (each with the input column), so every grid is readable at page
    width; methods in ``order`` (the leaderboard's) first. Returns the PNG paths
    (``samples.png``, ``samples_2.png``, ...)."""
    import torch

    from ..viz import denormalize, plot_grid
    from .bench import BenchConfig, resolve

    k = int(cfg["report_samples"])
    if setup is None:
        setup = resolve(BenchConfig.from_dict({**cfg, "limit": k}), with_metrics=False)
    x, y = setup.dataset.tensors(setup.indices[:k])
    dev = next(iter(setup.model.parameters()), torch.empty(0)).device
    x, y = x.to(dev), y.to(dev)
    maps, signed = {}, {}
    ranked = [m for m in order if m in setup.methods] + \
        [m for m in setup.methods if m not in order]
    for name in ranked:
        method = setup.methods[name]
        maps[name] = method.attribute(x, y, **method.seeded(int(cfg.get("seed", 0)))) \
            .detach().cpu()
        signed[name] = bool(getattr(method, "signed", True))
        layer = getattr(method, "layer_name", None)
        if layer:
            maps[f"{name}\n@{layer}"] = maps.pop(name)
            signed[f"{name}\n@{layer}"] = signed.pop(name)
    with torch.no_grad():
        preds = setup.model(x).argmax(1).tolist()
    info = setup.dataset.info
    classes = list(getattr(info, "classes", ()) or ())
    name = lambda c: classes[c] if 0 <= c < len(classes) else str(c)
    titles = [f"pred {name(p)}\ntrue {name(int(t))}" for p, t in zip(preds, y)]
    images = denormalize(x.cpu(), info.mean, info.std)
    names = list(maps)
    paths = []
    for j in range(0, len(names), per_grid):
        part = names[j:j + per_grid]
        file = out / ("samples.png" if j == 0 else f"samples_{j // per_grid + 1}.png")
        paths.append(plot_grid(images, {m: maps[m] for m in part},
                               {m: signed[m] for m in part}, titles, file, cell_inches=1.4))
    return paths


# ------------------------------------------------------------------------------------ report

def _data_uri(path: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode("ascii")


def _first_paragraph(doc: str) -> tuple[str, str]:
    """(first paragraph as one line, the rest) of a docstring."""
    text = inspect.cleandoc(doc or "")
    head, _, rest = text.partition("\n\n")
    return " ".join(head.split()), rest.strip()


def glossary(metrics: Sequence[str]) -> list[dict[str, Any]]:
    """Per metric: name, category, direction, its definition (docstring) and cost."""
    from .. import metrics as M

    rows = []
    for k in metrics:
        try:
            cls = M.metric_class(k)
        except (KeyError, ValueError):
            rows.append({"name": k, "summary": "(not a registered metric)", "details": "",
                         "category": "", "up": True, "cost": ""})
            continue
        summary, details = _first_paragraph(cls.__doc__ or "")
        rows.append({"name": k, "summary": summary, "details": details,
                     "category": cls.category, "up": cls.higher_is_better,
                     "cost": cls.cost_formula})
    return rows


def _options(kind: str, name: str, given: Mapping[str, Any]) -> list[tuple[str, str, bool]]:
    """(option, value, given?) for every option of a method or metric."""
    from .. import methods as Me
    from .. import metrics as M

    out: dict[str, tuple[str, bool]] = {}
    try:
        if kind == "method":
            cls = Me.method_class(name)
            from ..methods.options import structural_params

            for k, p in structural_params(cls).items():
                out[k] = (repr(p.default), False)
            for k, o in cls.option_specs().items():
                out[k] = (repr(o.default), False)
        else:
            cls = M.metric_class(name)
            for k, p in inspect.signature(cls.__init__).parameters.items():
                if k != "self" and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) \
                        and p.default is not inspect.Parameter.empty:
                    out[k] = (repr(p.default), False)
    except (KeyError, ValueError):
        pass
    for k, v in given.items():
        out[k] = (repr(v), True)
    return [(k, v, g) for k, (v, g) in out.items()]


TEMPLATE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>attrlab bench report: {{ model }} on {{ dataset }}</title>
<style>
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1250px; color: #222;
       line-height: 1.4; padding: 0 1em; }
table { border-collapse: collapse; margin: 0.8em 0; font-size: 0.92em; }
th, td { border: 1px solid #ccc; padding: 3px 8px; text-align: right; vertical-align: top; }
#leaderboard td { white-space: nowrap; }
th { background: #f3f3f3; cursor: pointer; user-select: none; }
th:first-child, td:first-child { text-align: left; }
td.best { font-weight: bold; background: #e3f2e3; }
td.text, th.text { text-align: left; }
.note { background: #fff8e1; border-left: 4px solid #f0c040; padding: 0.5em 0.8em; }
.caption { color: #555; font-size: 0.9em; }
img { max-width: 100%; }
.curves img { width: 49%; min-width: 420px; }
code { background: #f3f3f3; padding: 0 3px; }
details { margin: 0.2em 0; }
</style>
</head>
<body>
<h1>attrlab bench report</h1>
<p>Model <b>{{ model }}</b> on <b>{{ dataset }}</b> ({{ split }} split, {{ n }} samples,
explaining the {{ 'true label' if target == 'label' else 'predicted class' }}),
{{ methods|length }} methods x {{ metrics|length }} metrics.
Exports: <code>leaderboard.csv</code>, <code>scores.csv</code> (every per-sample score),
<code>leaderboard.tex</code>, next to this file.</p>
{% for note in notes %}<p class="note">{{ note }}</p>
{% endfor %}
<h2>Leaderboard</h2>
<p class="caption">Mean ± standard error over samples. Rows are sorted by mean rank over the
metrics (click a column header to sort by it). <b>Bold</b>: the best method of a metric,
only where a two-sided Wilcoxon signed-rank test over the same samples separates it from the
runner-up (p &lt; {{ alpha }}); methods with scores identical to the leader's share it.
↑ higher is better, ↓ lower is better. Time: attribution wall time per sample
({{ device }}).</p>
<table class="sortable" id="leaderboard">
<thead><tr><th>method</th><th>mean rank</th>{% for k in metrics %}<th>{{ k }} {{ '↑' if direction.get(k, True) else '↓' }}</th>{% endfor %}<th>time / sample</th></tr></thead>
<tbody>
{% for m in methods %}<tr><td>{{ m }}</td><td data-v="{{ rank[m] }}">{{ '%.1f'|format(rank[m]) }}</td>{% for k in metrics %}{% set c = cells.get((m, k)) %}<td data-v="{{ c.mean if c else '' }}"{% if c and c.best %} class="best" title="p = {{ '%.2g'|format(c.p) }}"{% endif %}>{{ c.text() if c else '-' }}</td>{% endfor %}<td data-v="{{ seconds.get(m, '') }}">{{ timing(m) }}</td></tr>
{% endfor %}</tbody></table>
{% if undecided %}<p class="caption">No significant leader (p ≥ {{ alpha }} against the
runner-up): {{ undecided|join(', ') }}.</p>{% endif %}
<h2>Metrics</h2>
<table>
<thead><tr><th>metric</th><th class="text">category</th><th>better</th><th class="text">definition</th><th class="text">cost</th></tr></thead>
<tbody>
{% for g in glossary %}<tr><td>{{ g.name }}</td><td class="text">{{ g.category }}</td><td>{{ '↑ higher' if g.up else '↓ lower' }}</td><td class="text">{{ g.summary }}{% if g.details %}<details><summary>details</summary><pre style="white-space: pre-wrap">{{ g.details }}</pre></details>{% endif %}</td><td class="text">{{ g.cost }}</td></tr>
{% endfor %}</tbody></table>
{% if samples %}<h2>Attribution maps</h2>
<p class="caption">First {{ report_samples }} samples: the input, then one map per method
(Grad-CAM with the layer it used). Signed maps in blue-white-red (white = 0), non-negative
maps in a sequential palette; each map's colour limit L (under it) is its 98th percentile of
|a|, so a few extreme values saturate instead of blanking the rest.</p>
{% for s in samples %}<img src="{{ s }}" alt="attribution maps {{ loop.index }}">
{% endfor %}{% endif %}
{% if curves %}<h2>Curves</h2>
<p class="caption">Mean curve per method over the samples; the band is ± one standard
error. The metric's score is the area under (or mean of) its curve.</p>
<div class="curves">{% for c in curves %}<img src="{{ c.src }}" alt="{{ c.name }} curve">{% endfor %}</div>{% endif %}
<h2>Options used</h2>
<p class="caption">Every option of each method and metric; values set for this run in bold,
the others are the defaults.</p>
<table>
<thead><tr><th>method / metric</th><th class="text">options</th></tr></thead>
<tbody>
{% for name, opts in options %}<tr><td>{{ name }}</td><td class="text">{% if not opts %}(no options){% endif %}{% for k, v, given in opts %}{% if given %}<b>{{ k }}={{ v }}</b>{% else %}{{ k }}={{ v }}{% endif %}{% if not loop.last %}, {% endif %}{% endfor %}</td></tr>
{% endfor %}</tbody></table>
<h2>Run</h2>
<table>
<tbody>
{% for k, v in run %}<tr><td>{{ k }}</td><td class="text">{{ v }}</td></tr>
{% endfor %}</tbody></table>
<script>
document.querySelectorAll("table.sortable th").forEach(function (th, col) {
  th.addEventListener("click", function () {
    var body = th.closest("table").tBodies[0];
    var rows = Array.from(body.rows);
    var up = th.dataset.dir !== "asc";
    th.dataset.dir = up ? "asc" : "desc";
    rows.sort(function (a, b) {
      var x = a.cells[col].dataset.v, y = b.cells[col].dataset.v;
      if (x === undefined) { x = a.cells[col].textContent; y = b.cells[col].textContent; }
      var nx = parseFloat(x), ny = parseFloat(y);
      var c = (isNaN(nx) || isNaN(ny)) ? String(x).localeCompare(String(y)) : nx - ny;
      return up ? c : -c;
    });
    rows.forEach(function (r) { body.appendChild(r); });
  });
});
</script>
</body>
</html>
"""


def write_report(store_path: str | Path, with_maps: bool = True, setup: Any = None) -> Path:
    """Write ``report.html`` (self-contained: images inlined), the PNGs it shows,
    ``leaderboard.csv``, ``scores.csv`` and ``leaderboard.tex`` next to the store; returns the
    HTML path. The map grid recomputes a few maps from the stored configuration, or from
    ``setup`` (:func:`attrlab.experiments.bench.resolve`'s result) when the model or data
    came from Python."""
    from jinja2 import Environment, select_autoescape

    store_path = Path(store_path)
    out = store_path.parent
    with ResultStore(store_path) as store:
        methods, metrics, cells = leaderboard(store)
        if not methods:
            raise ValueError(f"{store_path} holds no results yet: run attrlab bench first")
        cfg = store.info("config", {}) or {}
        meta = store.info("meta", {}) or {}
        direction = store.info("higher_is_better", {})
        write_csv(store, out)
        write_latex(store, out)
        curves = [{"name": k, "src": _data_uri(plot_curves(store, k, out / f"curve_{k}.png"))}
                  for k in store.curve_metrics()]
        samples = ([_data_uri(p) for p in sample_maps(cfg, out, order=methods, setup=setup)]
                   if with_maps and int(cfg.get("report_samples") or 0) > 0 else [])
        timing = store.info("method_seconds", {}) or {}
        seconds = {m: t[0] / t[1] for m, t in timing.items() if t and t[1]}
        values = _per_sample(store)
        ranks = {}
        for m in methods:
            rs = []
            for k in metrics:
                up = direction.get(k, True)
                col = sorted(cells[(o, k)].mean for o in methods if (o, k) in cells)
                if (m, k) in cells:
                    v = cells[(m, k)].mean
                    better = sum(1 for c in col if (c > v if up else c < v))
                    same = sum(1 for c in col if c == v)
                    rs.append(better + (same + 1) / 2)
            ranks[m] = float(np.mean(rs)) if rs else math.nan
        undecided = [k for k in metrics if not any(cells[(m, k)].best for m in methods
                                                   if (m, k) in cells)
                     and sum((m, k) in values for m in methods) > 1]
        given_methods = cfg.get("method_options") or {}
        given_metrics = cfg.get("metric_options") or {}
        layers = store.info("method_layers", {}) or {}
        options = []
        for m in methods:
            opts = _options("method", m, given_methods.get(m, {}))
            if m in layers:  # the layer a default (None) resolved to
                opts = [(k, f"{layers[m]!r} (chosen)" if k == "layer" and not g else v, g)
                        for k, v, g in opts]
            options.append((m, opts))
        options += [(k, _options("metric", k, given_metrics.get(k, {}))) for k in metrics]
        versions = store.info("versions", {}) or {}
        model_name = cfg.get("torchvision") or cfg.get("checkpoint") or store.info("model_name")
        run = [("model", model_name),
               ("data", f"{cfg.get('dataset') or meta.get('dataset')} ({cfg.get('split')})"),
               ("samples", "all" if cfg.get("limit") is None else f"first {cfg.get('limit')}"),
               ("target", cfg.get("target")), ("batch size", cfg.get("batch_size")),
               ("seed", cfg.get("seed")), ("device", cfg.get("device")),
               ("wall time of the last run", f"{store.info('seconds_last_run', 0) or 0:.1f} s"),
               ("versions", ", ".join(f"{k} {v}" for k, v in versions.items()))]
        env = Environment(autoescape=select_autoescape(default=True))

        def fmt_time(m: str) -> str:
            s = seconds.get(m)
            if s is None:
                return "-"
            return f"{s * 1e3:.3g} ms" if s < 1 else f"{s:.3g} s"

        page = env.from_string(TEMPLATE).render(
            model=model_name,
            dataset=cfg.get("dataset") or meta.get("dataset"), split=cfg.get("split"),
            target=cfg.get("target", "label"),
            n=max(c.n for c in cells.values()), methods=methods, metrics=metrics, cells=cells,
            direction=direction, alpha=ALPHA, rank=ranks, seconds=seconds, timing=fmt_time,
            device=cfg.get("device", "cpu"), undecided=undecided,
            notes=list(store.info("notes", []) or []) + coincidence_notes(store),
            glossary=glossary(metrics), samples=samples,
            report_samples=cfg.get("report_samples"), curves=curves, options=options, run=run)
    path = out / "report.html"
    path.write_text(page, encoding="utf-8")
    return path


__all__ = ["ALPHA", "Cell", "coincidence_notes", "format_leaderboard", "glossary",
           "identical_groups", "leaderboard", "paired_p", "plot_curves", "write_csv",
           "write_latex", "write_report"]
