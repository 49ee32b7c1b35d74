"""Evaluation metrics for attributions: a registry of per-sample, batched metrics."""

from .base import Metric, available, batched_scores, get, metric_class, register
from .sanity import ModelRandomisation, rebind  # registers the four sanity_* metrics
from . import roar  # ROAR experiment driver: metrics.roar.roar(...), metrics.roar.remove_top(...)
from .perturbation import Deletion, Insertion, LeRF, LeRFChange, MoRF, PixelPerturbation
from .sensitivity import SensitivityN
from .mia import MaskedInputAccuracy

__all__ = ["Metric", "available", "batched_scores", "get", "metric_class", "register"]
