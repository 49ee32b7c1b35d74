"""IBA and the bottleneck machinery (attrlab.core.bottleneck): closed forms on tiny layers,
zero capacity where lambda is 0, batch == one-by-one under shared noise, fit/state_dict
round trip, the model restored."""

import io
import math

import pytest
import torch
from torch import nn
from torch.distributions import Normal, kl_divergence

from attrlab import methods
from attrlab.core import bottleneck as bn
from attrlab.methods.information.iba import feature_bottleneck

pytestmark = pytest.mark.usefixtures("one_thread")
D = torch.float64


class Tiny(nn.Module):
    """conv (the bottleneck layer, 2 channels, 6 x 6) -> ReLU -> linear: 3 classes."""

    def __init__(self):
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.conv = nn.Conv2d(1, 2, 3, padding=1)
        self.relu = nn.ReLU(inplace=True)
        self.fc = nn.Linear(2 * 6 * 6, 3)
        with torch.no_grad():
            for p in self.parameters():
                p.copy_(torch.randn(p.shape, generator=g))

    def forward(self, x):
        r = self.conv(x)
        return self.fc(self.relu(r).flatten(1))


def data(n=40, seed=3):
    return torch.randn(n, 1, 6, 6, generator=torch.Generator().manual_seed(seed), dtype=D)


def test_kl_terms_are_the_gaussian_kls():
    g = torch.Generator().manual_seed(0)
    r = torch.randn(50, generator=g, dtype=D) * 2
    lam = torch.rand(50, generator=g, dtype=D) * 0.98 + 0.01
    lam_g = torch.rand(50, generator=g, dtype=D)
    # IBA: KL[N(lambda r, (1-lambda)^2) || N(0, 1)] in normalised units
    ref = kl_divergence(Normal(lam * r, 1 - lam), Normal(torch.zeros_like(r), torch.ones_like(r)))
    torch.testing.assert_close(bn.iba_kl(r, lam), ref)
    # Proposition 3, from Remarks 1-2 in the input's own units (mu_I, sigma_I)
    mu, sigma = 0.3, 1.7
    x = mu + sigma * r
    post = Normal(lam * x + (1 - lam) * mu, (1 - lam) * sigma)
    prior = Normal(lam_g * lam * x + (1 - lam_g * lam) * mu, (1 - lam_g * lam) * sigma)
    torch.testing.assert_close(bn.prior_kl((x - mu) / sigma, lam, lam_g), kl_divergence(post, prior))
    # the printed formula of Proposition 3
    L, m, xn = lam, lam_g, (x - mu) / sigma
    printed = (torch.log((1 - m * L) / (1 - L)) + (1 - L) ** 2 / (2 * (1 - m * L) ** 2)
               + xn ** 2 * (L - m * L) ** 2 / (2 * (1 - m * L) ** 2) - 0.5)
    torch.testing.assert_close(bn.prior_kl(xn, lam, lam_g), printed)
    torch.testing.assert_close(bn.prior_kl(r, lam, torch.zeros_like(lam)), bn.iba_kl(r, lam))


def test_statistics_stream_equals_the_whole_batch():
    model = Tiny().double()
    x = data(37)
    stats = bn.estimate_layer_statistics(model, model.conv, iter(x.split(8)))
    with torch.no_grad():
        r = model.conv(x)
    assert stats.n == 37
    torch.testing.assert_close(stats.mean, r.mean(0))
    torch.testing.assert_close(stats.std(), r.std(0))
    torch.testing.assert_close(stats.std(0.5), r.std(0).clamp_min(0.5))
    relu = torch.relu(r)
    torch.testing.assert_close(stats.nonzero, (r != 0).sum(0).double())
    s2 = bn.LayerStatistics()
    s2.update(relu[:20])
    s2.update(relu[20:])
    assert torch.equal(s2.active(0.3), (relu != 0).double().mean(0) > 0.3)


def test_smoothing_kernel_and_constant_maps():
    assert bn.gaussian_kernel_size(1.0) == 5
    lam = torch.full((2, 3, 6, 6), 0.7, dtype=D)
    torch.testing.assert_close(bn.gaussian_smooth(lam, 1.0), lam)
    spike = torch.zeros(1, 1, 9, 9, dtype=D)
    spike[0, 0, 4, 4] = 1
    out = bn.gaussian_smooth(spike, 1.0)
    assert out.sum().item() == pytest.approx(1.0)
    g = torch.exp(-torch.arange(-2, 3, dtype=D) ** 2 / 2)
    torch.testing.assert_close(out[0, 0, 2:7, 2:7], torch.outer(g, g) / g.sum() ** 2)
    with pytest.raises(ValueError, match="sigma=0"):
        bn.gaussian_smooth(torch.zeros(1, 1, 2, 2), 1.0)


def test_capacity_map_keeps_the_total_in_bits():
    cap = torch.rand(2, 4, 3, 3, generator=torch.Generator().manual_seed(0), dtype=D)
    m = bn.capacity_map(cap, (12, 12))
    assert m.shape == (2, 1, 12, 12)
    torch.testing.assert_close(m.flatten(1).sum(1), cap.flatten(1).sum(1) / math.log(2))


def fitted(model, **kw):
    return methods.get("iba", model, layer="conv", **kw).fit(data())


