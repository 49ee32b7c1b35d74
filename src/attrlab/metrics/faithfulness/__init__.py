"""Faithfulness metrics: pixel perturbation (MoRF/LeRF, LeRF change, insertion/deletion),
Sensitivity-n and masked-input accuracy (MIA)."""

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

__all__ = ["Deletion", "Insertion", "LeRF", "LeRFChange", "MaskedInputAccuracy", "MoRF",
           "PixelPerturbation", "SensitivityN"]
