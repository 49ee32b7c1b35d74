"""Modified-backpropagation methods: Guided Backprop, RectGrad, DeepLIFT (rescale) and DeepSHAP.

The rules are applied by :class:`~attrlab.core.rules.NonlinearityRules`, which intercepts the
functional calls, so reused and in-place ``ReLU`` modules (torchvision ResNet) and functional
``F.relu`` calls (torchvision DenseNet) are handled; see that module.
"""

from .deeplift import DeepLift
from .deepshap import DeepLiftShap
from .guided_backprop import GuidedBackprop
from .rectgrad import RectGrad
from .rule_gradient import rule_gradient

__all__ = ["DeepLift", "DeepLiftShap", "GuidedBackprop", "RectGrad", "rule_gradient"]
