"""Evaluation metrics for attributions: a registry of per-sample, batched metrics in category
folders (``faithfulness``, ``randomisation``, ``robustness``; ``localisation`` is the home of
the next category), one protocol for all (:mod:`attrlab.metrics.base`: ``compute`` /
``compute_many`` -> :class:`MetricResult`, class metadata, ground truth).
Remove-and-retrain is an experiment: :mod:`attrlab.experiments.roar`."""

from .base import (
                   CATEGORIES,
                   CurveMetric,
                   Metric,
                   MetricResult,
                   available,
                   describe,
                   get,
                   metric_class,
                   register,
)
from .faithfulness import (
                           Deletion,
                           Insertion,
                           LeRF,
                           LeRFChange,
                           MaskedInputAccuracy,
                           MoRF,
                           PixelPerturbation,
                           SensitivityN,
                           TopkLowkArea,
)
from .localisation import EffectiveHeatRatio
from .randomisation import ModelRandomisation, rebind
from .robustness import Consistency, LocalLipschitz

__all__ = ["CATEGORIES", "CurveMetric", "Metric", "MetricResult", "available", "describe",
           "get", "metric_class", "register",
           "MaskedInputAccuracy", "Deletion", "Insertion", "LeRF", "LeRFChange", "MoRF",
           "PixelPerturbation", "ModelRandomisation", "rebind", "SensitivityN",
           "EffectiveHeatRatio", "TopkLowkArea", "Consistency", "LocalLipschitz"]
