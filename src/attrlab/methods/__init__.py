"""Attribution methods: a registry of Captum-style classes.

>>> from attrlab import methods
>>> methods.available()  # doctest: +SKIP
>>> maps = methods.get("gxsi", model).attribute(x, target=y)  # doctest: +SKIP
"""

from .base import Attribution, FittedAttribution, available, get, method_class, register
from .backprop import DeepLift, DeepLiftShap, GuidedBackprop, RectGrad
from .cam import GradCAM
from .fullgrad import FullGrad, FullGradTerms, UniformFullGrad
from .mask import AttributionMask
from .dga import DistilledGradientAggregation
from .gradient import (GradientXInput, GradientXSignOfInput, IntegratedGradients, NoiseTunnel,
                       PositiveGradientXInput, Saliency)

__all__ = [
    "Attribution", "FittedAttribution", "available", "get", "method_class", "register",
    "Saliency", "GradientXInput", "PositiveGradientXInput", "GradientXSignOfInput",
    "IntegratedGradients", "NoiseTunnel", "GuidedBackprop", "RectGrad", "DeepLift",
    "DeepLiftShap", "GradCAM", "FullGrad", "FullGradTerms", "UniformFullGrad", "AttributionMask",
    "DistilledGradientAggregation",
]
