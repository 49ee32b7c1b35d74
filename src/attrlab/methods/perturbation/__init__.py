"""Perturbation methods: occlusion, feature ablation, RISE, LIME and KernelSHAP. They build on
:mod:`attrlab.core.perturbation`, the engine the perturbation metrics use (feature masks,
samplers, masks and the batched masked forward)."""

from .feature_ablation import FeatureAblation
from .kernel_shap import KernelShap
from .lime import Lime
from .occlusion import Occlusion
from .rise import Rise

__all__ = ["FeatureAblation", "KernelShap", "Lime", "Occlusion", "Rise"]
