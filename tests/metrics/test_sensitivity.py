"""Sensitivity-N.

* Linear model f_0 = w . x with a zero baseline: the logit drop after removing S is exactly
  sum_{i in S} w_i x_i, so the exact map w*x scores 1, its negation -1, random maps much less.
* The random subsets: sizes, determinism, shared by all samples, patch grid.
* Zero-variance cases score 0 (documented).
* batch_size and batch composition do not change the scores.
* Agreement with Quantus 0.6.0 SensitivityN in the setting where the definitions coincide
  (see attrlab.metrics.faithfulness.sensitivity_n's docstring: copies of the sample whose attributions
  are shifted by a constant on S make Quantus remove exactly S).
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
import zoo_helpers
from torch import nn

from attrlab import metrics
from attrlab.metrics.faithfulness.sensitivity_n import SensitivityN, pearson

pytestmark = pytest.mark.usefixtures("one_thread")


def linear_model(w: torch.Tensor) -> nn.Module:
    model = nn.Sequential(nn.Flatten(), nn.Linear(w.numel(), 2, bias=False))
    with torch.no_grad():
        model[1].weight[0] = w.flatten()
        model[1].weight[1] = torch.randn(w.numel(), generator=torch.Generator().manual_seed(9))
    return model.eval()


def small_cnn(channels: int = 1, size: int = 8, classes: int = 3) -> nn.Module:
    return zoo_helpers.small_cnn(channels, size, classes)


@pytest.fixture
def linear_case():
    g = torch.Generator().manual_seed(0)
    w = torch.randn(1, 4, 4, generator=g)
    x = torch.rand(6, 1, 4, 4, generator=g) + 0.1
    return linear_model(w), x, torch.zeros(6, dtype=torch.long), w * x, \
        torch.randn(6, 1, 4, 4, generator=g)


@pytest.mark.parametrize("fraction,grid", [(0.1, None), (0.25, None), (0.5, None),
                                           (0.9, None), (0.1, 2), (0.5, 2)])
def test_linear_model_exact_map_scores_one(linear_case, fraction, grid):
    model, x, t, perfect, rnd = linear_case
    m = metrics.get("sensitivity_n", fraction=fraction, n_subsets=40, grid=grid)
    if grid == 2 and fraction == 0.1:  # round(0.1 * 4) = 0 -> at least one patch
        assert m.subset_size(4) == 1
    torch.testing.assert_close(m.evaluate(model, x, t, perfect), torch.ones(6),
                               rtol=0, atol=1e-5)
    torch.testing.assert_close(m.evaluate(model, x, t, -perfect), -torch.ones(6),
                               rtol=0, atol=1e-5)
    # the points themselves: drop == attribution sum, exactly up to float32 rounding
    sums, drops = m.pairs(model, x, t, perfect)
    assert sums.shape == drops.shape == (6, 40) and sums.dtype == torch.float64
    torch.testing.assert_close(drops.double(), sums, rtol=0, atol=1e-5)


def test_linear_model_random_map_scores_much_lower(linear_case):
    model, x, t, perfect, rnd = linear_case
    m = metrics.get("sensitivity_n", fraction=0.25)
    s = m.evaluate(model, x, t, rnd)
    assert (s < 0.9).all() and s.abs().mean() < 0.5
    assert m.higher_is_better is True and m.fast is False
    # softmax output: p_0 = sigmoid((w_0 - w_1) . x) is monotone in the logit difference,
    # so the map (w_0 - w_1) * x correlates strongly but not exactly (sigmoid is nonlinear)
    w = model[1].weight
    diff = (w[0] - w[1]).view(1, 1, 4, 4) * x
    p = metrics.get("sensitivity_n", fraction=0.25, output="prob").evaluate(model, x, t, diff)
    assert (p > 0.8).all() and (p < 1 - 1e-4).all()


def test_drops_are_target_outputs_without_subset():
    # hand check of one pair on a 1x2x2 image: subset {x0, x3} removed to the 0.5 baseline
    model = linear_model(torch.tensor([1.0, 2.0, 3.0, 4.0]))
    x = torch.tensor([[[[1.0, 1.0], [1.0, 1.0]]]])
    a = torch.tensor([[[[0.1, 0.2], [0.3, 0.4]]]])
    m = SensitivityN(fraction=0.5, n_subsets=5, baseline=0.5)
    masks = m.subset_masks(4)
    sums, drops = m.pairs(model, x, 0, a)
    for s in range(5):
        chosen = masks[s].nonzero().flatten().tolist()
        assert len(chosen) == 2
        assert sums[0, s].item() == pytest.approx(sum([0.1, 0.2, 0.3, 0.4][i] for i in chosen))
        # f drops by w_i * (1 - 0.5) for each removed i
        assert drops[0, s].item() == pytest.approx(sum(0.5 * (i + 1) for i in chosen))


def test_subset_masks():
    m = SensitivityN(fraction=0.3, n_subsets=50, seed=3)
    masks = m.subset_masks(20)
    assert masks.shape == (50, 20) and masks.dtype == torch.bool
    assert (masks.sum(1) == 6).all()  # round(0.3 * 20)
    assert torch.equal(masks, SensitivityN(fraction=0.3, n_subsets=50, seed=3).subset_masks(20))
    assert not torch.equal(masks, SensitivityN(fraction=0.3, n_subsets=50, seed=4)
                           .subset_masks(20))
    assert len({tuple(r.tolist()) for r in masks}) > 40  # not the same subset over and over
    # every feature is drawn about equally often (uniform): 50 * 6 / 20 = 15 each
    counts = SensitivityN(fraction=0.3, n_subsets=2000).subset_masks(20).sum(0).double()
    assert (counts - 600).abs().max() < 100
    assert SensitivityN(fraction=1.0).subset_size(7) == 7
    assert SensitivityN(fraction=0.01).subset_size(7) == 1


def test_patch_masks_cover_whole_patches():
    m = SensitivityN(fraction=0.25, n_subsets=10, grid=4)
    x = torch.rand(1, 2, 8, 8)
    lay = m.feature_layout(x)
    assert lay.n_features == 16
    pix = lay.expand(m.subset_masks(16)).reshape(10, 8, 8)
    assert (pix.sum((1, 2)) == 4 * 4).all()  # 4 patches of 2x2
    blocks = pix.view(10, 4, 2, 4, 2)
    assert (blocks.all((2, 4)) == blocks.any((2, 4))).all()  # patches all-or-nothing


def test_zero_variance_scores_zero(linear_case):
    model, x, t, perfect, rnd = linear_case
    m = metrics.get("sensitivity_n", fraction=0.25, n_subsets=20)
    zero = torch.zeros_like(x)
    assert torch.equal(m.evaluate(model, x, t, zero), torch.zeros(6))
    uniform = torch.full_like(x, 0.3)  # every subset sums to 4 * 0.3
    assert torch.equal(m.evaluate(model, x, t, uniform), torch.zeros(6))
    # fraction 1: every subset is everything; on a 2x2 grid round(0.9 * 4) = 4 patches too
    all_in = metrics.get("sensitivity_n", fraction=1.0, n_subsets=5)
    assert torch.equal(all_in.evaluate(model, x, t, perfect), torch.zeros(6))
    all_patches = metrics.get("sensitivity_n", fraction=0.9, n_subsets=5, grid=2)
    assert torch.equal(all_patches.evaluate(model, x, t, perfect), torch.zeros(6))
    # a model that ignores its input: drops are all 0
    const = nn.Sequential(nn.Flatten(), nn.Linear(16, 2))
    with torch.no_grad():
        const[1].weight.zero_()
    assert torch.equal(m.evaluate(const, x, t, rnd), torch.zeros(6))
    # drops that differ only by float32 rounding (a few ulps of the output 1.0) count as
    # constant: f_0 = 1 + 3e-8 * sum(x) moves by at most 16 * 3e-8 ~ 4 ulps
    tiny = nn.Sequential(nn.Flatten(), nn.Linear(16, 2))
    with torch.no_grad():
        tiny[1].weight.fill_(3e-8)
        tiny[1].bias.fill_(1.0)
    m_tiny = metrics.get("sensitivity_n", fraction=0.5, n_subsets=20)
    sums, drops = m_tiny.pairs(tiny, x, t, x)
    assert (pearson(sums, drops).abs() > 0.3).any()  # the raw r of rounding noise
    assert torch.equal(m_tiny.evaluate(tiny, x, t, x), torch.zeros(6))
    # the helper itself
    a = torch.tensor([[1.0, 2.0, 3.0], [1.0, 1.0, 1.0]])
    b = torch.tensor([[2.0, 4.0, 7.0], [0.0, 5.0, 1.0]])
    r = pearson(a, b)
    assert r[0].item() == pytest.approx(np.corrcoef([1, 2, 3], [2, 4, 7])[0, 1], abs=1e-12)
    assert r[1].item() == 0.0


def test_pearson_matches_scipy():
    from scipy import stats
    g = torch.Generator().manual_seed(1)
    a, b = torch.randn(4, 30, generator=g), torch.randn(4, 30, generator=g)
    b = b + 0.5 * a
    ours = pearson(a, b)
    for i in range(4):
        ref = stats.pearsonr(a[i].double().numpy(), b[i].double().numpy())[0]
        assert ours[i].item() == pytest.approx(ref, abs=1e-12)


def test_batching_and_batch_composition_do_not_change_scores():
    model = small_cnn(3, 8).double()
    g = torch.Generator().manual_seed(2)
    x = torch.rand(3, 3, 8, 8, generator=g, dtype=torch.float64)
    a = torch.randn(3, 3, 8, 8, generator=g, dtype=torch.float64)
    t = torch.tensor([0, 2, 1])
    kw = dict(fraction=0.3, n_subsets=20, grid=4)
    big = metrics.get("sensitivity_n", batch_size=4096, **kw).evaluate(model, x, t, a)
    tight = dict(rtol=1e-12, atol=1e-12)
    for bs in (1, 7):
        torch.testing.assert_close(
            metrics.get("sensitivity_n", batch_size=bs, **kw).evaluate(model, x, t, a), big,
            **tight)
    for i in range(3):
        torch.testing.assert_close(metrics.get("sensitivity_n", **kw).evaluate(
            model, x[i:i + 1], t[i:i + 1], a[i:i + 1]), big[i:i + 1], **tight)
    # repeated evaluation is deterministic
    assert torch.equal(metrics.get("sensitivity_n", **kw).evaluate(model, x, t, a), big)


@pytest.fixture(scope="module")
def quantus():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return pytest.importorskip("quantus")


@pytest.mark.parametrize("grid,channels,per_channel,fraction", [
    (None, 1, False, 0.25), (4, 1, False, 0.25), (None, 3, True, 1 / 6)])
def test_agrees_with_quantus_sensitivity_n(quantus, grid, channels, per_channel, fraction):
    # Quantus SensitivityN removes the top features_in_step entries of the flattened
    # (C, H, W) attribution and correlates across the *batch*. Give it the n_subsets copies
    # of one sample with attributions phi + C * 1_{S_s}: its first step removes exactly S_s,
    # its attribution sum is ours + n * C (Pearson ignores the shift), and
    # n_max_percentage = |S| / (H * W) keeps only that first step. (Quantus counts H * W
    # features, not C * H * W, both there and in its assert that features_in_step divides
    # H * W: hence 32 of the 3 * 64 entries with 3 channels, and no 3-channel patch case.)
    model = small_cnn(channels, 8)
    g = torch.Generator().manual_seed(5)
    x = torch.rand(2, channels, 8, 8, generator=g)
    a = torch.randn(2, channels, 8, 8, generator=g)
    y = torch.tensor([0, 2])
    m = metrics.get("sensitivity_n", fraction=fraction, n_subsets=12, grid=grid,
                    per_channel=per_channel)
    ours = m.evaluate(model, x, y, a)
    lay = m.feature_layout(x)
    pix = lay.expand(m.subset_masks(lay.n_features))  # (S, 1 or C, 64)
    pix = pix.expand(-1, channels, -1).reshape(-1, channels, 8, 8).double()
    size = int(pix[0].sum())  # removed entries per subset
    theirs = []
    for i in range(2):
        sn = quantus.SensitivityN(features_in_step=size, n_max_percentage=size / 64,
                                  perturb_baseline=0.0, abs=False, normalise=False,
                                  return_aggregate=False, disable_warnings=True)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            r = sn(model=model, x_batch=x[i:i + 1].expand(12, -1, -1, -1).numpy().copy(),
                   y_batch=np.full(12, int(y[i])), a_batch=(a[i:i + 1].double() + 1e3 * pix)
                   .numpy(), device="cpu", softmax=False, channel_first=True, batch_size=12)
        assert len(r) == 1
        theirs.append(float(r[0]))
    np.testing.assert_allclose(ours.numpy(), theirs, rtol=0, atol=1e-5)
    assert ours.abs().min() > 0.05  # a non-trivial correlation is compared


@pytest.mark.parametrize("options,match", [
    (dict(fraction=0.0), "fraction"), (dict(fraction=1.5), "fraction"),
    (dict(fraction="half"), "fraction"), (dict(n_subsets=1), "at least 2"),
    (dict(n_subsets=0), "n_subsets"), (dict(grid=0), "grid"),
    (dict(grid=2, per_channel=True), "exclude"), (dict(baseline="noise"), "unknown baseline"),
    (dict(output="softmax"), "output"), (dict(seed=1.5), "seed"),
    (dict(batch_size=0), "batch_size"),
])
def test_bad_options_raise(options, match):
    with pytest.raises(ValueError, match=match):
        metrics.get("sensitivity_n", **options)


def test_bad_inputs_raise(linear_case):
    model, x, t, perfect, _ = linear_case
    m = metrics.get("sensitivity_n", n_subsets=5)
    with pytest.raises(ValueError, match="do not match"):
        m.evaluate(model, x, t, perfect[:, :, :2])
    with pytest.raises(ValueError, match="do not match"):
        m.pairs(model, x, t, perfect[:2])
    bad = perfect.clone()
    bad[1, 0, 0, 0] = float("inf")
    with pytest.raises(ValueError, match="NaN or inf"):
        m.evaluate(model, x, t, bad)
    with pytest.raises(ValueError, match="larger than the image"):
        metrics.get("sensitivity_n", grid=14).evaluate(model, x, t, perfect)


class _CountingModel(nn.Module):
    """Wraps a model and counts the rows it is evaluated on."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner, self.rows = inner, 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.rows += x.shape[0]
        return self.inner(x)


