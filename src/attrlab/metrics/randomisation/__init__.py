"""Randomisation (sanity-check) metrics: cascading model-parameter randomisation."""

from .model_randomisation import ModelRandomisation, rebind, similarity

__all__ = ["ModelRandomisation", "rebind", "similarity"]
