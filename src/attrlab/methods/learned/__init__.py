"""Learned explainers, fitted with :meth:`attrlab.methods.base.Attribution.fit`: Variational
Perturbations and nVP (paper 05) on the common :class:`.base.LearnedExplainer` and the shared
machinery of :mod:`.explainer`."""

from .base import LearnedExplainer
from .vp import NonVariationalPerturbations, VariationalPerturbations

__all__ = ["LearnedExplainer", "NonVariationalPerturbations", "VariationalPerturbations"]
