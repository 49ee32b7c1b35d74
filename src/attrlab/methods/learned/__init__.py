"""Learned explainers, fitted with :meth:`attrlab.methods.base.Attribution.fit`: Variational
Perturbations and nVP (paper 05) and L2X (Chen et al. 2018) on the common :class:`.base.LearnedExplainer` and the shared
machinery of :mod:`.explainer`."""

from .base import LearnedExplainer
from .l2x import L2X
from .vp import NonVariationalPerturbations, VariationalPerturbations

__all__ = ["L2X", "LearnedExplainer", "NonVariationalPerturbations", "VariationalPerturbations"]