def test_one_step_capacity_is_the_closed_form_at_alpha_init():
    """With one step the buffered capacity is that of alpha_init: KL of lambda =
    smooth(sigmoid(alpha_init)) = sigmoid(alpha_init) (constant map) at the layer's R."""
    model = Tiny().double()
    iba = fitted(model, steps=1, copies=3)
    x = data(2, seed=8)
    cap = iba.layer_attribute(x, target=[0, 2])
    stats = iba.statistics
    with torch.no_grad():
        r = model.conv(x)
    lam = torch.sigmoid(torch.tensor(5.0, dtype=D))
    expected = bn.iba_kl((r - stats.mean) / stats.std(0.01), lam) * stats.active(0.01)
    torch.testing.assert_close(cap, expected)
    out = iba.attribute(x, target=[0, 2], steps=1, copies=3)
    torch.testing.assert_close(out[:, :1], bn.capacity_map(expected, (6, 6)))


def test_capacity_is_zero_where_lambda_is_zero_and_at_inactive_elements():
    model = Tiny().double()
    iba = fitted(model, steps=1)
    out = iba.attribute(data(2, seed=8), target=0, alpha_init=-1e4)
    assert torch.equal(out, torch.zeros_like(out))
    # an element that is never non-zero is inactive: its capacity is zero
    iba.statistics.nonzero[1] = 0
    cap = iba.layer_attribute(data(2, seed=8), target=0, steps=3)
    assert torch.equal(cap[:, 1], torch.zeros_like(cap[:, 1])) and (cap[:, 0] > 0).all()


def test_optimisation_lowers_the_loss_with_a_large_beta():
    model = Tiny().double()
    iba = fitted(model)
    x = data(2, seed=8)
    first = iba.layer_attribute(x, target=[0, 1], steps=1, beta=100.0).flatten(1).mean(1)
    later = iba.layer_attribute(x, target=[0, 1], steps=10, beta=100.0).flatten(1).mean(1)
    assert (later < 0.5 * first).all()


def test_batch_equals_one_by_one_under_the_same_noise():
    model = Tiny().double()
    iba = fitted(model)
    x, t = data(3, seed=8), torch.tensor([2, 0, 1])
    steps, copies = 4, 3
    bank = torch.randn(3, steps, copies, 2, 6, 6, generator=torch.Generator().manual_seed(5),
                       dtype=D)
    opts = {"beta": 10.0, "steps": steps, "lr": 1.0, "copies": copies, "alpha_init": 5.0, "sigma": 1.0,
                "min_std": 0.01, "active_threshold": 0.01}

    def run(sl):
        with iba.guard():
            return feature_bottleneck(iba, iba.layer, iba.statistics, x[sl], t[sl], (),
                                      noise=lambda k: bank[sl, k].flatten(0, 1), **opts)

    alpha, cap = run(slice(0, 3))
    for i in range(3):
        a_i, c_i = run(slice(i, i + 1))
        torch.testing.assert_close(alpha[i:i + 1], a_i, rtol=1e-9, atol=1e-12)
        torch.testing.assert_close(cap[i:i + 1], c_i, rtol=1e-9, atol=1e-12)


def test_fit_state_dict_round_trip():
    model = Tiny().double()
    iba = fitted(model, steps=2)
    buf = io.BytesIO()
    torch.save(iba.state_dict(), buf)
    buf.seek(0)
    other = methods.get("iba", model, layer="conv", steps=2)
    assert not other.fitted
    with pytest.raises(ValueError, match="fitted first"):
        other.attribute(data(1), target=0)
    other.load_state_dict(torch.load(buf, weights_only=True))
    x = data(2, seed=8)
    a = iba.attribute(x, target=1, generator=torch.Generator().manual_seed(1))
    b = other.attribute(x, target=1, generator=torch.Generator().manual_seed(1))
    assert torch.equal(a, b)
    with pytest.raises(ValueError, match="keys"):
        other.load_state_dict({"mean": torch.zeros(1)})


def test_fit_draws_from_a_data_set_and_refuses_mismatched_shapes():
    model = Tiny().double()
    items = [(x, 0) for x in data(10)]
    a = methods.get("iba", model, layer="conv", estimation_samples=6).fit(items)
    assert a.statistics.n == 6
    bad = methods.get("iba", model, layer="conv").fit(data(4)[:, :, :5, :5])
    with pytest.raises(ValueError, match="fitted on"):
        bad.attribute(data(1), target=0)


class Exploding(Tiny):
    def __init__(self):
        super().__init__()
        self.calls = 0

    def forward(self, x):
        self.calls += 1
        if self.calls == 3:
            raise RuntimeError("boom")
        return super().forward(x)


def test_model_restored_after_an_error_inside_the_optimisation():
    model = Exploding().double().train()
    iba = methods.get("iba", model, layer="conv").fit(data())
    with pytest.raises(RuntimeError, match="boom"):
        iba.attribute(data(2), target=0)
    assert model.training and all(p.requires_grad for p in model.parameters())
    assert all(not m._forward_hooks for m in model.modules())


@pytest.mark.parametrize("name, opts", [("iba", {"steps": 3}),
                                        ("input_iba", {"feature_steps": 2, "steps": 2,
                                                       "copies": 2, "gan_epochs": 1,
                                                       "gan_samples": 6, "gan_batch_size": 3})])
def test_internal_batch_size_runs_the_images_in_turn(name, opts):
    """Chunks of one image draw from the generator in turn: the same as one call per image
    with that generator."""
    model = Tiny().double()
    m = methods.get(name, model, layer="conv", **opts).fit(data())
    x, t = data(3, seed=8), torch.tensor([2, 0, 1])
    chunked = m.attribute(x, target=t, internal_batch_size=1,
                          generator=torch.Generator().manual_seed(2))
    g = torch.Generator().manual_seed(2)
    single = torch.cat([m.attribute(x[i:i + 1], target=t[i:i + 1], generator=g)
                        for i in range(3)])
    assert torch.equal(chunked, single)