def test_evaluate_many_equals_evaluate_and_shares_the_forward_passes(linear_case):
    model, x, t, perfect, noise = linear_case
    maps = {"perfect": perfect, "noise": noise, "neg": -perfect}
    for kw in (dict(fraction=0.3, n_subsets=12), dict(fraction=0.5, n_subsets=9, grid=2)):
        metric = metrics.get("sensitivity_n", **kw)
        counted = _CountingModel(model).eval()
        many = metric.evaluate_many(counted, x, t, maps)
        assert counted.rows == x.shape[0] * (kw["n_subsets"] + 1)  # once, not per map
        assert set(many) == set(maps)
        for name, a in maps.items():
            assert torch.equal(many[name], metric.evaluate(model, x, t, a))
    assert torch.allclose(many["perfect"], torch.ones(6))
    assert torch.allclose(many["neg"], -torch.ones(6))


def test_evaluate_many_bad_inputs_name_the_map(linear_case):
    model, x, t, perfect, _ = linear_case
    m = metrics.get("sensitivity_n", n_subsets=5)
    with pytest.raises(ValueError, match=r"attributions\['short'\].*do not match"):
        m.evaluate_many(model, x, t, {"ok": perfect, "short": perfect[:2]})
    bad = perfect.clone()
    bad[0, 0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match=r"attributions\['bad'\].*NaN"):
        m.evaluate_many(model, x, t, {"bad": bad})
    with pytest.raises(ValueError, match="at least one"):
        m.evaluate_many(model, x, t, {})
