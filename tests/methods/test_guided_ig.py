"""Guided IG (Kapishnikov et al. 2021, Algorithm 1): the closed-form checks of
implementation-notes section 7, completeness, the band, batching and the reduction to IG.

Tolerances: the gradient of every move is taken at its old point (a left Riemann sum along the
adaptive path), so the notes' values are exact only for a linear f; for the quadratics they are
reached up to O(1/n_steps) (measured: 1.1e-3 relative at 1000 steps for 2 x1^2 + x2^2, 2e-3 for
the max_dist 1 / fraction 0.1 case), hence ``rtol = 3 / n_steps`` there. Where the discrete
value is known in closed form (the IG reductions) it is checked to 1e-12.
"""

import math

import numpy as np
import pytest
import torch
from torch import nn

from attrlab import methods
from attrlab.methods import GuidedIntegratedGradients

F64 = torch.float64


pytestmark = pytest.mark.usefixtures("one_thread")


class TwoFeature(nn.Module):
    """f(x1, x2) as a one-"class" model: (N, 2) -> (N, 1)."""

    def __init__(self, fn):
        super().__init__()
        self.fn = fn
        self.seen = []

    def forward(self, x):
        self.seen.append(x.detach().clone())
        return self.fn(x[:, 0], x[:, 1]).unsqueeze(1)


def linear(a, b):
    return 2 * a + b


def separable_quadratic(a, b):
    return 2 * a ** 2 + b ** 2


def square_of_linear(a, b):
    return (2 * a + b) ** 2


def tiny_cnn(seed=0, dtype=F64):
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 4 * 4, 3))
    return model.to(dtype).eval()


def gig(model, x, target=0, **options):
    call = {k: options.pop(k) for k in ("baselines", "return_convergence_delta") if k in options}
    return methods.get("guided_ig", model, **options).attribute(x, target, **call)


def pt(*values):
    return torch.tensor([values], dtype=F64)


# -- implementation-notes section 7 ------------------------------------------------------------

def test_linear_nonzero_baseline_and_zero_baseline():
    m = TwoFeature(linear)
    a = gig(m, pt(10, 5), n_steps=10, baselines=pt(-1, -3))
    torch.testing.assert_close(a, pt(22, 8), rtol=0, atol=1e-9)
    torch.testing.assert_close(gig(m, pt(10, 5), n_steps=10), pt(20, 5), rtol=0, atol=1e-9)


def test_separable_quadratic_1000_steps():
    a = gig(TwoFeature(separable_quadratic), pt(3, 3), n_steps=1000)
    torch.testing.assert_close(a, pt(18, 9), rtol=3 / 1000, atol=0)


@pytest.mark.parametrize("options", [{"max_dist": 0.0}, {"fraction": 1.0}])
def test_square_of_linear_reduces_to_ig(options):
    n = 1000
    a = gig(TwoFeature(square_of_linear), pt(3, 3), n_steps=n, **options)
    torch.testing.assert_close(a, pt(54, 27), rtol=3 / n, atol=0)
    # Exact discrete value: left Riemann sum of 2 * 81 a over a = k/n, k < n: 81 (n - 1) / n,
    # split 2:1 -> (54, 27) * (n - 1) / n.
    torch.testing.assert_close(a, pt(54, 27) * (n - 1) / n, rtol=1e-12, atol=0)


