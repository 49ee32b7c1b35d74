"""Shared pieces of the paper reproductions: benchmark runs through the resumable
:mod:`attrlab.bench` store, per-method means of scores and curves, Markdown tables with the
paper's figures beside ours, and the report files (``REPORT.md``, ``results.json``)."""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from ..bench import BenchConfig, run
from ..store import ResultStore


def bench(cfg: BenchConfig, progress: bool = True) -> ResultStore:
    """Run (or resume) ``cfg`` and return its opened result store (close it after use)."""
    return ResultStore(run(cfg, progress=progress))


def mean_sem(values: Sequence[float]) -> tuple[float, float]:
    """Mean and standard error of the mean (0 for fewer than two values)."""
    n = len(values)
    if n == 0:
        return math.nan, math.nan
    m = sum(values) / n
    if n < 2:
        return m, 0.0
    var = sum((v - m) ** 2 for v in values) / (n - 1)
    return m, math.sqrt(var / n)


def method_means(store: ResultStore, metric: str) -> dict[str, tuple[float, float]]:
    """Per method: (mean, sem) of ``metric``'s per-sample scores."""
    rows: dict[str, list[float]] = {}
    for method, k, _, score in store.scores():
        if k == metric:
            rows.setdefault(method, []).append(score)
    return {m: mean_sem(v) for m, v in rows.items()}


def mean_curves(store: ResultStore, metric: str) -> dict[str, tuple[list[float], list[float]]]:
    """Per method: the x axis and the mean over samples of ``metric``'s curves."""
    out = {}
    for method, (xs, ys) in store.curves(metric).items():
        out[method] = (xs, [sum(col) / len(col) for col in zip(*ys)])
    return out


def fmt(value: float | None, digits: int = 1, scale: float = 1.0) -> str:
    """Number for a table cell ('-' for missing/NaN)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value * scale:.{digits}f}"


def markdown_table(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """A GitHub-flavoured Markdown table."""
    lines = ["| " + " | ".join(map(str, header)) + " |",
             "| " + " | ".join("---" for _ in header) + " |"]
    lines += ["| " + " | ".join(map(str, r)) + " |" for r in rows]
    return "\n".join(lines)


def plot_lines(series: dict[str, tuple[Sequence[float], Sequence[float]]], path: Path,
               title: str, xlabel: str, ylabel: str) -> Path:
    """One line per entry of ``series`` (label -> (x, y)), saved as a PNG."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.6))
    for label, (x, y) in series.items():
        ax.plot(x, y, marker="o", ms=3, label=label)
    ax.set(title=title, xlabel=xlabel, ylabel=ylabel)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def write_report(out: Path, title: str, sections: Sequence[str], results: dict[str, Any]) -> Path:
    """Write ``out/REPORT.md`` (title + sections) and ``out/results.json``; returns the
    Markdown path."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(results, indent=2, default=str))
    path = out / "REPORT.md"
    path.write_text(f"# {title}\n\n" + "\n\n".join(sections) + "\n", encoding="utf-8")
    return path


__all__ = [
    "BenchConfig",
    "bench",
    "fmt",
    "markdown_table",
    "mean_curves",
    "mean_sem",
    "method_means",
    "plot_lines",
    "replace",
    "write_report",
]
