"""Optimisation methods: a mask (or another explanation) optimised per sample, the whole
batch at once through :func:`attrlab.core.optimise.optimise`, with the mask machinery of
:mod:`attrlab.core.masks`: Meaningful Perturbation and Extremal Perturbation."""

from .extremal_perturbation import ExtremalPerturbation
from .meaningful_perturbation import MeaningfulPerturbation

__all__ = ["ExtremalPerturbation", "MeaningfulPerturbation"]
