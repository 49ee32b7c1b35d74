"""Evaluation metrics for attributions: a registry of per-sample, batched metrics."""

from .base import Metric, available, batched_scores, get, metric_class, register

__all__ = ["Metric", "available", "batched_scores", "get", "metric_class", "register"]
