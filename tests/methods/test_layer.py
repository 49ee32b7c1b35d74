"""Layer attribution (attrlab.methods.layer) and the generalised Grad-CAM.

Agreement with Captum's LayerGradientXActivation, LayerIntegratedGradients, LayerDeepLift and
LayerGradCam on a float64 ResNet-18 (at ``layer4`` and ``layer3.1.conv2``, output and input)
and on tiny text classifiers with token-id inputs; completeness of layer IG / DeepLIFT;
tuple-valued layers; model safety and clear errors. Tolerances as in
test_captum_agreement.py: EXACT where both libraries evaluate the same float64 formula.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from captum.attr import (
    LayerDeepLift,
    LayerGradCam,
    LayerGradientXActivation,
    LayerIntegratedGradients,
)
from test_captum_agreement import EXACT, agree, captum_ready, resnet18_random_bn_double
from torch import Tensor, nn
from zoo_helpers import resnet18_random_bn

from attrlab import methods
from attrlab.methods import layer as L

pytestmark = pytest.mark.filterwarnings(r"ignore::UserWarning:captum\..*")
F64 = torch.float64


@pytest.fixture(autouse=True, scope="module")
def _float64_default():
    old = torch.get_default_dtype()
    torch.set_default_dtype(F64)
    yield
    torch.set_default_dtype(old)


def agree_tree(ours, theirs, rel, what):
    if isinstance(theirs, tuple):
        assert isinstance(ours, tuple) and len(ours) == len(theirs), what
        return [agree_tree(a, b, rel, f"{what}[{i}]") for i, (a, b) in enumerate(zip(ours, theirs))]
    return agree(ours, theirs, rel, what)


# ---------------------------------------------------------------------------------- ResNet-18

@pytest.fixture(scope="module")
def resnet():
    model = resnet18_random_bn_double()
    g = torch.Generator().manual_seed(5)
    x = torch.randn(2, 3, 32, 32, generator=g, dtype=F64)
    base = torch.cat([torch.zeros(1, 3, 32, 32), 0.5 * torch.randn(1, 3, 32, 32, generator=g)])
    return model, captum_ready(model), x, base, torch.tensor([0, 3])


@pytest.mark.parametrize("to_input", [False, True])
@pytest.mark.parametrize("name", ["layer4", "layer3.1.conv2"])
def test_resnet18_agrees_with_captum(resnet, name, to_input):
    m, ready, x, base, t = resnet
    mod, rmod = dict(m.named_modules())[name], dict(ready.named_modules())[name]
    kw = dict(attribute_to_layer_input=to_input)
    what = f"{name} {'input' if to_input else 'output'}"
    gxa = LayerGradientXActivation(m, mod).attribute(x, t, **kw)
    agree(L.get("layer_gradient_x_activation", m, name).attribute(x, t, **kw), gxa, EXACT,
          f"{what} gxa")
    grad = LayerGradientXActivation(m, mod, multiply_by_inputs=False).attribute(x, t, **kw)
    agree(L.get("layer_gradient_x_activation", m, name, multiply_by_inputs=False)
          .attribute(x, t, **kw), grad, EXACT, f"{what} gradient")
    agree(L.get("layer_saliency", m, mod).attribute(x, t, **kw), grad.abs(), EXACT,
          f"{what} saliency")
    # riemann_left, 4 steps: positions k/4 and weights 1/4 exact in binary (also after
    # Captum's float32 cast of the weights): same formula as Captum
    ig = L.get("layer_ig", m, name, n_steps=4, method="riemann_left")
    agree(ig.attribute(x, t, baselines=base, **kw),
          LayerIntegratedGradients(m, mod).attribute(x, base, target=t, n_steps=4,
                                                     method="riemann_left", **kw),
          EXACT, f"{what} ig")
    # Captum's DeepLift cannot hook the reused ReLU of BasicBlock: its copy has one per call
    agree(L.get("layer_deeplift", m, name).attribute(x, t, baselines=base, **kw),
          LayerDeepLift(ready, rmod).attribute(x, base, target=t, **kw), EXACT,
          f"{what} deeplift")
    for relu in (False, True):
        agree(L.get("layer_gradcam", m, name, relu_attributions=relu).attribute(x, t, **kw),
              LayerGradCam(m, mod).attribute(x, t, relu_attributions=relu, **kw), EXACT,
              f"{what} gradcam relu={relu}")
    # the input-space Grad-CAM gives the same layer map
    agree(methods.get("gradcam", m, layer=name, relu_attributions=False)
          .layer_attribute(x, t, **kw), LayerGradCam(m, mod).attribute(x, t, **kw), EXACT,
          f"{what} GradCAM.layer_attribute")


def test_resnet18_completeness_at_a_bottleneck(resnet):
    """Everything passes through ``layer3``'s and ``layer4``'s outputs: layer DeepLIFT at
    layer3 sums to f_t(x) - f_t(x') exactly (float64 roundoff), and so does layer IG at layer4
    with two points, the network after it (average pool, fc) being linear. At
    ``layer3.1.conv2`` the block's skip connection bypasses the layer: no completeness there
    (as in Captum)."""
    m, _, x, base, t = resnet
    with torch.no_grad():
        gap = (m(x) - m(base)).gather(1, t.view(-1, 1)).abs().max()
    attr, delta = L.get("layer_deeplift", m, "layer3").attribute(
        x, t, baselines=base, return_convergence_delta=True)
    assert attr.shape == (2, 256, 2, 2) and delta.abs().max() <= EXACT * gap, delta
    attr, delta = L.get("layer_ig", m, "layer4", n_steps=2).attribute(
        x, t, baselines=base, return_convergence_delta=True)
    assert attr.shape == (2, 512, 1, 1) and delta.abs().max() <= EXACT * gap, delta
    _, delta = L.get("layer_deeplift", m, "layer3.1.conv2").attribute(
        x, t, baselines=base, return_convergence_delta=True)
    print(f"resnet18 layer3.1.conv2 DeepLIFT |delta| {delta.abs().max():.3g}, gap {gap:.3g}")
    assert delta.abs().max() > 1e-3 * gap


# ------------------------------------------------------------------------- text classifiers

V, D, H, K, PAD = 17, 6, 5, 3, 0


class MeanText(nn.Module):
    """Embedding -> mean over tokens -> Linear -> ReLU -> Linear."""

    def __init__(self):
        super().__init__()
        self.embedding = nn.Embedding(V, D, padding_idx=PAD)
        self.hidden = nn.Linear(D, H)
        self.relu = nn.ReLU()
        self.fc = nn.Linear(H, K)

    def forward(self, ids: Tensor) -> Tensor:
        return self.fc(self.relu(self.hidden(self.embedding(ids).mean(1))))


class LSTMText(nn.Module):
    """Embedding -> LSTM -> last step -> Linear."""

    def __init__(self):
        super().__init__()
        self.embedding = nn.Embedding(V, D)
        self.lstm = nn.LSTM(D, H, batch_first=True)
        self.fc = nn.Linear(H, K)

    def forward(self, ids: Tensor) -> Tensor:
        out, _ = self.lstm(self.embedding(ids))
        return self.fc(out[:, -1])


def _text(cls, seed=0):
    torch.manual_seed(seed)
    return cls().double().eval()


IDS = torch.tensor([[3, 5, 7, 1, 0, 0, 0], [2, 16, 4, 4, 9, 11, 0], [8, 6, 13, 12, 10, 15, 14]])
T3 = torch.tensor([0, 2, 1])


@pytest.mark.parametrize("cls", [MeanText, LSTMText])
def test_text_layer_ig_on_embedding_agrees_with_captum(cls):
    m = _text(cls)
    pad = torch.full_like(IDS, PAD)
    theirs = LayerIntegratedGradients(m, m.embedding).attribute(
        IDS, baselines=pad, target=T3, n_steps=4, method="riemann_left")
    # riemann_left with 4 steps: weights 1/4 are exact even after Captum's float32 cast
    lig = L.get("layer_ig", m, "embedding", n_steps=4, method="riemann_left")
    ours = lig.attribute(IDS, T3, baselines=PAD)  # an int pad id ...
    assert ours.shape == (3, 7, D)
    agree(ours, theirs, EXACT, f"{cls.__name__} layer_ig riemann_left")
    torch.testing.assert_close(lig.attribute(IDS, T3, baselines=pad), ours, rtol=0, atol=0)
    # Gauss-Legendre: Captum rounds its weights to float32 (test_captum_agreement quirk 5)
    theirs = LayerIntegratedGradients(m, m.embedding).attribute(IDS, baselines=pad, target=T3,
                                                                n_steps=6)
    agree(L.get("layer_ig", m, m.embedding, n_steps=6).attribute(IDS, T3, baselines=pad),
          theirs, 1e-6, f"{cls.__name__} layer_ig gausslegendre")
    # chunked path rows: only the summation order changes
    agree(lig.attribute(IDS, T3, baselines=PAD, internal_batch_size=7), ours, EXACT,
          f"{cls.__name__} internal_batch_size=7")
    gxa = LayerGradientXActivation(m, m.embedding).attribute(IDS, T3)
    agree(L.get("layer_gradient_x_activation", m, "embedding").attribute(IDS, T3), gxa, EXACT,
          f"{cls.__name__} gxa")


def test_text_layer_ig_completeness():
    """sum(attributions) = f_t(x) - f_t(x') (Sundararajan et al. 2017, completeness) up to the
    quadrature error: none when the model is linear in the embedding (mean pooling, no ReLU);
    fast-falling for the smooth LSTM; slowly falling across the ReLU kinks of MeanText."""
    cases = [("linear", 1e-12, 1), ("LSTMText", 1e-6, 64), ("MeanText", 1e-3, 64)]
    for what, tol, n in cases:
        m = _text(LSTMText if what == "LSTMText" else MeanText)
        if what == "linear":
            m.relu = nn.Identity()
        with torch.no_grad():
            gap = (m(IDS) - m(torch.full_like(IDS, PAD))).gather(1, T3.view(-1, 1)).abs().max()
        errs = []
        for steps in (2, n):
            attr, delta = L.get("layer_ig", m, "embedding", n_steps=steps).attribute(
                IDS, T3, baselines=PAD, return_convergence_delta=True)
            errs.append(delta.abs().max().item())
        print(f"{what} layer IG |delta| n=2 {errs[0]:.3g}, n={n} {errs[1]:.3g}, gap {gap:.3g}")
        assert errs[1] <= tol * gap, (what, errs)
        if what != "linear":
            assert errs[1] < 0.1 * errs[0], (what, errs)
        # pad tokens, equal to the baseline, get exactly zero attribution
        assert torch.equal(attr[0, 4:], torch.zeros(3, D))


def test_text_layer_deeplift_agrees_with_captum_and_sums_to_delta():
    m = _text(MeanText)
    base = torch.full_like(IDS, PAD)
    ours, delta = L.get("layer_deeplift", m, "embedding").attribute(
        IDS, T3, baselines=PAD, return_convergence_delta=True)
    agree(ours, LayerDeepLift(m, m.embedding).attribute(IDS, base, target=T3), EXACT,
          "MeanText layer_deeplift")
    assert delta.abs().max() <= 1e-12, delta
    # at the hidden Linear's input (the mean embedding): same multipliers, Captum too
    agree(L.get("layer_deeplift", m, "hidden").attribute(IDS, T3, baselines=base,
                                                         attribute_to_layer_input=True),
          LayerDeepLift(m, m.hidden).attribute(IDS, base, target=T3,
                                               attribute_to_layer_input=True),
          EXACT, "MeanText layer_deeplift hidden input")


def test_layer_deeplift_and_a_fused_lstm():
    """The rules act after the layer only: an LSTM after it is refused (its gates are fused,
    as for ``deeplift``); one before it does not matter. At the input of the final Linear,
    DeepLIFT is (a - a') * W_t exactly."""
    m = _text(LSTMText)
    with pytest.raises(ValueError, match="layer_deeplift: the model calls .*lstm"):
        L.get("layer_deeplift", m, "embedding").attribute(IDS, T3, baselines=PAD)
    attr, delta = L.get("layer_deeplift", m, "fc").attribute(
        IDS, T3, baselines=PAD, attribute_to_layer_input=True, return_convergence_delta=True)
    last = lambda ids: m.lstm(m.embedding(ids))[0][:, -1].detach()  # noqa: E731
    expected = (last(IDS) - last(torch.full_like(IDS, PAD))) * m.fc.weight[T3].detach()
    torch.testing.assert_close(attr, expected, rtol=0, atol=1e-15)
    assert delta.abs().max() <= 1e-14


@pytest.mark.parametrize("summation", [True, False])
def test_gradcam_on_a_2d_layer_matches_captum(summation):
    """A (N, C) layer: the weights are the gradients themselves (no spatial mean); Captum's
    map is sum_c g_c a_c, shape (N, 1), or g * a with attr_dim_summation=False."""
    m = _text(MeanText)
    theirs = LayerGradCam(m, m.hidden).attribute(IDS, T3, attr_dim_summation=summation)
    ours = L.get("layer_gradcam", m, "hidden", relu_attributions=False,
                 attr_dim_summation=summation).attribute(IDS, T3)
    agree(ours, theirs, EXACT, f"2-D gradcam summation={summation}")
    a = m.hidden(m.embedding(IDS).mean(1)).detach()
    g = (m.fc.weight[T3] * (a > 0)).detach()  # d f_t / d a through the ReLU
    torch.testing.assert_close(ours, (g * a).sum(1, keepdim=True) if summation else g * a)


def test_input_space_gradcam_on_a_2d_layer():
    torch.manual_seed(2)
    m = nn.Sequential(nn.Conv2d(2, 4, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                      nn.Linear(4, 3)).double().eval()
    x = torch.randn(3, 2, 6, 6)
    gc = methods.get("gradcam", m, layer="3", relu_attributions=False)
    theirs = LayerGradCam(m, m[3]).attribute(x, T3)
    agree(gc.layer_attribute(x, T3), theirs, EXACT, "gradcam (N, C) layer")
    assert theirs.shape == (3, 1)
    # the input map is that number per sample, broadcast
    torch.testing.assert_close(gc.attribute(x, T3), theirs.view(3, 1, 1, 1).expand_as(x))
    # the pooled features are a_k = mean_ij A_kij of the ReLU maps A (4 x 4), whose Grad-CAM
    # weights are W_tk / 16: mean_ij L_ij = sum_k (W_tk / 16) a_k = L_2d / 16
    spatial = methods.get("gradcam", m, layer="1", relu_attributions=False).layer_attribute(x, T3)
    torch.testing.assert_close(spatial.mean((2, 3)) * 16, theirs)


# ------------------------------------------------------------------------------ tuple layers

class Split(nn.Module):
    """Returns its input's two channel halves as a tuple."""

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        return x[:, :2], x[:, 2:]


class Join(nn.Module):
    """Takes two tensors (a two-argument layer input); a ReLU module Captum can hook."""

    def __init__(self):
        super().__init__()
        self.relu = nn.ReLU()

    def forward(self, a: Tensor, b: Tensor) -> Tensor:
        return torch.cat([self.relu(a), b * 2], 1)


class TupleNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.split = Split()
        self.join = Join()
        self.head = nn.Sequential(nn.ReLU(), nn.Flatten(), nn.Linear(4 * 5 * 5, 3))

    def forward(self, x: Tensor) -> Tensor:
        a, b = self.split(self.conv(x))
        return self.head(self.join(a, b))


def test_tuple_layers_give_tuples_like_captum():
    torch.manual_seed(4)
    m = TupleNet().double().eval()
    x, base = torch.randn(3, 1, 5, 5), 0.3 * torch.randn(3, 1, 5, 5)
    cases = [("split", False), ("join", True)]  # a tuple output; a two-argument input
    for layer, to_input in cases:
        mod = dict(m.named_modules())[layer]
        kw = dict(attribute_to_layer_input=to_input)
        w = f"{layer} {'input' if to_input else 'output'}"
        agree_tree(L.get("layer_gradient_x_activation", m, layer).attribute(x, T3, **kw),
                   LayerGradientXActivation(m, mod).attribute(x, T3, **kw), EXACT, f"{w} gxa")
        agree_tree(L.get("layer_ig", m, layer, n_steps=4, method="riemann_left")
                   .attribute(x, T3, baselines=base, **kw),
                   LayerIntegratedGradients(m, mod).attribute(
                       x, base, target=T3, n_steps=4, method="riemann_left", **kw),
                   EXACT, f"{w} ig")
        agree_tree(L.get("layer_deeplift", m, layer).attribute(x, T3, baselines=base, **kw),
                   LayerDeepLift(m, mod).attribute(x, base, target=T3, **kw), EXACT,
                   f"{w} deeplift")
        agree_tree(L.get("layer_gradcam", m, layer, relu_attributions=False)
                   .attribute(x, T3, **kw), LayerGradCam(m, mod).attribute(x, T3, **kw),
                   EXACT, f"{w} gradcam")
    with pytest.raises(ValueError, match="layer 'split' is a tuple.*LayerGradCam"):
        methods.get("gradcam", m, layer="split").attribute(x, T3)


def test_lstm_layer_nested_tuple():
    """``nn.LSTM`` returns (out, (h, c)): the attribution has that structure; the model reads
    ``out`` only, so h and c get zeros. Methods that stack the batch refuse h and c, whose
    batch is in dimension 1."""
    m = _text(LSTMText)
    attr = L.get("layer_gradient_x_activation", m, "lstm").attribute(IDS, T3)
    out_attr, (h_attr, c_attr) = attr
    out, _ = m.lstm(m.embedding(IDS))
    out = out.detach().requires_grad_(True)
    (g,) = torch.autograd.grad(m.fc(out[:, -1]).gather(1, T3.view(-1, 1)).sum(), out)
    torch.testing.assert_close(out_attr, g * out, rtol=0, atol=1e-15)
    assert h_attr.shape == c_attr.shape == (1, 3, H)
    assert not h_attr.any() and not c_attr.any()
    with pytest.raises(ValueError, match=r"layer_ig: a tensor in the output of layer 'lstm' has"
                                         r" shape \(1, 3, 5\).*not the batch"):
        L.get("layer_ig", m, "lstm", n_steps=2).attribute(IDS, T3)


# ----------------------------------------------------------------------- safety and errors

def snapshot(model):
    return ([m.training for m in model.modules()], [p.requires_grad for p in model.parameters()],
            {k: v.clone() for k, v in model.state_dict().items()})


def assert_untouched(model, snap):
    training, grads, state = snap
    assert [m.training for m in model.modules()] == training
    assert [p.requires_grad for p in model.parameters()] == grads
    now = model.state_dict()
    assert all(torch.equal(state[k], now[k]) for k in state)
    for mod in model.modules():
        assert not mod._forward_hooks and not mod._forward_pre_hooks, f"hook left on {mod}"
    assert all(p.grad is None for p in model.parameters())
    assert not torch._C._is_torch_function_mode_enabled()


OPTS = {"layer_ig": {"n_steps": 3}}


@pytest.fixture(scope="module")
def resnet32():
    return resnet18_random_bn(0.1).float()


@pytest.mark.parametrize("to_input", [False, True])
@pytest.mark.parametrize("name", L.available())
def test_model_untouched_and_forward_works_after(resnet32, name, to_input):
    m = resnet32
    m.train()
    m.conv1.weight.requires_grad_(False)
    snap = snapshot(m)
    x = torch.randn(2, 3, 32, 32, dtype=torch.float32)
    attr = L.get(name, m, "layer3.0.conv1", **OPTS.get(name, {})).attribute(
        x, 1, attribute_to_layer_input=to_input)
    assert torch.isfinite(attr).all() and attr.shape[0] == 2
    assert_untouched(m, snap)
    m.conv1.weight.requires_grad_(True)
    m.eval()
    with torch.no_grad():
        assert m(x).shape == (2, 10)


@pytest.mark.parametrize("name", L.available())
def test_batch_equals_one_by_one_and_repeatable(resnet32, name):
    """The layer-method side of the method contract (test_method_contract.py covers the
    input-shaped registry): a batch gives each sample's own map, and a call repeats."""
    m = resnet32.eval()
    x = torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(2), dtype=torch.float32)
    t = torch.tensor([1, 4, 7])
    attr = L.get(name, m, "layer3.0.conv1", **OPTS.get(name, {}))
    batch = attr.attribute(x, t)
    rows = torch.cat([attr.attribute(x[i:i + 1], t[i:i + 1]) for i in range(3)])
    torch.testing.assert_close(batch, rows, rtol=1e-4, atol=1e-6)
    assert torch.equal(attr.attribute(x, t), batch)


class Boom(RuntimeError):
    pass


@pytest.mark.parametrize("name", L.available())
def test_hooks_removed_after_an_exception(resnet32, name):
    m = resnet32.train()
    snap = snapshot(m)

    def explode(*_):
        raise Boom("user hook failed")

    handle = m.layer4.register_forward_hook(explode)
    try:
        with pytest.raises(Boom):
            L.get(name, m, "layer3", **OPTS.get(name, {})).attribute(
                torch.randn(2, 3, 32, 32, dtype=torch.float32), 0)
    finally:
        handle.remove()
    assert_untouched(m, snap)


class Unused(nn.Module):
    def __init__(self):
        super().__init__()
        self.used, self.spare = nn.Linear(4, 2), nn.Linear(4, 4)

    def forward(self, x: Tensor) -> Tensor:
        return self.used(x)


def test_reused_and_unreached_layers_and_bad_names(resnet32):
    m = resnet32
    x = torch.randn(1, 3, 32, 32, dtype=torch.float32)
    snap = snapshot(m)
    for name in L.available():
        with pytest.raises(ValueError, match="'layer1.0.relu' is called more than once"):
            L.get(name, m, "layer1.0.relu", **OPTS.get(name, {})).attribute(x, 0)
    with pytest.raises(ValueError, match="called more than once"):
        methods.get("gradcam", m, layer="layer1.0.relu").attribute(x, 0)
    assert_untouched(m, snap)
    with pytest.raises(ValueError, match="no layer named 'layer5'.*layer4"):
        L.get("layer_ig", m, "layer5")
    with pytest.raises(ValueError, match="is not a submodule"):
        L.get("layer_saliency", m, nn.ReLU())
    with pytest.raises(ValueError, match="unknown layer method 'layer_lrp'"):
        L.get("layer_lrp", m, "layer4")
    unused = Unused()
    with pytest.raises(ValueError, match="'spare' was not called"):
        L.get("layer_saliency", unused, "spare").attribute(torch.randn(2, 4), 0)


def test_token_input_errors():
    m = _text(MeanText)
    lig = L.get("layer_ig", m, "embedding", n_steps=2)
    with pytest.raises(ValueError, match=r"inputs hold token ids in \[1, 17\].*17 entries"):
        lig.attribute(IDS.clamp(max=16) + 1, T3)
    with pytest.raises(ValueError, match=r"baselines hold token ids in \[-1, -1\]"):
        lig.attribute(IDS, T3, baselines=-1)
    with pytest.raises(TypeError, match="an int .*pad id.*float"):
        lig.attribute(IDS, T3, baselines=0.5)
    with pytest.raises(TypeError, match="integer tensor of ids.*float64"):
        lig.attribute(IDS, T3, baselines=torch.zeros(3, 7))
    with pytest.raises(ValueError, match=r"baselines of shape \(2, 7\) does not broadcast"):
        lig.attribute(IDS, T3, baselines=torch.zeros(2, 7, dtype=torch.long))
    with pytest.raises(TypeError, match="floating or integer token ids"):
        lig.attribute(IDS > 3, T3)
    with pytest.raises(ValueError, match="must be batched"):
        lig.attribute(IDS[0], 0)
    with pytest.raises(ValueError, match="int64 tensor.*nn.Embedding's input is token ids"):
        lig.attribute(IDS, T3, attribute_to_layer_input=True)
    with pytest.raises(ValueError, match="target out of range"):
        lig.attribute(IDS, 5)
    with pytest.raises(ValueError, match="n_steps"):
        lig.attribute(IDS, T3, n_steps=0)
    with pytest.raises(TypeError, match="return_convergence_delta"):
        L.get("layer_saliency", m, "embedding").attribute(IDS, T3, return_convergence_delta=True)
    # float inputs keep the checks of every method
    with pytest.raises(ValueError, match="NaN"):
        L.get("layer_saliency", nn.Sequential(nn.Linear(3, 2)), "0").attribute(
            torch.full((1, 3), float("nan")), 0)
    # the predicted class when target is None
    pred = m(IDS).argmax(1)
    torch.testing.assert_close(L.get("layer_saliency", m, "embedding").attribute(IDS),
                               L.get("layer_saliency", m, "embedding").attribute(IDS, pred))


def test_inplace_relu_after_the_layer_and_in_place_layer_input():
    """The network continues with copies of the swapped activations: an in-place ReLU after
    the layer, or an in-place layer whose input is attributed, changes nothing."""
    torch.manual_seed(6)
    lin1, lin2 = nn.Linear(4, 5).double(), nn.Linear(5, 3).double()
    inplace = nn.Sequential(lin1, nn.ReLU(inplace=True), lin2).eval()
    plain = nn.Sequential(lin1, nn.ReLU(), lin2).eval()
    x = torch.randn(3, 4)
    for name in L.available():
        for layer, to_input in (("0", False), ("1", True)):
            kw = dict(attribute_to_layer_input=to_input)
            a = L.get(name, inplace, layer, **OPTS.get(name, {})).attribute(x, T3, **kw)
            b = L.get(name, plain, layer, **OPTS.get(name, {})).attribute(x, T3, **kw)
            torch.testing.assert_close(a, b, rtol=0, atol=0)


# -------------------------------------------------------------------------------- metadata

def test_layer_registry_metadata():
    assert set(L.available()) == {"layer_saliency", "layer_gradient_x_activation", "layer_ig",
                                  "layer_deeplift", "layer_gradcam"}
    assert not set(L.available()) & set(methods.available())  # not picked up by runners
    for name in L.available():
        cls = L.method_class(name)
        info = cls.describe()
        assert info["name"] == name and info["reference"], name
        assert info["cost_at_defaults"] >= 1 and "tokens" in info["input_kinds"], name
        assert set(info["input_kinds"]) <= {"image", "flat", "sequence", "tokens"}, name
        assert set(info["options"]) == set(cls.option_specs()) >= {"attribute_to_layer_input"}
        assert not info["needs_data"] and not info["random"]
    assert L.method_class("layer_ig").cost(n_steps=16) == 17
    assert L.method_class("layer_deeplift").cost() == 2
    m = _text(MeanText)
    assert L.get("layer_ig", m, "embedding", n_steps=5).n_steps == 5
    assert "layer='embedding'" in repr(L.get("layer_ig", m, m.embedding))
    with pytest.raises(ValueError, match="unknown option.*n_stepz.*attribute_to_layer_input"):
        L.get("layer_ig", m, "embedding", n_stepz=3)
    # cost grows with the steps like the input-space IG's
    assert np.isclose(L.method_class("layer_ig").cost(n_steps=50),
                      methods.method_class("ig").cost(n_steps=50) + 1)
