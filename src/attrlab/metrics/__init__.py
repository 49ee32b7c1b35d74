"""Evaluation metrics for attributions: a registry of per-sample, batched metrics in category
folders (``faithfulness``, ``randomisation``; ``localisation`` and ``robustness`` are the homes
of the next categories). Remove-and-retrain is an experiment: :mod:`attrlab.experiments.roar`."""

from .base import Metric, available, get, metric_class, register
from .faithfulness import (
                           Deletion,
                           Insertion,
                           LeRF,
                           LeRFChange,
                           MaskedInputAccuracy,
                           MoRF,
                           PixelPerturbation,
                           SensitivityN,
)
from .randomisation import ModelRandomisation, rebind

__all__ = ["Metric", "available", "get", "metric_class", "register",
           "MaskedInputAccuracy", "Deletion", "Insertion", "LeRF", "LeRFChange", "MoRF",
           "PixelPerturbation", "ModelRandomisation", "rebind", "SensitivityN"]
