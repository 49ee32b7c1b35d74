"""Faithfulness metrics: pixel perturbation (MoRF/LeRF, LeRF change, insertion/deletion),
Sensitivity-n, masked-input accuracy (MIA) and the top-k / low-k area (paper 05)."""

from .mia import MaskedInputAccuracy
from .pixel_perturbation import (
           Deletion,
           Insertion,
           LeRF,
           LeRFChange,
           MoRF,
           PixelPerturbation,
)
from .sensitivity_n import SensitivityN
from .topk_lowk import TopkLowkArea

__all__ = ["Deletion", "Insertion", "LeRF", "LeRFChange", "MaskedInputAccuracy", "MoRF",
           "PixelPerturbation", "SensitivityN", "TopkLowkArea"]
