"""Paper 05's metrics against closed forms: the top-k / low-k area on a linear model, the
consistency similarities (SSIM, Pearson, PSNR) and the local Lipschitz estimate of maps with a
known Lipschitz constant."""

import math

import numpy as np
import pytest
import torch
from torch import nn

from attrlab import methods, metrics
from attrlab.methods.base import Attribution
from attrlab.metrics.robustness import ball_samples, map_similarity, minmax_maps

pytestmark = pytest.mark.usefixtures("one_thread")


class Linear(nn.Module):
    """Logits (w . x, 0) of a flattened input."""

    def __init__(self, w):
        super().__init__()
        self.w = nn.Parameter(torch.as_tensor(w, dtype=torch.float64).view(1, -1))

    def forward(self, x):
        z = x.flatten(1) @ self.w.t()
        return torch.cat([z, torch.zeros_like(z)], 1)


class Scaled(Attribution):
    """A map scale * x: the same pattern at every scale (not registered)."""

    name = "scaled_test_map"

    def __init__(self, model, scale=1.0):
        super().__init__(model)
        self.scale = scale

    def _attribute(self, inputs, target, **_):
        return self.scale * inputs


def test_topk_lowk_logit_area_on_a_linear_model():
    w = torch.tensor([1.0, -2.0, 3.0, 0.5], dtype=torch.float64)
    model = Linear(w)
    x = torch.tensor([[[[2.0, 1.0], [-1.0, 4.0]]], [[[0.5, -3.0], [1.0, 1.0]]]],
                     dtype=torch.float64)
    contrib = (w * x.flatten(1))  # removing pixel i (baseline 0) lowers the logit by this
    attributions = contrib.view_as(x)
    metric = metrics.get("topk_lowk_area", fractions=[0, 0.25, 0.5, 0.75, 1.0], output="logit")
    r = metric.compute(model, x, 0, attributions)
    fr = torch.tensor([0, 0.25, 0.5, 0.75, 1.0], dtype=torch.float64)
    for i in range(2):
        desc = contrib[i].sort(descending=True).values
        top = torch.cat([torch.zeros(1, dtype=torch.float64), desc.cumsum(0)])
        low = torch.cat([torch.zeros(1, dtype=torch.float64), desc.flip(0).cumsum(0)])
        torch.testing.assert_close(r.curve[1][i], top - low)
        torch.testing.assert_close(r.scores[i], torch.trapezoid(top - low, fr))
    # a reversed map gives the negated area
    rev = metric.compute(model, x, 0, -attributions)
    torch.testing.assert_close(rev.scores, -r.scores)


