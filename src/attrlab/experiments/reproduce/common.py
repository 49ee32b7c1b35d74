"""Shared pieces of the paper reproductions: benchmark runs through the resumable
:mod:`attrlab.bench` store, per-method means of scores and curves, Markdown tables and cells
with the paper's figures beside ours, option parsing (``only``, fractions such as ``q_values``)
and the report files (``REPORT.md``, ``results.json``) with the record they accumulate in a
store (``record.sqlite``)."""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

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


def pct(fraction: float) -> str:
    """The key of a fraction in the results: its rounded percentage (``"60"`` for 0.6)."""
    return f"{round(100 * fraction)}"


def cell(ours: float | None, paper: float | None = None, digits: int = 3,
         bold: bool = False) -> str:
    """A table cell: our value (bold if ``bold``), the paper's in brackets when given."""
    text = fmt(ours, digits)
    if bold and text != "-":
        text = f"**{text}**"
    return text if paper is None else f"{text} ({fmt(paper, digits)})"


def label_summary(labels: Tensor, classes: Sequence[str]) -> str:
    """How the images of ``labels`` spread over the classes, for the report."""
    counts = torch.bincount(torch.as_tensor(labels).long().flatten(), minlength=len(classes))
    present = [(classes[c], int(k)) for c, k in enumerate(counts.tolist()) if k]
    if len(present) == len(classes):
        return (f"all {len(classes)} classes, {int(counts.min())} to {int(counts.max())} "
                "images each")
    return "only " + ", ".join(f"{name} ({k})" for name, k in present)


def best_method(values: Mapping[str, float], higher_is_better: bool) -> str | None:
    """The key with the best finite value (first one on ties); None if there is none."""
    finite = {k: v for k, v in values.items() if v is not None and math.isfinite(v)}
    if not finite:
        return None
    pick = max if higher_is_better else min
    return pick(finite, key=lambda k: finite[k])


def select_parts(only: Sequence[str] | str | None, parts: Sequence[str]) -> tuple[str, ...]:
    """The experiments to run, in the order of ``parts``: ``only`` (names among ``parts``, a
    sequence or a comma-separated string; None: all)."""
    if only is None:
        chosen = list(parts)
    else:
        chosen = [p.strip() for p in only.split(",")] if isinstance(only, str) else list(only)
        unknown = [p for p in chosen if p not in parts]
        if not chosen or unknown:
            raise ValueError(f"only must name experiments among {', '.join(parts)}, got "
                             f"{only!r}")
    return tuple(p for p in parts if p in chosen)


def parse_q_values(q_values: Sequence[float] | str) -> tuple[float, ...]:
    """Table 2's q as fractions in (0, 1], from a number, a sequence or a string such as
    ``"0.1,0.5"``."""
    if isinstance(q_values, (int, float)) and not isinstance(q_values, bool):
        q_values = [q_values]  # --option q_values=0.5 arrives as a number
    qs = q_values.split(",") if isinstance(q_values, str) else q_values
    try:
        qs = tuple(float(q) for q in qs)
    except (TypeError, ValueError):
        raise ValueError(f"q_values must be numbers in (0, 1], got {q_values!r}") from None
    if not qs or not all(0 < q <= 1 for q in qs):
        raise ValueError(f"q_values must be numbers in (0, 1], got {q_values!r}")
    return qs


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


RECORD_STORE = "record.sqlite"


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file and a rename, so that a kill
    leaves the old file or the new one, never a torn one."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def load_record(out: Path) -> dict[str, Any]:
    """The record that earlier calls in ``out`` accumulated ({} if none): the ``record``
    artefact of ``out/record.sqlite`` (written in one transaction by :func:`write_report`).
    A folder made before that store existed holds only ``results.json``, which is read
    instead (and kept in the store from the next report on)."""
    out = Path(out)
    if (out / RECORD_STORE).exists():
        with ResultStore(out / RECORD_STORE) as store:
            record = store.artefact("record")
        if record is not None:
            return record
    legacy = out / "results.json"
    if not legacy.exists():
        return {}
    try:
        return json.loads(legacy.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{legacy} is not valid JSON ({e}): a torn file from an older "
                         "attrlab; remove it or use another output folder") from None


def write_report(out: Path, title: str, sections: Sequence[str], results: dict[str, Any]) -> Path:
    """Store ``results`` as the folder's record (:func:`load_record`), then write
    ``out/results.json`` (its export) and ``out/REPORT.md`` (title + sections), each
    atomically; returns the Markdown path."""
    out.mkdir(parents=True, exist_ok=True)
    text = json.dumps(results, indent=2, default=str)
    with ResultStore(out / RECORD_STORE) as store:
        store.put_artefact("record", json.loads(text), kind="json")
    atomic_write_text(out / "results.json", text)
    path = out / "REPORT.md"
    atomic_write_text(path, f"# {title}\n\n" + "\n\n".join(sections) + "\n")
    return path


__all__ = [
    "BenchConfig",
    "bench",
    "best_method",
    "cell",
    "atomic_write_text",
    "fmt",
    "label_summary",
    "load_record",
    "markdown_table",
    "mean_curves",
    "mean_sem",
    "method_means",
    "parse_q_values",
    "pct",
    "plot_lines",
    "replace",
    "select_parts",
    "write_report",
]
