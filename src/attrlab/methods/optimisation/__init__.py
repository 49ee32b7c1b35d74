"""Optimisation methods (IBA, InputIBA, Variational Perturbations): masks optimised per batch.

Home of the next family; no method is registered here yet.
"""
