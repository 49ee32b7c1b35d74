"""attrlab: compute, compare and evaluate input feature attributions of PyTorch classifiers.

``import attrlab`` gives the library's packages, each imported on first use:
``attrlab.data``, ``attrlab.methods``, ``attrlab.metrics``, ``attrlab.models``, ``attrlab.viz``
(and ``attrlab.core``, ``attrlab.experiments``), and the one-call entry points
``attrlab.explain(model, images, methods=...)`` (maps + figure, :mod:`attrlab.experiments.api`)
and ``attrlab.bench`` (the harness, :mod:`attrlab.experiments.bench`).

Layers, each importing only the ones below it (``tests/test_layering.py`` enforces this):
``core`` -> ``data``, ``models``, ``viz`` -> ``methods`` -> ``metrics`` -> ``experiments`` -> ``cli``.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"
_PACKAGES = ("core", "data", "methods", "metrics", "models", "viz", "experiments")
# name -> (module, attribute or None for the module itself), imported on first use
_ENTRY_POINTS = {"explain": ("experiments.api", "explain"),
                 "Explanation": ("experiments.api", "Explanation"),
                 "bench": ("experiments.bench", None)}
__all__ = [*_PACKAGES, *_ENTRY_POINTS, "__version__"]


def __getattr__(name: str) -> Any:
    if name in _PACKAGES:
        return importlib.import_module(f".{name}", __name__)
    if name in _ENTRY_POINTS:
        module, attr = _ENTRY_POINTS[name]
        mod = importlib.import_module(f".{module}", __name__)
        return mod if attr is None else getattr(mod, attr)
    raise AttributeError(f"module 'attrlab' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
