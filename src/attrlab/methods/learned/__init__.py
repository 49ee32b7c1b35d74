"""Learned explainers, fitted with :meth:`attrlab.methods.base.Attribution.fit`: Variational
Perturbations and nVP (paper 05), on the shared machinery of :mod:`.explainer`."""

from .vp import NonVariationalPerturbations, VariationalPerturbations

__all__ = ["NonVariationalPerturbations", "VariationalPerturbations"]
