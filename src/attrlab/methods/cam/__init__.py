"""Class-activation and bias-gradient maps: Grad-CAM, FullGrad and Uniform FullGrad."""

from .fullgrad import FullGrad, FullGradTerms, fullgrad_terms, layer_bias, psi
from .gradcam import GradCAM, last_conv_name, upsample_to
from .uniform_fullgrad import UniformFullGrad

__all__ = ["FullGrad", "FullGradTerms", "GradCAM", "UniformFullGrad", "fullgrad_terms",
           "last_conv_name", "layer_bias", "psi", "upsample_to"]
