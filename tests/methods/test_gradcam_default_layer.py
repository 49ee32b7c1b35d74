"""Grad-CAM's default layer: the output of the last feature block, ViTs only with a reshape."""

import pytest
import torch
import torch.nn.functional as F
import torchvision
from torch import nn

from attrlab import methods


def _no_hooks(model: nn.Module) -> bool:
    return all(not m._forward_hooks and not m._forward_pre_hooks for m in model.modules())


def test_resnet_default_is_layer4_after_the_residual_add():
    net = torchvision.models.resnet18(num_classes=5).eval()
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    gc = methods.get("gradcam", net, relu_attributions=False)
    a = gc.attribute(x, target=[1, 2])
    assert gc.layer_name == "layer4" and _no_hooks(net)
    explicit = methods.get("gradcam", net, layer=net.layer4[-1], relu_attributions=False)
    torch.testing.assert_close(a, explicit.attribute(x, [1, 2]))
    # the last conv (before the add) is a different map: the old default was wrong
    old = methods.get("gradcam", net, layer="layer4.1.conv2",
                      relu_attributions=False).attribute(x, [1, 2])
    assert not torch.allclose(a, old)


def test_plain_cnn_default_is_the_last_relu_before_pooling():
    net = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 6, 3, padding=1),
                        nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(6 * 4 * 4, 3)).eval()
    gc = methods.get("gradcam", net)
    gc.attribute(torch.randn(2, 1, 8, 8), 0)
    assert gc.layer_name == "3"


def _tiny_vit() -> nn.Module:
    with torch.random.fork_rng():
        torch.manual_seed(0)
        return torchvision.models.VisionTransformer(image_size=16, patch_size=4, num_layers=2,
                                                    num_heads=2, hidden_dim=8, mlp_dim=16,
                                                    num_classes=3).eval()


def test_vit_is_refused_without_reshape_and_correct_with_it():
    vit = _tiny_vit()
    x = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    with pytest.raises(ValueError, match="vision transformer"):
        methods.get("gradcam", vit).attribute(x, 0)
    assert _no_hooks(vit)
    gc = methods.get("gradcam", vit, reshape_transform="vit", relu_attributions=False)
    cam = gc.layer_attribute(x, [0, 2])
    assert gc.layer_name == "encoder.layers.encoder_layer_1.ln_1"
    # by hand: activations and gradients of ln_1, class token dropped, tokens on the 4x4 grid
    store = {}
    h = vit.encoder.layers.encoder_layer_1.ln_1.register_forward_hook(
        lambda m, i, o: store.update(a=o))
    try:
        out = vit(x)
        g, = torch.autograd.grad(out[[0, 1], [0, 2]].sum(), store["a"])
    finally:
        h.remove()
    acts = store["a"][:, 1:].reshape(2, 4, 4, 8).permute(0, 3, 1, 2)
    grads = g[:, 1:].reshape(2, 4, 4, 8).permute(0, 3, 1, 2)
    want = (grads.mean((2, 3), keepdim=True) * acts).sum(1, keepdim=True)
    torch.testing.assert_close(cam, want.detach())
    full = gc.attribute(x, [0, 2])
    torch.testing.assert_close(full, F.interpolate(want.detach(), size=(16, 16), mode="bilinear",
                                                   align_corners=False).expand_as(x))


def test_bad_reshape_transform_is_named():
    with pytest.raises(ValueError, match="reshape_transform"):
        methods.get("gradcam", _tiny_vit(), reshape_transform="square")
