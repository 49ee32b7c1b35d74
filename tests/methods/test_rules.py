"""Backward rules as objects chosen per torch function (attrlab.core.rules): closed forms per
op, summation-to-delta through hard activations, softmax and products, refusals of ops the
rules cannot see, call counts, and user-made rules and composites."""

import math

import pytest
import torch
import torch.nn.functional as F
import torchvision
from torch import Tensor, nn
from zoo_helpers import resnet18_random_bn

from attrlab import methods
from attrlab.core.rules import (
    OPS,
    Composite,
    Guided,
    MaxPoolRescale,
    NonlinearityRules,
    Rescale,
    Rule,
    Softmax,
    deeplift_composite,
    gbp_composite,
)

pytestmark = pytest.mark.usefixtures("one_thread")
RULE_METHODS = ("deeplift", "deepshap", "gbp", "rectgrad")


def call(name, model, x, t, **kw):
    if name == "deepshap":
        kw.setdefault("baselines", torch.zeros(2, *x.shape[1:], dtype=x.dtype))
    return methods.get(name, model).attribute(x, t, **kw)


class Head(nn.Module):
    """logits = act(x) @ W: DeepLIFT's map is (act(x) - act(x0)) * W[:, t] exactly."""

    def __init__(self, act, d: int = 6, k: int = 3) -> None:
        super().__init__()
        self.act = act
        self.register_buffer("w", torch.randn(d, k, generator=torch.Generator().manual_seed(0),
                                              dtype=torch.float64))

    def forward(self, x: Tensor) -> Tensor:
        return self.act(x + 0.0) @ self.w


# spelling -> (callable, positive-domain op)
SPELLINGS = {
    "nn.Hardswish": (nn.Hardswish(), False),
    "nn.Hardswish(inplace)": (nn.Hardswish(inplace=True), False),
    "F.hardswish": (F.hardswish, False),
    "nn.Hardsigmoid(inplace)": (nn.Hardsigmoid(inplace=True), False),
    "F.hardsigmoid": (F.hardsigmoid, False),
    "nn.ReLU6": (nn.ReLU6(), False),
    "nn.ReLU6(inplace)": (nn.ReLU6(inplace=True), False),
    "F.relu6": (F.relu6, False),
    "nn.Hardtanh(-2, 3)": (nn.Hardtanh(-2.0, 3.0), False),
    "F.hardtanh_": (lambda h: F.hardtanh_(h, -1.0, 2.0), False),
    "nn.ReLU(inplace)": (nn.ReLU(inplace=True), False),
    "Tensor.relu_": (Tensor.relu_, False),
    "torch.sigmoid": (torch.sigmoid, False),
    "Tensor.sigmoid_": (Tensor.sigmoid_, False),
    "nn.Tanh": (nn.Tanh(), False),
    "nn.ELU": (nn.ELU(0.7), False),
    "nn.LeakyReLU(inplace)": (nn.LeakyReLU(0.1, inplace=True), False),
    "nn.GELU(tanh)": (nn.GELU("tanh"), False),
    "nn.SiLU(inplace)": (nn.SiLU(inplace=True), False),
    "nn.Softplus": (nn.Softplus(2.0, 3.0), False),
    "nn.Mish": (nn.Mish(), False),
    "nn.SELU": (nn.SELU(), False),
    "nn.CELU": (nn.CELU(0.5), False),
    "nn.Softsign": (nn.Softsign(), False),
    "nn.LogSigmoid": (nn.LogSigmoid(), False),
    "torch.exp": (torch.exp, False),
    "Tensor.log": (Tensor.log, True),
    "torch.sqrt": (torch.sqrt, True),
    "Tensor.square": (Tensor.square, False),
    "abs": (abs, False),
    "x ** 3": (lambda h: h ** 3, False),
    "torch.pow(x, 2)": (lambda h: torch.pow(h, 2), False),
}


