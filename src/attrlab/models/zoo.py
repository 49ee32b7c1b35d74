"""Model zoo: the classifiers used in the papers' experiments, rebuildable from ``model.arch``.

* ``nib_vgg``   -- NIB VGG13-6/13-4/13-2/13/16 (paper 01, section 4.1, Tables 1 and 3)
* ``resnet8``   -- ResNet8, three residual blocks (paper 03, PruneGrad, section 4.4)
* ``cnn6c3l``   -- simple CNN, 6 conv + 3 linear (paper 04, DGA, section 4.3)
* ``mnist_cnn`` -- 3 conv + 2 linear MNIST classifier (paper 05, VP, section 4.1)
* ``nib_cnn``   -- tiny NIB CNN for 8x8 sklearn digits (project default, after paper 01)
"""

from __future__ import annotations

from typing import Any, Callable

import torch
from torch import Tensor, nn

from .layers import BiasFreeBatchNorm2d
from .text import LSTMClassifier, lstm_classifier  # noqa: F401 (in BUILDERS)

__all__ = [
    "VGG_CONFIGS",
    "NIBVGG",
    "BasicBlock",
    "ResNet8",
    "CNN6C3L",
    "MNISTCNN",
    "NIBCNN",
    "nib_vgg",
    "resnet8",
    "cnn6c3l",
    "mnist_cnn",
    "nib_cnn",
    "BUILDERS",
    "build",
]

_M = "M"  # 2x2 max-pool, stride 2

# Conv output channels per layer; "M" = max-pool (paper 01, Table 1, reconstructed)
VGG_CONFIGS: dict[str, list[int | str]] = {
    "16": [64, 64, _M, 128, 128, _M, 256, 256, 256, _M, 512, 512, 512, _M, 512, 512, 512, _M],
    "13": [64, 64, _M, 128, 128, _M, 256, 256, _M, 512, 512, _M, 512, 512, _M],
    "13-2": [64, 64, _M, 128, 128, _M, 256, 256, _M, 512, 512, _M, _M],
    "13-4": [64, 64, _M, 128, 128, _M, 256, 256, _M, _M, _M],
    "13-6": [64, 64, _M, 128, 128, _M, _M, _M, _M],
}


def _scaled(channels: int, width: float) -> int:
    """Channel count times ``width``, rounded, at least 1."""
    return max(1, int(round(channels * width)))


def _pooled(size: int, n_pools: int) -> int:
    """Spatial size after ``n_pools`` floor-mode 2x2/stride-2 max-pools."""
    for _ in range(n_pools):
        size //= 2
    return size


def _check_positive(name: str, value: float) -> None:
    if value <= 0:
        raise ValueError(f"{name} must be positive, got {value}")


class FeaturesClassifier(nn.Module):
    """``forward(x) = classifier(features(x))``: the layout every CNN of the zoo but ResNet8
    shares (``features`` convolutional, ``classifier`` starting with ``nn.Flatten``)."""

    def __init__(self, features: nn.Sequential, classifier: nn.Sequential) -> None:
        super().__init__()
        self.features = features
        self.classifier = classifier

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.features(x))


# ---------------------------------------------------------------------------------------------
# NIB VGG (paper 01)
# ---------------------------------------------------------------------------------------------


class NIBVGG(FeaturesClassifier):
    """VGG with no implicit bias (paper 01, section 4.1, Table 1).

    ``forward(x) = classifier(features(x))``. ``features`` holds
    Conv3x3 -> (BiasFreeBatchNorm2d | BatchNorm2d) -> ReLU blocks and max-pools;
    ``classifier`` starts with an ``nn.Flatten``.
    """



