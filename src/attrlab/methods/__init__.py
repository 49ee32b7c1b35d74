"""Attribution methods: a registry of Captum-style classes.

>>> from attrlab import methods
>>> methods.available()  # doctest: +SKIP
>>> maps = methods.get("gxsi", model).attribute(x, target=y)  # doctest: +SKIP
"""

from .backprop import DeepLift, DeepLiftShap, GuidedBackprop, RectGrad
from .base import Attribution, FittedAttribution, available, get, method_class, register
from .cam import GradCAM
from .dga import DistilledGradientAggregation
from .fullgrad import FullGrad, FullGradTerms, UniformFullGrad
from .gradient import (GradientXInput, GradientXSignOfInput, IntegratedGradients, NoiseTunnel,
                       PositiveGradientXInput, Saliency)
from .guided_ig import GuidedIntegratedGradients
from .mask import AttributionMask

__all__ = [
    "Attribution", "FittedAttribution", "available", "get", "method_class", "register",
    "Saliency", "GradientXInput", "PositiveGradientXInput", "GradientXSignOfInput",
    "IntegratedGradients", "NoiseTunnel", "GuidedBackprop", "RectGrad", "DeepLift",
    "DeepLiftShap", "GradCAM", "FullGrad", "FullGradTerms", "UniformFullGrad", "AttributionMask",
    "DistilledGradientAggregation", "GuidedIntegratedGradients",
]
