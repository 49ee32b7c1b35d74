"""The user's model is left exactly as it was, and bad input fails early with a clear error."""

import copy

import pytest
import torch
from torch import nn
from zoo_helpers import resnet18_random_bn

from attrlab import methods

CALL = {"deepshap": {"baselines": torch.zeros(2, 3, 32, 32)}, "prunegrad": {"percentage": 80.0},
        "prunepgd": {"percentage": 80.0, "iterations": 2}}
CTOR = {"ig": {"n_steps": 4}, "smoothgrad": {"nt_samples": 3}, "gradcam": {"layer": "layer4"},
        "dga": {"n_steps": 3}, "attribution_mask": {"iterations": 2},
        "guided_ig": {"n_steps": 4}, "occlusion": {"sliding_window_shapes": 16, "strides": 16},
        "feature_ablation": {"feature_mask": 2}, "rise": {"n_masks": 8, "cells": 4},
        "lime": {"n_samples": 8}, "kernel_shap": {"n_samples": 8, "feature_mask": 2},
        "iba": {"layer": "layer2", "steps": 2, "copies": 2},
        "input_iba": {"layer": "layer2", "feature_steps": 2, "steps": 2, "copies": 2,
                      "gan_epochs": 1, "gan_samples": 4, "gan_batch_size": 4}}
# learned explainers use the model while they are fitted: a tiny fit on random images
TINY_FIT = {"max_steps": 2, "width": 4, "depth": 2, "batch_size": 2, "progress": False}
CTOR.update({"vp": {**TINY_FIT, "topk_iters": 10}, "nvp": {**TINY_FIT, "topk_iters": 10},
             "l2x": TINY_FIT})


def build(name, model):
    """The method with small options; methods that need data and get none in CALL are fitted
    on a few noise images (they must go through fit; a fit runs the model too)."""
    m = methods.get(name, model, **CTOR.get(name, {}))
    if m.needs_data and name not in CALL:
        m.fit(torch.randn(4, 3, 32, 32, generator=torch.Generator().manual_seed(2)))
    return m


@pytest.fixture(scope="module")
def resnet():
    return resnet18_random_bn(0.1)


def snapshot(model):
    return (
        {k: v.clone() for k, v in model.state_dict().items()},
        [m.training for m in model.modules()],
        [p.requires_grad for p in model.parameters()],
    )


def assert_untouched(model, snap):
    state, training, grads = snap
    now = model.state_dict()
    assert state.keys() == now.keys()
    for k in state:
        assert torch.equal(state[k], now[k]), f"{k} changed"
    assert [m.training for m in model.modules()] == training
    assert [p.requires_grad for p in model.parameters()] == grads
    for m in model.modules():
        assert not m._forward_hooks and not m._forward_pre_hooks, f"hook left on {m}"
        assert not m._backward_hooks and not getattr(m, "_backward_pre_hooks", {})
    assert all(p.grad is None for p in model.parameters())
    assert not torch._C._is_torch_function_mode_enabled(), "a TorchFunctionMode was left on"


@pytest.mark.parametrize("name", methods.available())
def test_model_unchanged_after_attribute(resnet, name):
    # train mode and a frozen first layer: both must survive the call
    resnet.train()
    resnet.conv1.weight.requires_grad_(False)
    snap = snapshot(resnet)
    x = torch.randn(2, 3, 32, 32)
    out = build(name, resnet).attribute(x, target=3, **CALL.get(name, {}))
    assert out.shape == x.shape and torch.isfinite(out).all()
    assert_untouched(resnet, snap)
    resnet.conv1.weight.requires_grad_(True)


class Boom(RuntimeError):
    pass


@pytest.mark.parametrize("name", methods.available())
def test_model_unchanged_after_exception_inside_attribute(resnet, name):
    """A user hook raising in the middle of the forward pass (after attrlab registered its
    hooks and rule modes) must not leave any of them behind."""
    resnet.train()
    snap = snapshot(resnet)

    def explode(*_):
        raise Boom("user hook failed")

    handle = resnet.layer3.register_forward_hook(explode)
    try:
        with pytest.raises(Boom):
            build(name, resnet).attribute(
                torch.randn(2, 3, 32, 32), target=1, **CALL.get(name, {}))
    finally:
        handle.remove()
    assert_untouched(resnet, snap)


def test_inputs_are_not_modified_and_need_no_grad(resnet):
    x = torch.randn(2, 3, 32, 32)
    x0 = x.clone()
    for name in ("saliency", "deeplift", "ig", "gbp"):
        build(name, resnet).attribute(x, target=0)
    assert torch.equal(x, x0) and not x.requires_grad and x.grad is None


def test_gradcam_on_model_copy_gives_same_map(resnet):
    """Attributions do not depend on hidden state left by previous calls."""
    x = torch.randn(2, 3, 32, 32)
    a = methods.get("gradcam", resnet, layer="layer4").attribute(x, target=[1, 2])
    b = methods.get("gradcam", copy.deepcopy(resnet), layer="layer4").attribute(x, target=[1, 2])
    torch.testing.assert_close(a, b)


# ---------------------------------------------------------------------------- bad input

