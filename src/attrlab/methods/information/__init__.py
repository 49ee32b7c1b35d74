"""Information-bottleneck attribution (paper 02): IBA (Schulz et al. 2020) and InputIBA (Zhang et
al. 2021). Both are fitted (:meth:`~attrlab.methods.base.Attribution.fit`: the layer's
statistics) and share :mod:`attrlab.core.bottleneck`. A family of its own, rather than
``optimisation``: the maps are capacities of a noise bottleneck, and the fitted statistics,
the KL terms and the GAN stage are specific to it."""

from .iba import IBA
from .input_iba import InputIBA

__all__ = ["IBA", "InputIBA"]
