"""One-command reproductions of the papers' experiments (``attrlab reproduce NAME``).

Each module exposes ``reproduce(out, *, limit, device, data_dir, quick, progress, ...)`` that
writes ``REPORT.md`` (our tables beside the paper's), ``results.json`` and plots into ``out``
and resumes where an interrupted run stopped.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable

EXPERIMENTS: dict[str, tuple[str, str]] = {
    "attribution-mask": ("attribution_mask", "paper 01: GxSI, attribution mask, MIA (Tables 2-5, Fig. 4)"),
    "prunegrad": ("prunegrad", "paper 03: PruneGrad, PrunePGD vs Gradient, GxI, IG, GBP, RectGrad, "
                  "Grad-CAM (Figs. 2, 4, 6, 11, 12)"),
    "dga": ("dga", "paper 04: DGA vs G*I, GBP, IG, FG, GIG (Tables 1-2, Figs. 2 and 5)"),
    "vp": ("vp", "paper 05: VP, nVP vs InputGrad and the registered baselines on MNIST "
           "(Tables 1-3, Fig. 6)"),
}


def get(name: str) -> Callable:
    """The ``reproduce`` function of experiment ``name``."""
    if name not in EXPERIMENTS:
        raise ValueError(f"unknown experiment {name!r}; available: {', '.join(EXPERIMENTS)}")
    return importlib.import_module(f".{EXPERIMENTS[name][0]}", __name__).reproduce


__all__ = ["EXPERIMENTS", "get"]
