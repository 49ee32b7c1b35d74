"""Models for attribution experiments: NIB nets (paper 01) and the papers' reference classifiers."""

from __future__ import annotations

from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm
from torch.nn.modules.conv import _ConvNd
from torch.nn.modules.instancenorm import _InstanceNorm

from .layers import BiasFreeBatchNorm2d
from .shipped import CHECKPOINT_DIR, checkpoint_meta, load_checkpoint, shipped
from .text import LSTMClassifier, lstm_classifier
from .zoo import (
    BUILDERS,
    CNN6C3L,
    MNISTCNN,
    NIBCNN,
    NIBVGG,
    VGG_CONFIGS,
    BasicBlock,
    ResNet8,
    build,
    cnn6c3l,
    mnist_cnn,
    nib_cnn,
    nib_vgg,
    resnet8,
)

__all__ = [
    "CHECKPOINT_DIR",
    "checkpoint_meta",
    "load_checkpoint",
    "shipped",
    "BiasFreeBatchNorm2d",
    "BUILDERS",
    "build",
    "nib_vgg",
    "resnet8",
    "cnn6c3l",
    "mnist_cnn",
    "nib_cnn",
    "lstm_classifier",
    "LSTMClassifier",
    "NIBVGG",
    "ResNet8",
    "BasicBlock",
    "CNN6C3L",
    "MNISTCNN",
    "NIBCNN",
    "VGG_CONFIGS",
    "has_implicit_bias",
]

# Normalisations that subtract a mean (an implicit, input-dependent or running bias)
_MEAN_SUBTRACTING = (_BatchNorm, _InstanceNorm, nn.GroupNorm, nn.LayerNorm)


def has_implicit_bias(model: nn.Module) -> bool:
    """True if ``model`` violates the no-implicit-bias condition of paper 01, section 2.2.

    That is: some Conv/Linear layer has a bias, or a standard (mean-subtracting) normalisation
    is present (any ``_BatchNorm``; also InstanceNorm, GroupNorm, LayerNorm). ``False`` for
    NIB models built from bias-free layers and ``BiasFreeBatchNorm2d``. Only the layer types
    are inspected; other biased operations (e.g. additive constants in ``forward``) are not
    detected.
    """
    for m in model.modules():
        if isinstance(m, (_ConvNd, nn.Linear, nn.Bilinear)) and getattr(m, "bias", None) is not None:
            return True
        if isinstance(m, _MEAN_SUBTRACTING):
            return True
    return False