def test_topk_lowk_prob_and_kl_start_at_zero_and_reward_the_true_map():
    w = torch.tensor([1.0, -2.0, 3.0, 0.5], dtype=torch.float64)
    model = Linear(w)
    x = torch.randn(6, 1, 2, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    true = (w * x.flatten(1)).view_as(x)
    for output in ("prob", "kl"):
        metric = metrics.get("topk_lowk_area", fractions=[0, 0.25, 0.5, 0.75, 1.0],
                             output=output)
        top, low = metric.curves(model, x, torch.zeros(6, dtype=torch.long), true)
        assert torch.all(top[:, 0] == 0) and torch.all(low[:, 0] == 0)
        torch.testing.assert_close(top[:, -1], low[:, -1])  # everything removed either way
        if output == "kl":
            assert (top >= -1e-12).all() and (low >= -1e-12).all()
    prob = metrics.get("topk_lowk_area", fractions=[0, 0.25, 0.5, 0.75, 1.0])
    good = prob.evaluate(model, x, 0, true)
    bad = prob.evaluate(model, x, 0, -true)
    assert (good > 0).all() and (bad < 0).all()
    with pytest.raises(ValueError, match="output"):
        metrics.get("topk_lowk_area", output="mse")
    with pytest.raises(ValueError, match="gray value"):
        metrics.get("topk_lowk_area", baseline="blur")


def test_similarities_closed_form():
    a = np.linspace(0, 1, 64).reshape(1, 8, 8)
    torch.testing.assert_close(map_similarity(a, a + 0.1, "psnr"),
                               torch.tensor([20.0], dtype=torch.float64))
    torch.testing.assert_close(map_similarity(a, a, "psnr"),
                               torch.tensor([100.0], dtype=torch.float64))
    torch.testing.assert_close(map_similarity(a, 0.5 * a + 0.2, "pearson"),
                               torch.tensor([1.0], dtype=torch.float64))
    torch.testing.assert_close(map_similarity(a, 1 - a, "pearson"),
                               torch.tensor([-1.0], dtype=torch.float64))
    assert map_similarity(a, a, "ssim").item() == pytest.approx(1.0)
    assert map_similarity(a, 1 - a, "ssim").item() < 0
    m = minmax_maps(torch.tensor([[[[2.0, 4.0], [6.0, 10.0]]]]))
    np.testing.assert_allclose(m, [[[0.0, 0.25], [0.5, 1.0]]])
    assert (minmax_maps(torch.ones(1, 1, 2, 2)) == 0).all()


@pytest.mark.parametrize("kind, expected", [("ssim", 1.0), ("pearson", 1.0), ("psnr", 100.0)])
def test_consistency_is_perfect_for_maps_that_only_change_scale(kind, expected):
    model = Linear(torch.arange(16.0))
    x = torch.randn(3, 1, 4, 4, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    metric = metrics.get("consistency", similarity=kind,
                         variant=lambda method, size: Scaled(model, float(size)))
    base = Scaled(model)
    r = metric.compute(model, x, 0, base.attribute(x, 0), method=base)
    torch.testing.assert_close(r.scores, torch.full((3,), expected, dtype=torch.float64))


def test_consistency_uses_the_resolution_option_and_refuses_other_methods():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 3))
    x = torch.randn(2, 1, 8, 8, generator=torch.Generator().manual_seed(2))
    vp = methods.get("vp", model, max_steps=2, width=4, depth=2, topk_iters=10,
                     batch_size=4, progress=False)
    data = torch.randn(8, 1, 8, 8, generator=torch.Generator().manual_seed(3))
    for m in (1, 2, 4):
        vp.fit(data, upsample=m)
    metric = metrics.get("consistency", similarity="pearson")
    r = metric.compute(model, x, 0, vp.attribute(x, 0), method=vp)
    maps = {m: minmax_maps(vp.attribute(x, 0, upsample=m)) for m in (1, 2, 4)}
    expected = sum(map_similarity(maps[a], maps[b], "pearson")
                   for a, b in ((1, 2), (2, 4), (1, 4))) / 3
    torch.testing.assert_close(r.scores, expected.float())
    gxi = methods.get("gxi", model)
    with pytest.raises(ValueError, match="resolution_option"):
        metric.compute(model, x, 0, gxi.attribute(x, 0), method=gxi)


def test_ball_samples_lie_in_the_ball():
    x = torch.zeros(2, 3, 4, 4)
    pts = ball_samples(x, 500, 0.5, torch.Generator().manual_seed(0))
    norms = pts.flatten(1).norm(dim=1)
    assert pts.shape == (1000, 3, 4, 4) and (norms <= 0.5 + 1e-6).all() and (norms > 0).all()
    # uniform in the 48-dimensional ball: P(||d|| < r) = (r / R)^48
    frac = (norms < 0.5 * 0.98).double().mean().item()
    assert abs(frac - 0.98 ** 48) < 0.06


def test_stability_of_a_linear_map_is_its_lipschitz_constant():
    model = Linear([1.0, 2.0, 3.0, 4.0])
    x = torch.randn(3, 1, 2, 2, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    lin = Scaled(model, 2.5)
    metric = metrics.get("stability", n_samples=8, radius=0.3, normalise="none")
    r = metric.compute(model, x, 0, lin.attribute(x, 0), method=lin)
    torch.testing.assert_close(r.scores, torch.full((3,), 2.5, dtype=torch.float64))
    const = Scaled(model, 0.0)
    assert (metric.evaluate(model, x, 0, const.attribute(x, 0), method=const) == 0).all()
    # min-max normalised maps: invariant to the map's scale
    norm = metrics.get("stability", n_samples=8, radius=0.3)
    s1 = norm.evaluate(model, x, 0, lin.attribute(x, 0), method=lin)
    s2 = norm.evaluate(model, x, 0, lin.attribute(x, 0), method=Scaled(model, 7.0))
    torch.testing.assert_close(s1, s2)
    assert math.isfinite(s1.max().item())