@pytest.mark.parametrize("name", ["saliency", "ig", "deeplift", "gradcam", "fullgrad"])
@pytest.mark.parametrize(
    "inputs, target, err, words",
    [
        # unbatched (C, H, W): no static rank check any more, the model's own error is named
        (torch.randn(3, 32, 32), 0, ValueError, r"cannot take inputs of shape .*\(3, 32, 32\)"),
        (torch.randn(2, 1, 32, 32), 0, ValueError, "channels"),
        (torch.randn(0, 3, 32, 32), 0, ValueError, "empty"),
        (torch.full((2, 3, 32, 32), float("nan")), 0, ValueError, "NaN"),
        (torch.full((2, 3, 32, 32), float("inf")), 0, ValueError, "inf"),
        (torch.zeros(2, 3, 32, 32, dtype=torch.long), 0, TypeError, "floating"),
        ([[1.0]], 0, TypeError, "torch.Tensor"),
        (torch.randn(2, 3, 32, 32), 10, ValueError, "target out of range"),
        (torch.randn(2, 3, 32, 32), -1, ValueError, "target out of range"),
        (torch.randn(2, 3, 32, 32), [1, 2, 3], ValueError, "3 entries"),
        (torch.randn(2, 3, 32, 32), torch.tensor([0.5, 1.0]), TypeError, "integers"),
    ],
)
def test_bad_input_gives_clear_error(resnet, name, inputs, target, err, words):
    snap = snapshot(resnet)
    with pytest.raises(err, match=words):
        build(name, resnet).attribute(inputs, target=target)
    assert_untouched(resnet, snap)


def test_unknown_layer_and_method_names(resnet):
    with pytest.raises(ValueError, match="no layer named 'layer5'.*layer4"):
        methods.get("gradcam", resnet, layer="layer5")
    with pytest.raises(ValueError, match="unknown method 'gradcamm'"):
        methods.get("gradcamm", resnet)
    with pytest.raises(TypeError, match="must be callable"):
        methods.get("saliency", 42)
    with pytest.raises(TypeError, match="needs an nn.Module"):
        methods.get("gradcam", lambda x: x)


def test_bad_options(resnet):
    x = torch.randn(1, 3, 32, 32)
    with pytest.raises(ValueError, match="baselines of shape"):
        methods.get("ig", resnet).attribute(x, 0, baselines=torch.zeros(1, 3, 16, 16))
    with pytest.raises(ValueError, match="baselines contains NaN"):
        methods.get("deeplift", resnet).attribute(x, 0, baselines=torch.full_like(x, float("nan")))
    with pytest.raises(ValueError, match="n_steps"):
        methods.get("ig", resnet, n_steps=0)
    with pytest.raises(ValueError, match="n_steps"):
        methods.get("ig", resnet).attribute(x, 0, n_steps=-2)
    with pytest.raises(ValueError, match="unknown integration method"):
        methods.get("ig", resnet, method="simpson")
    with pytest.raises(ValueError, match="internal_batch_size"):
        methods.get("ig", resnet, internal_batch_size=0)
    with pytest.raises(ValueError, match="internal_batch_size"):
        methods.get("ig", resnet).attribute(x, 0, internal_batch_size=0)
    with pytest.raises(ValueError, match="nt_samples_batch_size"):
        methods.get("smoothgrad", resnet, nt_samples_batch_size=-1)
    with pytest.raises(ValueError, match="deepshap needs baselines"):
        methods.get("deepshap", resnet).attribute(x, 0)
    with pytest.raises(ValueError, match="nt_type"):
        methods.get("smoothgrad", resnet, nt_type="smooth")
    with pytest.raises(ValueError, match="percentile"):
        methods.get("rectgrad", resnet, q=120)
    with pytest.raises(TypeError, match="return_convergence_delta"):
        methods.get("saliency", resnet).attribute(x, 0, return_convergence_delta=True)
    with pytest.raises(ValueError, match="unknown option.*n_stepz.*abs"):
        methods.get("saliency", resnet).attribute(x, 0, n_stepz=3)


def test_methods_needing_relu_refuse_models_without_one():
    m = nn.Sequential(nn.Flatten(), nn.Linear(12, 3))
    for name in ("gbp", "rectgrad"):
        with pytest.raises(ValueError, match="no ReLU"):
            methods.get(name, m).attribute(torch.randn(2, 12), target=0)


def test_model_output_must_be_logits():
    m = nn.Sequential(nn.Conv2d(3, 4, 3))  # returns a feature map, not (N, K)
    with pytest.raises(ValueError, match=r"\(N, num_classes\)"):
        methods.get("saliency", m).attribute(torch.randn(1, 3, 8, 8), target=0)


def test_parameter_free_front_layers_are_not_misjudged():
    """A pooling/Flatten/PixelUnshuffle layer in front of the first weighted layer changes the
    shape: valid inputs must pass, invalid ones still fail with a ValueError naming the shape."""
    m = nn.Sequential(nn.MaxPool2d(2), nn.Flatten(), nn.Linear(3 * 8 * 8, 5))
    assert methods.get("saliency", m).attribute(torch.randn(2, 3, 16, 16), 0).shape == (2, 3, 16, 16)
    m2 = nn.Sequential(nn.PixelUnshuffle(2), nn.Conv2d(12, 4, 3), nn.Flatten(), nn.LazyLinear(3))
    m2(torch.randn(1, 3, 16, 16))
    assert methods.get("gxi", m2).attribute(torch.randn(2, 3, 16, 16), 1).shape == (2, 3, 16, 16)
    with pytest.raises(ValueError, match=r"cannot take inputs of shape \(2, 3, 8, 8\)"):
        methods.get("saliency", m).attribute(torch.randn(2, 3, 8, 8), 0)
