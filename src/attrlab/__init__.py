"""attrlab: compute, compare and evaluate input feature attributions of PyTorch classifiers."""

from . import methods

__version__ = "0.1.0"
__all__ = ["methods", "__version__"]