@pytest.mark.parametrize("spelling", list(SPELLINGS))
def test_rescale_multiplier_is_the_difference_quotient(spelling):
    """Per op: DeepLIFT's multiplier is (f(x) - f(x0)) / (x - x0) (Shrikumar et al. 2017,
    eq. 3.3), so the map of act(x) @ W is (f(x) - f(x0)) * W[:, t]; inputs straddle every kink
    (hardswish/hardsigmoid at +-3, relu6 at 0 and 6), so the gradient would differ."""
    act, positive = SPELLINGS[spelling]
    g = torch.Generator().manual_seed(1)
    lo, hi = (0.2, 7.0) if positive else (-5.0, 7.0)
    x = lo + (hi - lo) * torch.rand(4, 6, generator=g, dtype=torch.float64)
    x0 = lo + (hi - lo) * torch.rand(4, 6, generator=g, dtype=torch.float64)
    model = Head(act).eval()
    t = torch.tensor([0, 1, 2, 0])
    with torch.no_grad():
        f, f0 = act(x.clone()), act(x0.clone())
    expect = (f - f0) * model.w[:, t].T
    got = methods.get("deeplift", model).attribute(x, t, baselines=x0)
    torch.testing.assert_close(got, expect, rtol=1e-10, atol=1e-12)
    # a foil: the plain gradient at x times (x - x0)
    grad = methods.get("saliency", model, abs=False).attribute(x, t)
    assert not torch.allclose(got, grad * (x - x0), atol=1e-6)


def test_every_elementwise_spelling_shares_one_rule_object():
    comp = deeplift_composite()
    rules = {id(comp.rule_for(f)) for name in ("relu", "hardswish", "relu6", "hardtanh", "exp")
             for f in OPS[name]}
    assert len(rules) == 1
    for f in (F.relu, torch.relu, Tensor.relu, torch.relu_, Tensor.relu_, F.relu_):
        assert f in OPS["relu"]
    assert isinstance(comp.rule_for(F.max_pool3d), MaxPoolRescale)
    assert isinstance(comp.rule_for(Tensor.softmax), Softmax)


# ---------------------------------------------------------------------------------------------
# MobileNetV3 (hard activations + squeeze-excitation products)
# ---------------------------------------------------------------------------------------------


def warmed_random(model: nn.Module, shape) -> nn.Module:
    """Random init, Linear weights N(0, 1/fan_in) (torchvision's 0.01 makes the logits nearly
    constant), BatchNorm statistics from two train-mode passes (activations O(1), crossing the
    hard kinks); eval, float64."""
    for mod in model.modules():
        if isinstance(mod, nn.BatchNorm2d):
            mod.momentum = None
        if isinstance(mod, nn.Linear):
            nn.init.normal_(mod.weight, 0.0, mod.in_features ** -0.5)
    model.train()
    with torch.no_grad():
        for _ in range(2):
            model(torch.randn(8, *shape))
    return model.eval().double()


@pytest.fixture(scope="module")
def mobilenet():
    """torchvision mobilenet_v3_small(weights=None), see :func:`warmed_random`."""
    with torch.random.fork_rng():
        torch.manual_seed(0)
        m = torchvision.models.mobilenet_v3_small(weights=None, num_classes=10)
        return warmed_random(m, (3, 64, 64))


def mnv3_data():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(2, 3, 64, 64, generator=g, dtype=torch.float64)
    b = 0.5 * torch.randn(2, 3, 64, 64, generator=g, dtype=torch.float64)
    return x, b, torch.tensor([1, 2])


def relative_delta(model, composite, x, b, t):
    dl = methods.get("deeplift", model, composite=composite)
    _, delta = dl.attribute(x, t, baselines=b, return_convergence_delta=True)
    with torch.no_grad():
        diff = model(x)[torch.arange(len(t)), t] - model(b)[torch.arange(len(t)), t]
    return (delta.abs() / diff.abs()).max().item()


