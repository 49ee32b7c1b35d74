"""Plain-gradient methods: Saliency, Gradient x Input, PGxI, GxSI, Integrated Gradients and
Guided Integrated Gradients."""

from .gradient_x_input import GradientXInput
from .gradient_x_sign_of_input import GradientXSignOfInput
from .guided_ig import GuidedIntegratedGradients
from .integrated_gradients import BaselineMixin, IntegratedGradients, riemann_or_gauss
from .positive_gradient_x_input import PositiveGradientXInput
from .saliency import Saliency

__all__ = ["BaselineMixin", "GradientXInput", "GradientXSignOfInput", "GuidedIntegratedGradients",
           "IntegratedGradients", "PositiveGradientXInput", "Saliency", "riemann_or_gauss"]
