"""Pruning methods (PruneGrad, PrunePGD, paper 03): gradients of a pruned network.

Home of the next family; no method is registered here yet.
"""
