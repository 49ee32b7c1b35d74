"""Layer attribution (Captum's ``Layer*`` methods): attributions to the output or input of one
layer, e.g. Layer Integrated Gradients on an ``nn.Embedding`` with token-id inputs.

>>> from attrlab.methods import layer
>>> layer.available()  # doctest: +SKIP
['layer_deeplift', 'layer_gradcam', 'layer_gradient_x_activation', 'layer_ig', 'layer_saliency']
>>> lig = layer.get("layer_ig", model, "embedding", n_steps=32)  # doctest: +SKIP
>>> attr = lig.attribute(token_ids, target=y, baselines=pad_id)  # (N, L, D)  # doctest: +SKIP
"""

from .base import (
           LayerAttribution,
           available,
           get,
           last_conv_name,
           method_class,
           register,
)
from .deeplift import LayerDeepLift
from .gradcam import LayerGradCam, gradcam_map
from .gradient_x_activation import LayerGradientXActivation
from .integrated_gradients import LayerIntegratedGradients
from .saliency import LayerSaliency

__all__ = ["LayerAttribution", "LayerDeepLift", "LayerGradCam", "LayerGradientXActivation",
           "LayerIntegratedGradients", "LayerSaliency", "available", "get", "gradcam_map",
           "last_conv_name", "method_class", "register"]
