"""Robustness metrics: consistency of mask-based maps across upsample sizes and the local
Lipschitz stability estimate (paper 05, sections 4.2.1-4.2.2)."""

from .consistency import Consistency, map_similarity, minmax_maps
from .stability import LocalLipschitz, ball_samples

__all__ = ["Consistency", "LocalLipschitz", "ball_samples", "map_similarity", "minmax_maps"]