def test_deeplift_mobilenet_v3_summation_to_delta(mobilenet):
    """Hardswish/hardsigmoid rescale + the Shapley product rule for squeeze-excitation make
    DeepLIFT exact on MobileNetV3: measured relative error ~4e-15 (before: ~36x |f(x)-f(x')|
    on this model, the hard activations taking their gradient)."""
    x, b, t = mnv3_data()
    full = relative_delta(mobilenet, None, x, b, t)
    print(f"mobilenet_v3_small deeplift |delta| / |f(x)-f(x')| = {full:.3g}")
    assert full < 1e-10
    # the test can fail: without the new rules the error is large ...
    no_hard = deeplift_composite().without("hardswish", "hardsigmoid")
    assert relative_delta(mobilenet, no_hard, x, b, t) > 0.1
    # ... and without the product rule (gradient through the SE gate) too (measured 0.51)
    err = relative_delta(mobilenet, deeplift_composite().without("mul"), x, b, t)
    print(f"without the product rule: {err:.3g}")
    assert err > 1e-2
    # GBP / RectGrad apply their rule at the ReLUs and run
    for name in ("gbp", "rectgrad"):
        out = call(name, mobilenet, x, t)
        assert out.shape == x.shape and torch.isfinite(out).all() and out.abs().max() > 0


def test_deeplift_mobilenet_v2_relu6_summation_to_delta():
    """ReLU6 (nn.ReLU6 calls F.hardtanh) gets the rescale rule: MobileNetV2 is exact."""
    with torch.random.fork_rng():
        torch.manual_seed(0)
        m = torchvision.models.mobilenet_v2(weights=None, num_classes=5, width_mult=0.25)
        m = warmed_random(m, (3, 32, 32))
    g = torch.Generator().manual_seed(2)
    x = 3 * torch.randn(2, 3, 32, 32, generator=g, dtype=torch.float64)
    t = torch.tensor([0, 3])
    b = torch.zeros_like(x)
    full = relative_delta(m, None, x, b, t)
    without = relative_delta(m, deeplift_composite().without("hardtanh"), x, b, t)
    print(f"mobilenet_v2 deeplift relative delta {full:.3g}, without the ReLU6 rule {without:.3g}")
    assert full < 1e-10 and without > 1e-2


# ---------------------------------------------------------------------------------------------
# Softmax and products
# ---------------------------------------------------------------------------------------------


def _mlp(out_act=None, seed=3):
    torch.manual_seed(seed)
    layers = [nn.Linear(5, 8), nn.Tanh(), nn.Linear(8, 4)]
    if out_act is not None:
        layers.append(out_act)
    return nn.Sequential(*layers).double().eval()


@pytest.mark.parametrize("out_act", [nn.Softmax(dim=1), nn.LogSoftmax(dim=-1)])
def test_softmax_rule_completeness_at_the_end(out_act):
    m = _mlp(out_act)
    with torch.no_grad():
        m[2].weight.mul_(4)  # sharp softmax: the path Jacobian varies a lot
    g = torch.Generator().manual_seed(4)
    x = torch.randn(6, 5, generator=g, dtype=torch.float64)
    b = torch.randn(6, 5, generator=g, dtype=torch.float64)
    t = torch.tensor([0, 1, 2, 3, 0, 1])
    assert relative_delta(m, None, x, b, t) < 1e-10
    # Gauss-Legendre alone (no residual correction) converges with the number of nodes
    e1 = relative_delta(m, deeplift_composite().updated({"softmax": Softmax(1, correct=False),
                                                          "log_softmax": Softmax(1, correct=False)}),
                        x, b, t)
    e32 = relative_delta(m, deeplift_composite().updated({"softmax": Softmax(32, correct=False),
                                                           "log_softmax": Softmax(32, correct=False)}),
                         x, b, t)
    print(f"softmax rule, quadrature only: n=1 {e1:.3g}, n=32 {e32:.3g}")
    assert e1 > 1e-4 and e32 < 1e-6
    # without a rule the plain gradient is far off
    assert relative_delta(m, deeplift_composite().without("softmax", "log_softmax"), x, b, t) > 1e-2


def test_gbp_keeps_the_softmax_gradient():
    """GBP's rule is at the ReLUs only: through a final softmax the backward signal is the
    softmax gradient p_t (e_t - p), then guided at the ReLU (Springenberg et al. 2014)."""
    torch.manual_seed(18)
    m = nn.Sequential(nn.Linear(5, 8), nn.ReLU(), nn.Linear(8, 4), nn.Softmax(1)).double()
    x = torch.randn(3, 5, dtype=torch.float64)
    t = torch.tensor([0, 2, 3])
    with torch.no_grad():
        h = m[0](x)
        p = m(x)
        dz = p.gather(1, t.view(-1, 1)) * (F.one_hot(t, 4).double() - p)
        expect = ((h > 0) * (dz @ m[2].weight).clamp(min=0)) @ m[0].weight
    torch.testing.assert_close(call("gbp", m, x, t), expect)


