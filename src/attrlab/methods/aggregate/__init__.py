"""Methods that aggregate another method's maps: the SmoothGrad noise tunnel, the recursive
attribution mask (paper 01) and Distilled Gradient Aggregation (paper 04)."""

from .attribution_mask import AttributionMask, minmax
from .dga import DistilledGradientAggregation
from .noise_tunnel import NoiseTunnel

__all__ = ["AttributionMask", "DistilledGradientAggregation", "NoiseTunnel", "minmax"]