def test_square_of_linear_guided_path_moves_x2_first():
    n = 1000
    m = TwoFeature(square_of_linear)
    a = gig(m, pt(3, 3), n_steps=n, max_dist=1.0, fraction=0.1)
    torch.testing.assert_close(a, pt(72, 9), rtol=3 / n, atol=0)
    # IG would give (54, 27): the path really is a different one (x2 all the way first).
    halfway = m.seen[n // 2 + 5][0]
    assert halfway[1] == 3.0 and halfway[0] < 0.1


# -- axioms and semantics ----------------------------------------------------------------------

def test_completeness_exact_where_the_relu_cnn_is_linear_on_the_box():
    """Every feature moves monotonically from x'_i to x_i, so the path stays in the box spanned
    by x' and x. With non-negative weights, a positive bias and non-negative x, x' every ReLU is
    active on the whole box: f is linear there and completeness holds to rounding, whatever the
    (guided) path."""
    model = tiny_cnn()
    with torch.no_grad():
        for p in model.parameters():
            p.abs_()
    torch.manual_seed(1)
    x = torch.rand(3, 1, 6, 6, dtype=F64)
    base = 0.5 * torch.rand(3, 1, 6, 6, dtype=F64)
    t = torch.tensor([0, 1, 2])
    with torch.no_grad():
        gap = (model(x) - model(base))[torch.arange(3), t]
    seen = []
    hook = model[0].register_forward_pre_hook(lambda m, args: seen.append(args[0].detach()))
    try:
        attr, delta = gig(model, x, t, n_steps=50, baselines=base, return_convergence_delta=True)
    finally:
        hook.remove()
    assert attr.shape == x.shape and attr.dtype == F64
    torch.testing.assert_close(attr.flatten(1).sum(1), gap, rtol=1e-9, atol=0)
    assert (delta.abs() <= 1e-9 * gap.abs()).all()
    # the path was a guided one, not IG's straight line (point k of IG: x' + k/50 (x - x'))
    straight = base + 0.5 * (x - base)
    assert (seen[25] - straight).abs().max() > 1e-3


def test_completeness_on_a_generic_relu_cnn_and_convergence_delta():
    """On a generic ReLU net the left-Riemann sum errs at every move that crosses a ReLU
    boundary, and the guided path tends to run along such boundaries (it moves the features
    whose gradient is small, i.e. whose units are off, until they switch on), so the error does
    not shrink like 1/n_steps: measured on this net 0.7-3 % (relative to f(x) - f(x')) at 50
    to 4000 steps (plain IG, riemann_left: 0.06-0.8 % at 1000 steps). 1e-6 is not attainable;
    the check is the delta identity (to 1e-12) and a few-percent bound."""
    model = tiny_cnn()
    torch.manual_seed(1)
    x = torch.randn(3, 1, 6, 6, dtype=F64)
    base = 0.1 * torch.randn(3, 1, 6, 6, dtype=F64)
    t = torch.tensor([0, 1, 2])
    with torch.no_grad():
        gap = (model(x) - model(base))[torch.arange(3), t]
    attr, delta = gig(model, x, t, n_steps=200, baselines=base, return_convergence_delta=True)
    torch.testing.assert_close(delta, attr.flatten(1).sum(1) - gap, rtol=0, atol=1e-12)
    assert (delta.abs() < 0.1 * gap.abs()).all(), delta / gap


def test_path_stays_in_band_and_meets_the_l1_schedule():
    """Every gradient point x_k (k = 0 .. n-1) has L1 distance (1 - k/n) * total to the input and
    each feature's straight-line coordinate within [k/n - max_dist, k/n + max_dist]."""
    torch.manual_seed(2)
    w = torch.randn(6, 1, dtype=F64)
    seen = []

    class Net(nn.Module):
        def forward(self, x):
            seen.append(x.detach().clone())
            return torch.tanh(x * torch.arange(1, 7, dtype=F64)) @ w

    x = torch.randn(2, 6, dtype=F64)
    base = torch.randn(2, 6, dtype=F64)
    base[0, 3] = x[0, 3]  # a feature already at its input
    n, max_dist = 40, 0.05
    gig(Net(), x, 0, n_steps=n, max_dist=max_dist, fraction=0.25, baselines=base)
    assert len(seen) == n  # one batched pass per step
    pts = torch.stack(seen)  # (n, N, D)
    k = torch.arange(n, dtype=F64).view(n, 1)
    l1 = (x - pts).abs().sum(2)
    torch.testing.assert_close(l1, (1 - k / n) * (x - base).abs().sum(1), rtol=1e-9, atol=1e-9)
    diff = x - base
    ok = diff != 0
    coord = ((pts - base) / torch.where(ok, diff, 1.0))[:, ok]
    kk = k.expand(n, int(ok.sum()))
    assert (coord >= (kk / n - max_dist).clamp(min=0) - 1e-9).all()
    assert (coord <= (kk / n + max_dist).clamp(max=1) + 1e-9).all()
    assert (pts[:, 0, 3] == x[0, 3]).all()
    # not the straight line: some feature is off its straight-line coordinate somewhere
    assert ((coord - kk / n).abs() > 1e-3).any()


@pytest.mark.parametrize("options", [{"fraction": 1.0}, {"max_dist": 0.0}])
def test_reduces_to_ig_riemann_left(options):
    model = tiny_cnn()
    torch.manual_seed(3)
    x = torch.randn(3, 1, 6, 6, dtype=F64)
    base = 0.2 * torch.randn(1, 1, 6, 6, dtype=F64)  # broadcasting baseline
    t = torch.tensor([2, 0, 1])
    a = gig(model, x, t, n_steps=30, baselines=base, **options)
    ig = methods.get("ig", model, n_steps=30, method="riemann_left").attribute(
        x, t, baselines=base)
    torch.testing.assert_close(a, ig, rtol=1e-10, atol=1e-12)
    # ...and the default (guided) path is a different one on this net
    guided = gig(model, x, t, n_steps=30, baselines=base)
    assert (guided - ig).abs().max() > 1e-3


def slow_reference(grad_fn, x1, x0, n_steps, fraction, max_dist):
    """Algorithm 1 for one sample, literally, in NumPy (loops and all)."""
    x1, x0 = np.asarray(x1, np.float64), np.asarray(x0, np.float64)
    diff = x1 - x0
    total = np.abs(diff).sum()
    x, attr = x0.copy(), np.zeros_like(x1)
    for step in range(n_steps):
        g = grad_fn(x)
        alpha = (step + 1) / n_steps
        lo, hi = max(alpha - max_dist, 0.0), min(alpha + max_dist, 1.0)
        target = total * (1 - alpha)
        while True:
            x_old = x.copy()
            for i in range(len(x)):
                if diff[i] != 0 and (x[i] - x0[i]) / diff[i] < lo:
                    x[i] = x0[i] + lo * diff[i]
            cur = np.abs(x1 - x).sum()
            if cur <= target + 1e-9 * total:
                attr += (x - x_old) * g
                break
            edge = x1 if hi == 1.0 else x0 + hi * diff
            can = (edge - x) * diff > 0  # not yet at the band's upper edge
            score = np.where(can, np.abs(g), np.inf)
            thr = np.quantile(score, fraction, method="lower")
            sel = can & (score <= thr)
            room = np.abs(edge - x)[sel].sum()
            gamma = (cur - target) / room
            if gamma > 1:
                x[sel] = edge[sel]
                attr += (x - x_old) * g
            else:
                x[sel] = x[sel] + gamma * (edge[sel] - x[sel])
                attr += (x - x_old) * g
                break
    return attr


def test_batched_equals_one_sample_at_a_time_and_slow_reference():
    model = tiny_cnn(seed=4)
    torch.manual_seed(5)
    x = torch.randn(4, 1, 6, 6, dtype=F64)
    base = torch.zeros_like(x)
    base[1] = 0.3 * torch.randn(1, 6, 6, dtype=F64)
    base[2, 0, :2] = x[2, 0, :2]  # some features already at the input
    x[3] = 0.0  # input == baseline: zero attribution
    t = torch.tensor([1, 2, 0, 1])
    opts = {"n_steps": 25, "fraction": 0.2, "max_dist": 0.1}
    batched = gig(model, x, t, baselines=base, **opts)
    for i in range(4):
        single = gig(model, x[i:i + 1], t[i:i + 1], baselines=base[i:i + 1], **opts)
        torch.testing.assert_close(batched[i:i + 1], single, rtol=1e-12, atol=1e-13)

        def grad_fn(v, i=i):
            xi = torch.tensor(v, dtype=F64).view(1, 1, 6, 6).requires_grad_(True)
            (g,) = torch.autograd.grad(model(xi)[0, t[i]], xi)
            return g.flatten().numpy()

        ref = slow_reference(grad_fn, x[i].flatten().numpy(), base[i].flatten().numpy(), **opts)
        np.testing.assert_allclose(batched[i].flatten().numpy(), ref, rtol=1e-9, atol=1e-12)
    assert (batched[3] == 0).all()


def test_float32_model_gives_float32_maps_matching_float64():
    model = tiny_cnn(dtype=torch.float32)
    torch.manual_seed(6)
    x = torch.randn(2, 1, 6, 6)
    a, delta = gig(model, x, 1, n_steps=20, return_convergence_delta=True)
    assert a.dtype == torch.float32 and delta.dtype == torch.float32 and a.shape == x.shape
    a64 = gig(model.double(), x.double(), 1, n_steps=20)
    torch.testing.assert_close(a.double(), a64, rtol=1e-4, atol=1e-5)


def test_registry_and_options():
    m = TwoFeature(linear)
    method = methods.get("guided_ig", m)
    assert isinstance(method, GuidedIntegratedGradients)
    assert (method.n_steps, method.fraction, method.max_dist) == (200, 0.25, 0.02)
    # per-call overrides, validated too
    torch.testing.assert_close(method.attribute(pt(1, 1), 0, n_steps=3), pt(2, 1))
    with pytest.raises(ValueError, match="fraction"):
        method.attribute(pt(1, 1), 0, fraction=0.0)


@pytest.mark.parametrize("bad", [
    {"fraction": 0.0}, {"fraction": -0.5}, {"fraction": 1.5}, {"fraction": math.nan},
    {"max_dist": -0.01}, {"max_dist": math.inf},
    {"n_steps": 0}, {"n_steps": -3}, {"n_steps": 2.5}, {"n_steps": True},
])
def test_invalid_options_raise_value_error(bad):
    name = next(iter(bad))
    with pytest.raises(ValueError, match=name):
        methods.get("guided_ig", TwoFeature(linear), **bad)