def test_softmax_multiplier_is_the_path_averaged_jacobian():
    """M^T g of the rule (n = 16 nodes, quadrature only) equals int_0^1 J(z0 + a dz)^T g da
    computed with a 2000-point midpoint rule by autograd."""
    g_ = torch.Generator().manual_seed(5)
    z = torch.randn(3, 7, generator=g_, dtype=torch.float64)
    z0 = torch.randn(3, 7, generator=g_, dtype=torch.float64)
    gout = torch.randn(3, 7, generator=g_, dtype=torch.float64)
    both = torch.cat([z, z0]).requires_grad_(True)
    comp = Composite({"softmax": Softmax(16, correct=False)})
    with NonlinearityRules(comp):
        y = torch.softmax(both, 1)
    (got,) = torch.autograd.grad(y, both, torch.cat([gout, gout]))
    a = (torch.arange(2000, dtype=torch.float64) + 0.5) / 2000
    path = (z0 + a.view(-1, 1, 1) * (z - z0)).requires_grad_(True)
    (ref,) = torch.autograd.grad(torch.softmax(path, -1), path, gout.expand_as(path))
    torch.testing.assert_close(got[:3], ref.mean(0), rtol=1e-6, atol=1e-9)
    torch.testing.assert_close(got[3:], got[:3])


class AttentionPool(nn.Module):
    """Softmax inside: a hand-written single-head attention block (q k^T / sqrt(d), softmax,
    @ v), tanh, then attention pooling (softmax weights times tokens) and a linear head."""

    def __init__(self, d=6, k=3):
        super().__init__()
        torch.manual_seed(6)
        self.qkv = nn.Linear(d, 3 * d)
        self.score = nn.Linear(d, 1)
        self.head = nn.Linear(d, k)

    def forward(self, x):  # x: (N, T, d)
        q, k, v = self.qkv(x).chunk(3, -1)
        att = torch.softmax(q @ k.transpose(1, 2) / math.sqrt(q.shape[-1]), dim=-1)
        h = torch.tanh(att @ v) + x
        w = F.softmax(self.score(h), dim=1)
        return self.head((w * h).sum(1))


def test_softmax_and_products_inside_are_exact():
    m = AttentionPool().double().eval()
    g = torch.Generator().manual_seed(7)
    x = torch.randn(3, 5, 6, generator=g, dtype=torch.float64)
    b = 0.3 * torch.randn(3, 5, 6, generator=g, dtype=torch.float64)
    t = torch.tensor([0, 1, 2])
    assert relative_delta(m, None, x, b, t) < 1e-10
    assert relative_delta(m, deeplift_composite().without("mul", "matmul"), x, b, t) > 1e-4
    _, d = methods.get("deepshap", m).attribute(x, t, baselines=b, return_convergence_delta=True)
    assert d.abs().max() < 1e-10


class HandLSTM(nn.Module):
    """An LSTM written with linear, sigmoid, tanh and *: every step is visible to the rules."""

    def __init__(self, d=4, h=5, k=3):
        super().__init__()
        torch.manual_seed(8)
        self.x2g, self.h2g, self.head, self.h = nn.Linear(d, 4 * h), nn.Linear(h, 4 * h), \
            nn.Linear(h, k), h

    def forward(self, x):  # (N, T, d)
        hx = cx = x.new_zeros(x.shape[0], self.h)
        for step in range(x.shape[1]):
            i, f, g, o = (self.x2g(x[:, step]) + self.h2g(hx)).chunk(4, 1)
            cx = torch.sigmoid(f) * cx + torch.sigmoid(i) * torch.tanh(g)
            hx = torch.sigmoid(o) * torch.tanh(cx)
        return self.head(hx)


def test_deeplift_on_an_lstm_written_out_is_exact():
    m = HandLSTM().double().eval()
    g = torch.Generator().manual_seed(9)
    x = torch.randn(3, 4, 4, generator=g, dtype=torch.float64)
    b = torch.zeros_like(x)
    assert relative_delta(m, None, x, b, torch.tensor([0, 1, 2])) < 1e-10


