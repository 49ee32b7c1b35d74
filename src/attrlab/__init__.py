"""attrlab: compute, compare and evaluate input feature attributions of PyTorch classifiers.

``import attrlab`` gives the library's packages, each imported on first use:
``attrlab.data``, ``attrlab.methods``, ``attrlab.metrics``, ``attrlab.models``, ``attrlab.viz``
(and ``attrlab.core``, ``attrlab.experiments``).

Layers, each importing only the ones below it (``tests/test_layering.py`` enforces this):
``core`` -> ``data``, ``models``, ``viz`` -> ``methods`` -> ``metrics`` -> ``experiments`` -> ``cli``.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"
_PACKAGES = ("core", "data", "methods", "metrics", "models", "viz", "experiments")
__all__ = [*_PACKAGES, "__version__"]


def __getattr__(name: str) -> Any:
    if name in _PACKAGES:
        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module 'attrlab' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