def nib_vgg(
    depth: str = "16",
    num_classes: int = 10,
    in_channels: int = 3,
    input_size: int = 32,
    width: float = 1.0,
    layer_bias: bool = False,
    bn_bias: bool = False,
) -> NIBVGG:
    """NIB VGG of paper 01 (Attribution Mask / GxSI), section 4.1, Tables 1, 3 and 5.

    ``depth`` is one of ``"13-6", "13-4", "13-2", "13", "16"`` (see ``VGG_CONFIGS``). Table 1
    is garbled in our copy of the paper; the reduced variants are reconstructed from section
    4.1 ("reducing the number of conv2d layer by 2") and Table 3: starting from VGG13 they drop
    conv pairs from the top (13-2: the last 512 pair; 13-4: both 512 pairs; 13-6: also the
    256 pair) while keeping all five max-pools, so the number of conv + linear layers is
    7, 9, 11, 13, 16 for 13-6, 13-4, 13-2, 13, 16.

    Each conv is ``Conv2d(3x3, padding=1, bias=layer_bias)`` followed by
    ``BiasFreeBatchNorm2d`` (or, with ``bn_bias=True``, a standard affine ``nn.BatchNorm2d``:
    the "BNB" ablation of Table 5) and ``nn.ReLU()``. ``layer_bias=True`` is the "LB"
    ablation. Classifier: Flatten -> FC-4096w -> ReLU -> Dropout(0.5) -> FC-4096w -> ReLU ->
    Dropout(0.5) -> FC-num_classes. Channel widths are scaled by ``width`` (rounded, >= 1).

    ``input_size`` must be a multiple of 32 (five pools); pad 28x28 MNIST to 32x32.
    With ``layer_bias=bn_bias=False`` the model in eval mode is positively homogeneous.
    """
    depth = str(depth)
    if depth not in VGG_CONFIGS:
        raise ValueError(f"unknown NIB VGG depth {depth!r}; choose one of {sorted(VGG_CONFIGS)}")
    _check_positive("width", width)
    _check_positive("num_classes", num_classes)
    _check_positive("in_channels", in_channels)
    if input_size <= 0 or input_size % 32 != 0:
        raise ValueError(
            f"nib_vgg needs a positive input_size divisible by 32 (it has five 2x2 max-pools), "
            f"got {input_size}; pad the inputs to a multiple of 32 (e.g. 28x28 MNIST: pad 2 pixels "
            f"on each side to 32x32, torch.nn.functional.pad(x, (2, 2, 2, 2)), and use input_size=32)"
        )

    layers: list[nn.Module] = []
    c_in = in_channels
    for v in VGG_CONFIGS[depth]:
        if v == _M:
            layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
            continue
        c_out = _scaled(int(v), width)
        layers.append(nn.Conv2d(c_in, c_out, kernel_size=3, padding=1, bias=layer_bias))
        layers.append(nn.BatchNorm2d(c_out) if bn_bias else BiasFreeBatchNorm2d(c_out))
        layers.append(nn.ReLU())
        c_in = c_out

    s = input_size // 32
    hidden = _scaled(4096, width)
    classifier = nn.Sequential(
        nn.Flatten(),
        nn.Linear(c_in * s * s, hidden, bias=layer_bias),
        nn.ReLU(),
        nn.Dropout(0.5),
        nn.Linear(hidden, hidden, bias=layer_bias),
        nn.ReLU(),
        nn.Dropout(0.5),
        nn.Linear(hidden, num_classes, bias=layer_bias),
    )
    model = NIBVGG(nn.Sequential(*layers), classifier)

    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.BatchNorm2d, BiasFreeBatchNorm2d)):
            nn.init.ones_(m.weight)
            if getattr(m, "bias", None) is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, 0.0, 0.01)
            if m.bias is not None:
                nn.init.zeros_(m.bias)

    model.arch = {
        "name": "nib_vgg",
        "depth": depth,
        "num_classes": int(num_classes),
        "in_channels": int(in_channels),
        "input_size": int(input_size),
        "width": float(width),
        "layer_bias": bool(layer_bias),
        "bn_bias": bool(bn_bias),
    }
    return model


# ---------------------------------------------------------------------------------------------
# ResNet8 (paper 03)
# ---------------------------------------------------------------------------------------------


