"""Evaluation metrics for attributions: a registry of per-sample, batched metrics."""

from . import roar  # ROAR experiment driver: metrics.roar.roar(...), metrics.roar.remove_top(...)
from .base import Metric, available, batched_scores, get, metric_class, register
from .mia import MaskedInputAccuracy
from .perturbation import Deletion, Insertion, LeRF, LeRFChange, MoRF, PixelPerturbation
from .sanity import ModelRandomisation, rebind  # registers the four sanity_* metrics
from .sensitivity import SensitivityN

__all__ = ["Metric", "available", "batched_scores", "get", "metric_class", "register", "roar",
           "MaskedInputAccuracy", "Deletion", "Insertion", "LeRF", "LeRFChange", "MoRF",
           "PixelPerturbation", "ModelRandomisation", "rebind", "SensitivityN"]
