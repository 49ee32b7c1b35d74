"""Pruning methods (paper 03): attributions of a network whose unimportant ReLU activations are
pruned (masks from :mod:`attrlab.core.activation_masks`). PruneGrad is the input gradient of
the pruned network, PrunePGD an L2 PGD ascent on it."""

from .pruned import PrunedNetworkAttribution
from .prunegrad import PruneGrad
from .prunepgd import PrunePGD

__all__ = ["PruneGrad", "PrunePGD", "PrunedNetworkAttribution"]
