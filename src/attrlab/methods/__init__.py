"""Attribution methods: a registry of Captum-style classes, one file per method in family
folders (``gradient``, ``backprop``, ``cam``, ``aggregate``; ``perturbation``, ``optimisation``,
``pruning`` and ``learned`` are the homes of the next families). Layer attributions (Captum's
``Layer*``: results shaped like a layer's activations, not like the inputs) have their own
registry in :mod:`attrlab.methods.layer`.

>>> from attrlab import methods
>>> methods.available()  # doctest: +SKIP
>>> maps = methods.get("gxsi", model).attribute(x, target=y)  # doctest: +SKIP
"""

from .aggregate import AttributionMask, DistilledGradientAggregation, NoiseTunnel
from .backprop import DeepLift, DeepLiftShap, GuidedBackprop, RectGrad
from .base import Attribution, Option, available, get, method_class, register
from .cam import FullGrad, FullGradTerms, GradCAM, UniformFullGrad
from .gradient import (
                       GradientXInput,
                       GradientXSignOfInput,
                       GuidedIntegratedGradients,
                       IntegratedGradients,
                       PositiveGradientXInput,
                       Saliency,
)
from .information import IBA, InputIBA
from .learned import L2X, NonVariationalPerturbations, VariationalPerturbations
from .layer import (
                    LayerDeepLift,
                    LayerGradCam,
                    LayerGradientXActivation,
                    LayerIntegratedGradients,
                    LayerSaliency,
)
from .optimisation import ExtremalPerturbation, MeaningfulPerturbation
from .perturbation import FeatureAblation, KernelShap, Lime, Occlusion, Rise
from .pruning import PruneGrad, PrunePGD

__all__ = [
    "Attribution", "Option", "available", "get", "method_class", "register",
    "Saliency", "GradientXInput", "PositiveGradientXInput", "GradientXSignOfInput",
    "IntegratedGradients", "NoiseTunnel", "GuidedBackprop", "RectGrad", "DeepLift",
    "DeepLiftShap", "GradCAM", "FullGrad", "FullGradTerms", "UniformFullGrad", "AttributionMask",
    "DistilledGradientAggregation", "GuidedIntegratedGradients",
    "LayerSaliency", "LayerGradientXActivation", "LayerIntegratedGradients", "LayerDeepLift",
    "LayerGradCam", "IBA", "InputIBA",
    "MeaningfulPerturbation", "ExtremalPerturbation",
    "Occlusion", "FeatureAblation", "Rise", "Lime", "KernelShap",
    "PruneGrad", "PrunePGD",
    "VariationalPerturbations", "NonVariationalPerturbations", "L2X",
]