# ---------------------------------------------------------------------------------------------
# Refusals
# ---------------------------------------------------------------------------------------------


class RNNClassifier(nn.Module):
    def __init__(self, kind):
        super().__init__()
        torch.manual_seed(10)
        self.rnn = kind(4, 6, batch_first=True)
        self.relu = nn.ReLU()
        self.fc = nn.Linear(6, 3)

    def forward(self, x):
        out, _ = self.rnn(x)
        return self.fc(self.relu(out[:, -1]))


class SDPAClassifier(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(11)
        self.qkv, self.fc = nn.Linear(4, 12), nn.Linear(4, 3)

    def forward(self, x):
        q, k, v = self.qkv(x).chunk(3, -1)
        return self.fc(torch.relu(F.scaled_dot_product_attention(q, k, v)).mean(1))


class MHAClassifier(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(12)
        self.att, self.fc = nn.MultiheadAttention(4, 2, batch_first=True), nn.Linear(4, 3)

    def forward(self, x):
        return self.fc(torch.relu(self.att(x, x, x)[0]).mean(1))


def tiny_vit():
    torch.manual_seed(13)
    return torchvision.models.VisionTransformer(image_size=32, patch_size=16, num_layers=1,
                                                num_heads=2, hidden_dim=8, mlp_dim=16,
                                                num_classes=3)


REFUSED = {
    "lstm": (lambda: RNNClassifier(nn.LSTM), (2, 5, 4), {m: r"torch\.lstm \(nn\.LSTM\)"
                                                          for m in RULE_METHODS}),
    "gru": (lambda: RNNClassifier(nn.GRU), (2, 5, 4), {m: r"torch\.gru \(nn\.GRU\)"
                                                        for m in RULE_METHODS}),
    "rnn": (lambda: RNNClassifier(nn.RNN), (2, 5, 4), {m: r"torch\.rnn_tanh \(nn\.RNN\)"
                                                        for m in RULE_METHODS}),
    "sdpa": (SDPAClassifier, (2, 5, 4), {m: "F.scaled_dot_product_attention"
                                         for m in RULE_METHODS}),
    "mha": (MHAClassifier, (2, 5, 4), {m: r"multi_head_attention_forward \(nn.MultiheadAtt"
                                       for m in RULE_METHODS}),
    # the ViT's first unsupported op for DeepLIFT is the LayerNorm before the attention
    "vit": (tiny_vit, (2, 3, 32, 32), {"deeplift": r"F\.layer_norm", "deepshap": r"F\.layer_norm",
                                       "gbp": "multi_head_attention", "rectgrad":
                                       "multi_head_attention"}),
}


@pytest.mark.parametrize("method", RULE_METHODS)
@pytest.mark.parametrize("case", list(REFUSED))
def test_rule_methods_refuse_ops_they_cannot_see(case, method):
    build, shape, pattern = REFUSED[case]
    model = build().double()
    model.train()
    x = torch.randn(*shape, dtype=torch.float64)
    with torch.no_grad():
        before = model.eval()(x)
    model.train()
    flags = [p.requires_grad for p in model.parameters()]
    with pytest.raises(ValueError, match=rf"^{method}: the model calls .*{pattern[method]}"):
        call(method, model, x, 0)
    # nothing is left behind: no mode, no hook, flags restored, same plain forward
    assert not torch._C._is_torch_function_mode_enabled()
    assert model.training and [p.requires_grad for p in model.parameters()] == flags
    for m in model.modules():
        assert not m._forward_hooks and not m._forward_pre_hooks
    with torch.no_grad():
        torch.testing.assert_close(model.eval()(x), before, rtol=0, atol=0)


def test_lstm_error_message_says_why():
    with pytest.raises(ValueError, match="internal nonlinearities the rescale rule cannot see"):
        call("deeplift", RNNClassifier(nn.LSTM).double(), torch.randn(2, 5, 4).double(), 0)


def test_deeplift_refuses_per_sample_normalisation_and_input_divisors():
    torch.manual_seed(14)
    ln = nn.Sequential(nn.Linear(4, 6), nn.LayerNorm(6), nn.ReLU(), nn.Linear(6, 2)).double()
    x = torch.randn(3, 4, dtype=torch.float64)
    with pytest.raises(ValueError, match=r"deeplift: the model calls F\.layer_norm"):
        call("deeplift", ln, x, 0)
    # GBP's and RectGrad's rules are defined at ReLUs only: a LayerNorm is fine for them
    for name in ("gbp", "rectgrad"):
        assert call(name, ln, x, 0).shape == x.shape
    gn = nn.Sequential(nn.Conv2d(1, 4, 3), nn.GroupNorm(2, 4), nn.ReLU(), nn.Flatten(),
                       nn.Linear(4 * 4 * 4, 2)).double()
    with pytest.raises(ValueError, match=r"F\.group_norm"):
        call("deeplift", gn, torch.randn(2, 1, 6, 6, dtype=torch.float64), 0)
    bn = nn.Sequential(nn.Linear(4, 6), nn.BatchNorm1d(6, track_running_stats=False), nn.ReLU(),
                       nn.Linear(6, 2)).double()
    with pytest.raises(ValueError, match="batch statistics.*mixes the inputs and baselines"):
        call("deeplift", bn, x, 0)

    class Ratio(nn.Module):
        def forward(self, x):
            return (x / (x.abs().sum(1, keepdim=True) + 1.0))[:, :2] * 2.0

    with pytest.raises(ValueError, match="dividing by an input-dependent tensor"):
        call("deeplift", Ratio(), x, 0)

    class Scaled(nn.Module):  # division by a constant is linear: fine and exact
        def forward(self, x):
            return torch.relu(x / 3.0)[:, :2]

    _, d = methods.get("deeplift", Scaled()).attribute(x, 1, return_convergence_delta=True)
    assert d.abs().max() < 1e-12


def test_other_nonlinear_functions_take_their_gradient_and_are_approximate():
    """Documented limitation: a reduction such as amax has no rule and is not refused;
    summation-to-delta then fails, which return_convergence_delta shows."""

    class AmaxHead(nn.Module):
        def forward(self, x):
            return torch.stack([x.amax(1), x.sum(1)], 1)

    g = torch.Generator().manual_seed(17)
    x = torch.randn(3, 4, generator=g, dtype=torch.float64)
    b = torch.randn(3, 4, generator=g, dtype=torch.float64)
    _, d = methods.get("deeplift", AmaxHead()).attribute(x, 0, baselines=b,
                                                         return_convergence_delta=True)
    assert d.abs().max() > 1e-3


def test_softmax_over_the_batch_is_refused():
    m = nn.Sequential(nn.Linear(3, 2), nn.Softmax(dim=0)).double()
    with pytest.raises(ValueError, match="over the batch dimension"):
        call("deeplift", m, torch.randn(2, 3, dtype=torch.float64), 0)


# ---------------------------------------------------------------------------------------------
# Counts, reuse, in-place, user rules
# ---------------------------------------------------------------------------------------------


def test_rule_call_counts_on_resnet18():
    """torchvision ResNet-18: one stem ReLU, two calls of each block's single ReLU module (8
    blocks), one max-pool: 17 + 1 rule calls."""
    model = resnet18_random_bn(0.1).eval()
    comp = deeplift_composite()
    mode = NonlinearityRules(comp)
    x = torch.randn(4, 3, 32, 32, requires_grad=True)
    with mode:
        model(x)
    assert mode.counts[comp.rule_for(F.relu)] == 17
    assert mode.counts[comp.rule_for(F.max_pool2d)] == 1
    assert mode.op_calls == {"F.relu": 17, "F.max_pool2d": 1} and mode.calls == 18
    # calls on tensors that do not depend on the input are not rule calls
    with NonlinearityRules(comp) as idle, torch.no_grad():
        model(x.detach())
    assert idle.calls == 0


class Reused(nn.Module):
    def __init__(self, shared: bool):
        super().__init__()
        torch.manual_seed(15)
        self.a, self.b, self.c = nn.Linear(5, 6), nn.Linear(6, 6), nn.Linear(6, 3)
        self.r1 = nn.ReLU(inplace=True)
        self.r2 = self.r1 if shared else nn.ReLU()

    def forward(self, x):
        h = self.r1(self.a(x))
        return self.c(self.r2(self.b(h)) + h)


@pytest.mark.parametrize("name", RULE_METHODS)
def test_reused_inplace_relu_equals_distinct_relus(name):
    x = torch.randn(4, 5, dtype=torch.float64)
    shared, distinct = Reused(True).double(), Reused(False).double()
    a, b = call(name, shared, x, 1), call(name, distinct, x, 1)
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert a.abs().max() > 0


def test_maxpool_1d_3d_and_adaptive_are_exact():
    torch.manual_seed(16)
    m1 = nn.Sequential(nn.Conv1d(2, 3, 3), nn.MaxPool1d(3, 2), nn.Flatten(), nn.LazyLinear(2))
    m3 = nn.Sequential(nn.Conv3d(1, 2, 3), nn.MaxPool3d(2), nn.AdaptiveMaxPool3d(1),
                       nn.Flatten(), nn.Linear(2, 2))
    m2 = nn.Sequential(nn.Conv2d(1, 2, 3), nn.AdaptiveMaxPool2d(2), nn.Flatten(),
                       nn.Linear(8, 2))
    for m, shape in ((m1, (3, 2, 11)), (m3, (3, 1, 7, 7, 7)), (m2, (3, 1, 9, 9))):
        x = torch.randn(*shape)
        m(x)
        m = m.double().eval()
        x = x.double()
        b = torch.randn_like(x)
        assert relative_delta(m, None, x, b, torch.tensor([0, 1, 0])) < 1e-10
        assert relative_delta(m, deeplift_composite().without("max_pool", "adaptive_max_pool"),
                              x, b, torch.tensor([0, 1, 0])) > 1e-6


class CountingGuided(Guided):
    """A stateful user rule: Guided Backprop that records the shape at each call of a pass
    and zeroes the backward signal at the ``k``-th call (a pruning-style mask)."""

    def __init__(self, k: int):
        self.k, self.shapes, self.passes = k, [], 0

    def begin(self) -> None:
        self.shapes, self.passes = [], self.passes + 1

    def apply(self, func, args, kwargs):
        self.shapes.append(tuple(args[0].shape))
        out = super().apply(func, args, kwargs)
        if len(self.shapes) == self.k:
            out = out - out.detach() + out.detach()  # same value ...
            out.register_hook(torch.zeros_like)  # ... no gradient through this call
        return out


def test_user_rule_with_state_selected_per_function():
    model = Reused(True).double()
    x = torch.randn(4, 5, dtype=torch.float64)
    rule = CountingGuided(k=2)
    gbp = methods.get("gbp", model, composite=Composite({"relu": rule}, needs="ReLU"))
    got = gbp.attribute(x, 1)
    got = gbp.attribute(x, 1)  # state is reset per pass
    assert rule.passes == 2 and rule.shapes == [(4, 6), (4, 6)]
    # zero gradient through the second ReLU call: only the skip path h -> c remains
    with torch.no_grad():
        h = model.a(x)
        expect = ((h > 0) * model.c.weight[1].clamp(min=0)) @ model.a.weight
    torch.testing.assert_close(got, expect)
    assert not torch.allclose(got, methods.get("gbp", model).attribute(x, 1))


def test_composite_api_errors_and_defaults():
    with pytest.raises(ValueError, match="unknown op 'relu7'"):
        Composite({"relu7": Guided()})
    with pytest.raises(TypeError, match="Rule objects"):
        Composite({"relu": "guided"})
    with pytest.raises(TypeError, match="needs a Composite"):
        NonlinearityRules("rescale")
    with pytest.raises(NotImplementedError):
        Rule().apply(F.relu, (torch.zeros(1),), {})
    comp = gbp_composite()
    assert isinstance(comp.rule_for(torch.relu_), Guided) and comp.rule_for(torch.sigmoid) is None
    assert comp.without("relu").rule_for(F.relu) is None and comp.rule_for(F.relu) is not None
    r = Rescale(1e-6)
    assert comp.updated({"hardswish": r}).rule_for(F.hardswish) is r
    with pytest.raises(ValueError, match=r"q is a percentile"):
        methods.get("rectgrad", nn.Linear(2, 2), q=-1).attribute(torch.randn(1, 2), 0)