def _conv3x3(c_in: int, c_out: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(c_in, c_out, kernel_size=3, stride=stride, padding=1, bias=False)


class BasicBlock(nn.Module):
    """ResNet basic block (He et al. 2016), as used by ResNet8 of paper 03, section 4.4.

    conv3x3-BN-ReLU-conv3x3-BN, plus a shortcut (identity, or ``downsample`` = 1x1 conv with
    stride + BN when the shape changes), sum, ReLU. As in torchvision, the single module
    ``self.relu`` (``inplace=True``) is called twice per forward: a deliberate stress case for
    hook-based attribution methods.
    """

    def __init__(self, c_in: int, c_out: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = _conv3x3(c_in, c_out, stride)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = _conv3x3(c_out, c_out)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.downsample: nn.Module | None = None
        if stride != 1 or c_in != c_out:
            self.downsample = nn.Sequential(
                nn.Conv2d(c_in, c_out, kernel_size=1, stride=stride, bias=False),
                nn.BatchNorm2d(c_out),
            )

    def forward(self, x: Tensor) -> Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        out = out + identity
        return self.relu(out)  # same module as above


class ResNet8(nn.Module):
    """CIFAR-style ResNet8 with three residual blocks (paper 03, PruneGrad, section 4.4).

    Stem conv3x3-BN-ReLU, ``layer1`` .. ``layer3`` (one ``BasicBlock`` each, in an
    ``nn.Sequential`` as in torchvision), global average pool, ``fc``: 1 + 3*2 + 1 = 8
    weighted layers (shortcut 1x1 convs not counted).
    """

    def __init__(self, num_classes: int = 10, in_channels: int = 3, width: int = 16) -> None:
        super().__init__()
        w = width
        self.conv1 = _conv3x3(in_channels, w)
        self.bn1 = nn.BatchNorm2d(w)
        self.relu = nn.ReLU(inplace=True)
        self.layer1 = nn.Sequential(BasicBlock(w, w, 1))
        self.layer2 = nn.Sequential(BasicBlock(w, 2 * w, 2))
        self.layer3 = nn.Sequential(BasicBlock(2 * w, 4 * w, 2))
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(4 * w, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, x: Tensor) -> Tensor:
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        return self.fc(torch.flatten(self.avgpool(x), 1))


def resnet8(num_classes: int = 10, in_channels: int = 3, width: int = 16) -> ResNet8:
    """ResNet8 (three residual blocks) of paper 03 (PruneGrad), section 4.4; stage widths
    ``width, 2*width, 4*width``."""
    for name, v in (("num_classes", num_classes), ("in_channels", in_channels), ("width", width)):
        _check_positive(name, v)
    model = ResNet8(num_classes, in_channels, int(width))
    model.arch = {"name": "resnet8", "num_classes": int(num_classes), "in_channels": int(in_channels), "width": int(width)}
    return model


# ---------------------------------------------------------------------------------------------
# Simple CNN, 6 conv + 3 linear (paper 04)
# ---------------------------------------------------------------------------------------------


class CNN6C3L(FeaturesClassifier):
    """Simple CNN with 6 conv + 3 linear layers (paper 04, DGA, section 4.3).

    ``forward(x) = classifier(features(x))``; ``classifier`` starts with ``nn.Flatten``.
    """



def cnn6c3l(num_classes: int = 10, in_channels: int = 3, input_size: int = 32, width: float = 1.0) -> CNN6C3L:
    """Simple CNN (6 conv + 3 linear) of paper 04 (DGA), section 4.3 (ROAR experiment).

    Conv widths 32, 32, M, 64, 64, M, 128, 128, M (3x3, padding 1, with bias, ReLU), then
    Flatten -> Linear(-> 256) -> ReLU -> Linear(256 -> 128) -> ReLU -> Linear(128 -> classes).
    All conv and hidden linear widths are scaled by ``width``; pooling floors odd sizes.
    """
    _check_positive("width", width)
    if input_size < 8:
        raise ValueError(f"cnn6c3l needs input_size >= 8 (three 2x2 max-pools), got {input_size}")
    layers: list[nn.Module] = []
    c_in = in_channels
    for v in [32, 32, _M, 64, 64, _M, 128, 128, _M]:
        if v == _M:
            layers.append(nn.MaxPool2d(2, 2))
            continue
        c_out = _scaled(int(v), width)
        layers += [nn.Conv2d(c_in, c_out, kernel_size=3, padding=1), nn.ReLU()]
        c_in = c_out
    s = _pooled(input_size, 3)
    h1, h2 = _scaled(256, width), _scaled(128, width)
    classifier = nn.Sequential(
        nn.Flatten(),
        nn.Linear(c_in * s * s, h1),
        nn.ReLU(),
        nn.Linear(h1, h2),
        nn.ReLU(),
        nn.Linear(h2, num_classes),
    )
    model = CNN6C3L(nn.Sequential(*layers), classifier)
    model.arch = {
        "name": "cnn6c3l",
        "num_classes": int(num_classes),
        "in_channels": int(in_channels),
        "input_size": int(input_size),
        "width": float(width),
    }
    return model


# ---------------------------------------------------------------------------------------------
# MNIST CNN (paper 05)
# ---------------------------------------------------------------------------------------------


class MNISTCNN(FeaturesClassifier):
    """Three conv + two linear layers MNIST classifier (paper 05, VP, section 4.1).

    ``forward(x) = classifier(features(x))``; ``classifier`` starts with ``nn.Flatten``.
    """



def mnist_cnn(num_classes: int = 10, in_channels: int = 1, input_size: int = 28) -> MNISTCNN:
    """MNIST classifier of paper 05 (Variational Perturbations), section 4.1: "three
    convolutional layers followed by two linear layers".

    [Conv3x3(pad 1) -> ReLU -> MaxPool2] x 3 with 32, 64, 128 channels (floor pooling:
    28 -> 14 -> 7 -> 3), Flatten, Linear(128*s*s -> 256) -> ReLU -> Dropout(0.25) ->
    Linear(256 -> num_classes).
    """
    if input_size < 8:
        raise ValueError(f"mnist_cnn needs input_size >= 8 (three 2x2 max-pools), got {input_size}")
    features = nn.Sequential(
        nn.Conv2d(in_channels, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2, 2),
        nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2, 2),
        nn.Conv2d(64, 128, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2, 2),
    )  # fmt: skip
    s = _pooled(input_size, 3)
    classifier = nn.Sequential(
        nn.Flatten(),
        nn.Linear(128 * s * s, 256),
        nn.ReLU(),
        nn.Dropout(0.25),
        nn.Linear(256, num_classes),
    )
    model = MNISTCNN(features, classifier)
    model.arch = {"name": "mnist_cnn", "num_classes": int(num_classes), "in_channels": int(in_channels), "input_size": int(input_size)}
    return model


# ---------------------------------------------------------------------------------------------
# Tiny NIB CNN (project default, after paper 01)
# ---------------------------------------------------------------------------------------------


class NIBCNN(FeaturesClassifier):
    """Tiny no-implicit-bias CNN (paper 01, section 2.2 NIB condition) for 8x8 digits.

    ``forward(x) = classifier(features(x))``; ``classifier`` starts with ``nn.Flatten``.
    """



def nib_cnn(num_classes: int = 10, in_channels: int = 1, input_size: int = 8, width: int = 16) -> NIBCNN:
    """Tiny NIB CNN for 8x8 sklearn digits, following the NIB recipe of paper 01, sections
    2.2 and 4.1 (no additive biases, BN without mean/shift, ReLU and max-pool only).

    Conv3x3(w) -> BFBN -> ReLU -> Conv3x3(w) -> BFBN -> ReLU -> MaxPool2 -> Conv3x3(2w) ->
    BFBN -> ReLU -> MaxPool2 -> Flatten -> Linear(-> 64) -> ReLU -> Linear(64 -> classes);
    all convs have padding 1 and, like the linears, no bias. Positively homogeneous in eval
    mode.
    """
    _check_positive("width", width)
    if input_size < 4:
        raise ValueError(f"nib_cnn needs input_size >= 4 (two 2x2 max-pools), got {input_size}")
    w = int(width)
    features = nn.Sequential(
        nn.Conv2d(in_channels, w, 3, padding=1, bias=False), BiasFreeBatchNorm2d(w), nn.ReLU(),
        nn.Conv2d(w, w, 3, padding=1, bias=False), BiasFreeBatchNorm2d(w), nn.ReLU(),
        nn.MaxPool2d(2, 2),
        nn.Conv2d(w, 2 * w, 3, padding=1, bias=False), BiasFreeBatchNorm2d(2 * w), nn.ReLU(),
        nn.MaxPool2d(2, 2),
    )  # fmt: skip
    s = _pooled(input_size, 2)
    classifier = nn.Sequential(
        nn.Flatten(),
        nn.Linear(2 * w * s * s, 64, bias=False),
        nn.ReLU(),
        nn.Linear(64, num_classes, bias=False),
    )
    model = NIBCNN(features, classifier)
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
    model.arch = {
        "name": "nib_cnn",
        "num_classes": int(num_classes),
        "in_channels": int(in_channels),
        "input_size": int(input_size),
        "width": w,
    }
    return model


# ---------------------------------------------------------------------------------------------
# Registry
# ---------------------------------------------------------------------------------------------

BUILDERS: dict[str, Callable[..., nn.Module]] = {
    "nib_vgg": nib_vgg,
    "resnet8": resnet8,
    "cnn6c3l": cnn6c3l,
    "mnist_cnn": mnist_cnn,
    "nib_cnn": nib_cnn,
    "lstm_classifier": lstm_classifier,
}


def build(arch: dict[str, Any]) -> nn.Module:
    """Rebuild a model from its ``model.arch`` dict: ``{"name": builder, **builder_kwargs}``.

    Weights are freshly initialised; load a state dict afterwards. Unknown names raise
    ``ValueError`` listing the registered builders (``BUILDERS``).
    """
    if not isinstance(arch, dict) or "name" not in arch:
        raise ValueError(f"arch must be a dict with a 'name' key, got {arch!r}")
    kwargs = dict(arch)
    name = kwargs.pop("name")
    if name not in BUILDERS:
        raise ValueError(f"unknown model {name!r}; available: {', '.join(sorted(BUILDERS))}")
    return BUILDERS[name](**kwargs)
