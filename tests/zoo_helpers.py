"""Small models shared by several test modules (importable because ``tests/`` holds the
root conftest.py, which pytest puts on ``sys.path``)."""

import torch
import torchvision
from torch import nn


def resnet18_random_bn(mean_std: float, affine_bias_std: float | None = None) -> nn.Module:
    """A random-init torchvision ResNet-18 (10 classes, seed 0 drawn from the current RNG
    state) whose BatchNorms get random running statistics (mean ~ N(0, mean_std), var ~
    U(0.5, 1.5)) and, with ``affine_bias_std``, random affine parameters (weight ~ U(0.5,
    1.5), bias ~ N(0, affine_bias_std)), so that BatchNorm has a non-trivial implied bias."""
    torch.manual_seed(0)
    model = torchvision.models.resnet18(num_classes=10)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.normal_(0.0, mean_std)
                m.running_var.uniform_(0.5, 1.5)
                if affine_bias_std is not None:
                    m.weight.uniform_(0.5, 1.5)
                    m.bias.normal_(0.0, affine_bias_std)
    return model


def small_cnn(channels: int, size: int = 8, classes: int = 3) -> nn.Module:
    """conv3x3(4) - ReLU - Flatten - Linear, seed 1, eval mode."""
    torch.manual_seed(1)
    return nn.Sequential(nn.Conv2d(channels, 4, 3, padding=1), nn.ReLU(), nn.Flatten(),
                         nn.Linear(4 * size * size, classes)).eval()
