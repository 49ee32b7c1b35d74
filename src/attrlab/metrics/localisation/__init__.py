"""Localisation metrics: scores against per-sample ground truth (boxes, masks) carried with the
batch. EHR (paper 02); the pointing game and energy-based pointing game are to come."""

from .ehr import (
           EffectiveHeatRatio,
           box_masks,
           effective_heat_ratios,
           ehr_selection,
           scale_heat,
)

__all__ = ["EffectiveHeatRatio", "box_masks", "effective_heat_ratios", "ehr_selection",
           "scale_heat"]
