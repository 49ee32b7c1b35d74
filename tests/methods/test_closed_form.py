"""Every method against a value computed by hand on a model small enough to write out."""

import numpy as np
import pytest
import torch
from torch import nn

from attrlab import methods
from attrlab.methods.cam.fullgrad import psi


@pytest.fixture(autouse=True)
def _float64():
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(torch.float32)


def linear_model(d=6, k=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    lin = nn.Linear(d, k)
    with torch.no_grad():
        lin.weight.copy_(torch.randn(k, d, generator=g))
        lin.bias.copy_(torch.randn(k, generator=g))
    return lin


class OneHidden(nn.Module):
    """f(x) = V relu(W x + c) + d, written out so every method has a closed form."""

    def __init__(self, d=5, h=7, k=3, seed=1):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.fc1, self.fc2, self.relu = nn.Linear(d, h), nn.Linear(h, k), nn.ReLU()
        with torch.no_grad():
            for p in self.parameters():
                p.copy_(torch.randn(p.shape, generator=g))

    def forward(self, x):
        return self.fc2(self.relu(self.fc1(x)))


def test_linear_model_closed_forms():
    m = linear_model()
    x = torch.randn(4, 6)
    t = torch.tensor([0, 1, 2, 1])
    w = m.weight[t].detach()
    b = m.bias[t].detach()
    x0 = torch.randn(4, 6)
    get = lambda n, **kw: methods.get(n, m, **kw)
    torch.testing.assert_close(get("saliency").attribute(x, t), w.abs())
    torch.testing.assert_close(get("saliency", abs=False).attribute(x, t), w)
    torch.testing.assert_close(get("gxi").attribute(x, t), w * x)
    torch.testing.assert_close(get("pgxi").attribute(x, t), w.clamp(min=0) * x)
    torch.testing.assert_close(get("gxsi").attribute(x, t), w * x.sign())
    for rule in ("gausslegendre", "riemann_left", "riemann_right", "riemann_middle",
                 "riemann_trapezoid"):
        ig = get("ig", n_steps=7, method=rule).attribute(x, t, baselines=x0)
        torch.testing.assert_close(ig, w * (x - x0))
    torch.testing.assert_close(get("deeplift").attribute(x, t, baselines=x0), w * (x - x0))
    bl = torch.randn(5, 6)
    torch.testing.assert_close(get("deepshap").attribute(x, t, baselines=bl),
                               w * (x - bl.mean(0)))
    # UFG: the bias is spread evenly over the d inputs.
    torch.testing.assert_close(get("ufg").attribute(x, t), w * x + (b / 6).view(-1, 1))
    # FullGrad keeps only conv-shaped bias terms: here just psi(x * grad), broadcast.
    expect = psi((w * x).unsqueeze(1)).squeeze(1)
    torch.testing.assert_close(get("fullgrad").attribute(x, t), expect.expand_as(x))


def test_smoothgrad_of_constant_gradient_is_exact():
    m = linear_model()
    x, t = torch.randn(3, 6), torch.tensor([2, 0, 1])
    w = m.weight[t].detach()
    sg = lambda nt: methods.get("smoothgrad", m, base="saliency", abs=False, nt_type=nt,
                                nt_samples=8, stdevs=3.0)
    torch.testing.assert_close(sg("smoothgrad").attribute(x, t), w)
    torch.testing.assert_close(sg("smoothgrad_sq").attribute(x, t), w * w)
    torch.testing.assert_close(sg("vargrad").attribute(x, t), torch.zeros_like(w), atol=1e-12, rtol=0)
    # the noise is really there: SmoothGrad of G x I averages (x + noise) * w
    torch.manual_seed(0)
    a = methods.get("smoothgrad", m, base="gxi", nt_samples=4, stdevs=1.0).attribute(x, t)
    assert not torch.allclose(a, w * x)


def hidden_parts(m, x):
    W, c = m.fc1.weight.detach(), m.fc1.bias.detach()
    V = m.fc2.weight.detach()
    return W, c, V, x @ W.T + c


def test_one_hidden_layer_gradient_methods():
    m = OneHidden()
    x = torch.randn(4, 5)
    t = torch.tensor([0, 2, 1, 2])
    W, c, V, h = hidden_parts(m, x)
    v = V[t]  # (N, H)
    grad = ((h > 0) * v) @ W
    torch.testing.assert_close(methods.get("saliency", m, abs=False).attribute(x, t), grad)
    torch.testing.assert_close(methods.get("gxsi", m).attribute(x, t), grad * x.sign())
    gbp = ((h > 0) * v.clamp(min=0)) @ W
    torch.testing.assert_close(methods.get("gbp", m).attribute(x, t), gbp)


def test_one_hidden_layer_deeplift_rescale():
    m = OneHidden()
    x, x0 = torch.randn(4, 5), torch.randn(4, 5)
    t = torch.tensor([1, 1, 0, 2])
    W, c, V, h = hidden_parts(m, x)
    h0 = x0 @ W.T + c
    mult = (h.clamp(min=0) - h0.clamp(min=0)) / (h - h0)
    expect = (x - x0) * ((V[t] * mult) @ W)
    got, delta = methods.get("deeplift", m).attribute(x, t, baselines=x0,
                                                      return_convergence_delta=True)
    torch.testing.assert_close(got, expect)
    assert delta.abs().max() < 1e-10


def test_one_hidden_layer_integrated_gradients_exact_path_integral():
    """Along the straight path each hidden pre-activation is linear in alpha, so unit j is
    active on a known fraction of [0, 1] and IG_i = (x_i - x0_i) sum_j V_tj W_ji frac_j."""
    m = OneHidden()
    x, x0 = torch.randn(3, 5), torch.randn(3, 5)
    t = torch.tensor([0, 1, 2])
    W, c, V, h = hidden_parts(m, x)
    h0 = x0 @ W.T + c
    # fraction of alpha in [0,1] with h0 + alpha (h - h0) > 0
    root = -h0 / (h - h0)
    frac = torch.where(h > h0, 1 - root.clamp(0, 1), root.clamp(0, 1))
    frac = torch.where(h == h0, (h0 > 0).double(), frac)
    expect = (x - x0) * ((V[t] * frac) @ W)
    ig = methods.get("ig", m, n_steps=4000, method="riemann_middle")
    got = ig.attribute(x, t, baselines=x0)
    torch.testing.assert_close(got, expect, atol=2e-3, rtol=1e-3)
    # internal batching gives the same numbers
    torch.testing.assert_close(ig.attribute(x, t, baselines=x0, internal_batch_size=50), got)


def test_one_hidden_layer_rectgrad_percentile_threshold():
    m = OneHidden(h=9)
    x = torch.randn(3, 5)
    t = torch.tensor([2, 0, 1])
    W, c, V, h = hidden_parts(m, x)
    a = h.clamp(min=0)
    v = V[t]
    imp = (a * v).numpy()
    tau = np.percentile(imp, 60, axis=1, keepdims=True)  # linear interpolation, as torch
    keep = torch.from_numpy(imp > tau) & (a > 0)
    expect = x * ((v * keep) @ W)
    torch.testing.assert_close(methods.get("rectgrad", m, q=60).attribute(x, t), expect)
    # q = 0 keeps every unit with positive importance above the minimum: differs from q=60
    assert not torch.allclose(methods.get("rectgrad", m, q=0).attribute(x, t), expect)


class TinyCAM(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(2, 3, 3, padding=1)
        self.relu = nn.ReLU()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(3, 4)

    def forward(self, x):
        return self.fc(self.pool(self.relu(self.conv(x))).flatten(1))


def test_gradcam_closed_form_on_gap_network():
    """After global average pooling, dy_t/dA^k_ij = W_tk / (h w) (Grad-CAM's CAM case)."""
    torch.manual_seed(0)
    m = TinyCAM()
    x = torch.randn(2, 2, 6, 6)
    t = torch.tensor([3, 1])
    A = torch.relu(m.conv(x)).detach()
    alpha = m.fc.weight[t].detach() / 36
    cam = (alpha.view(2, 3, 1, 1) * A).sum(1, keepdim=True)
    gc = methods.get("gradcam", m, layer="relu", relu_attributions=False)
    torch.testing.assert_close(gc.layer_attribute(x, t), cam)
    gc_relu = methods.get("gradcam", m, layer="relu")
    torch.testing.assert_close(gc_relu.layer_attribute(x, t), cam.clamp(min=0))
    # input-shaped map: same spatial size here, broadcast over the 2 input channels
    torch.testing.assert_close(gc_relu.attribute(x, t), cam.clamp(min=0).expand_as(x))


def test_psi_post_processing_by_hand():
    v = torch.tensor([[[[-2.0, 1.0]], [[0.5, 0.0]]]])  # (1, 2, 1, 2)
    a = torch.tensor([2.0, 1.0, 0.5, 0.0])
    a = (a - 0.0) / (2.0 + 1e-6)
    torch.testing.assert_close(psi(v), torch.tensor([[[[a[0] + a[2], a[1] + a[3]]]]]))


def test_fullgrad_completeness_and_map_on_conv_net():
    torch.manual_seed(3)
    m = nn.Sequential(nn.Conv2d(2, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(inplace=True),
                      nn.MaxPool2d(2), nn.Conv2d(4, 4, 3, padding=1), nn.ReLU(),
                      nn.Flatten(), nn.Linear(4 * 4 * 4, 3))
    with torch.no_grad():
        m[1].running_mean.normal_(0, 0.5)
        m[1].running_var.uniform_(0.5, 2)
        m[1].weight.uniform_(0.5, 1.5)
        m[1].bias.normal_(0, 0.5)
    m.eval()
    x = torch.randn(3, 2, 8, 8)
    t = torch.tensor([0, 1, 2])
    fg = methods.get("fullgrad", m)
    terms = fg.decompose(x, t)
    total = terms.input_term.flatten(1).sum(1) + sum(b.flatten(1).sum(1) for b in terms.bias_terms)
    torch.testing.assert_close(total, m(x)[torch.arange(3), t])
    assert len(terms.bias_terms) == 4  # conv, BN (implied bias), conv, linear
    # the saliency is psi(x * grad) + psi of each conv-shaped bias term (3 of them)
    x_ = x.clone().requires_grad_(True)
    grad = torch.autograd.grad(m(x_)[torch.arange(3), t].sum(), x_)[0]
    assert torch.allclose(terms.input_term, grad * x)
    sal = psi(grad * x) + sum(psi(b) if b.shape[-1] == 8 else
                              torch.nn.functional.interpolate(psi(b), size=(8, 8), mode="bilinear",
                                                              align_corners=True)
                              for b in terms.bias_terms if b.dim() == 4)
    torch.testing.assert_close(fg.attribute(x, t), sal.expand_as(x))
    ufg = methods.get("ufg", m).attribute(x, t)
    torch.testing.assert_close(ufg.flatten(1).sum(1), m(x)[torch.arange(3), t])


def test_bound_options_are_defaults_that_calls_override():
    m = linear_model()
    x, t = torch.randn(2, 6), torch.tensor([0, 1])
    bl, other = torch.randn(4, 6), torch.randn(3, 6)
    plain = methods.get("deepshap", m)
    bound = plain.bind(baselines=bl)
    assert plain.defaults["baselines"] is None and bound.defaults["baselines"] is bl  # a copy
    torch.testing.assert_close(bound.attribute(x, t), plain.attribute(x, t, baselines=bl))
    torch.testing.assert_close(bound.attribute(x, t, baselines=other),
                               plain.attribute(x, t, baselines=other))
