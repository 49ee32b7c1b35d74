"""Robustness metrics (max-sensitivity, local Lipschitz estimate): how maps change under small
input perturbations.

Home of the next category; no metric is registered here yet.
"""
