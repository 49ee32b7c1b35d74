"""Pixel-perturbation metrics (MoRF, LeRF, LeRF change, insertion, deletion).

* Known answers on a linear model: for f_0 = w . x (class 1's logit is 0, so the target
  probability sigmoid(w . x) is monotone in it) and a zero baseline, removing the features
  with the largest w_i x_i first minimises *every point* of the curve, so the exact map w*x
  gives the lowest MoRF/deletion curve (and the highest LeRF/insertion curve) of all maps,
  the inverse map -w*x the opposite extreme.
* A 2x2 MoRF/LeRF curve and its trapezoidal AUC computed by hand; tie-breaking; rounding of
  fractions to feature counts.
* Baselines replace exactly the ranked pixels with the documented values (recording model).
* batch_size does not change the results.
* Agreement with Quantus 0.6.0 PixelFlipping and RegionPerturbation where the definitions
  coincide (differences listed in attrlab.metrics.faithfulness.pixel_perturbation's docstring).
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch
import zoo_helpers
from torch import nn

from attrlab import metrics
from attrlab.core.perturbation import (
    FeatureLayout,
    feature_counts,
    gaussian_blur,
    normalized_auc,
    rank_features,
    replacement,
)

NAMES = ["morf", "lerf", "lerf_change", "deletion", "insertion"]


pytestmark = pytest.mark.usefixtures("one_thread")


def sigmoid(v: float) -> float:
    return 1.0 / (1.0 + math.exp(-v))


def linear_model(w0: torch.Tensor, w1: torch.Tensor | None = None) -> nn.Module:
    d = w0.numel()
    model = nn.Sequential(nn.Flatten(), nn.Linear(d, 2, bias=False))
    with torch.no_grad():
        model[1].weight[0] = w0.flatten()
        model[1].weight[1] = 0.0 if w1 is None else w1.flatten()
    return model.eval()


class Recorder(nn.Module):
    """A linear model on flattened inputs that keeps every batch it sees."""

    def __init__(self, d: int) -> None:
        super().__init__()
        self.flat = nn.Flatten()  # first leaf: no static input check against the Linear
        self.lin = nn.Linear(d, 2)
        self.seen: list[torch.Tensor] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.seen.append(x.detach().clone())
        return self.lin(self.flat(x))

    def rows(self) -> torch.Tensor:
        return torch.cat(self.seen)


def small_cnn(channels: int = 3, size: int = 8, classes: int = 3) -> nn.Module:
    return zoo_helpers.small_cnn(channels, size, classes)


@pytest.fixture
def linear_case():
    g = torch.Generator().manual_seed(0)
    w = torch.randn(1, 4, 4, generator=g)
    x = torch.rand(6, 1, 4, 4, generator=g) + 0.1
    model = linear_model(w)
    perfect = w * x
    rnd = torch.randn(6, 1, 4, 4, generator=g)
    return model, x, torch.zeros(6, dtype=torch.long), perfect, rnd


# -- known answers on a linear model -----------------------------------------------------------

@pytest.mark.parametrize("name", ["morf", "deletion", "lerf", "insertion"])
def test_linear_model_ranks_exact_map_best(linear_case, name):
    model, x, t, perfect, rnd = linear_case
    metric = metrics.get(name, baseline=0.0)
    curves = [metric.curve(model, x, t, a)[1] for a in (perfect, rnd, -perfect)]
    scores = [metric.evaluate(model, x, t, a) for a in (perfect, rnd, -perfect)]
    if metric.higher_is_better:  # orient so that lower is better
        curves, scores = [-c for c in curves], [-s for s in scores]
    # pointwise optimal curves, strictly ordered scores for every sample
    assert (curves[0] <= curves[1] + 1e-7).all() and (curves[1] <= curves[2] + 1e-7).all()
    assert (scores[0] < scores[1]).all() and (scores[1] < scores[2]).all()
    assert metric.higher_is_better == (name in ("lerf", "insertion"))


def test_insertion_with_blur_baseline_prefers_w_times_x_minus_blur(linear_case):
    # insertion from the blurred image: the output at fraction p is
    # w . blur + sum_{top k} w_i (x_i - blur_i), maximised by ranking w * (x - blur)
    model, x, t, _, rnd = linear_case
    metric = metrics.get("insertion", sigma=1.0, kernel_size=3)
    w = model[1].weight[0].view(1, 1, 4, 4)
    exact = w * (x - replacement(x, "blur", sigma=1.0, kernel_size=3))
    s = [metric.evaluate(model, x, t, a) for a in (exact, rnd, -exact)]
    assert (s[0] > s[1]).all() and (s[1] > s[2]).all()


def test_lerf_change_linear_positive_model():
    # w > 0, x > 0: every contribution is positive and removing the k smallest changes the
    # logit by exactly their sum; the exact map removes the smallest ones first.
    g = torch.Generator().manual_seed(3)
    w = torch.rand(1, 4, 4, generator=g) + 0.1
    x = torch.rand(5, 1, 4, 4, generator=g) + 0.1
    model, t = linear_model(w), torch.zeros(5, dtype=torch.long)
    perfect = w * x
    metric = metrics.get("lerf_change")
    s = [metric.evaluate(model, x, t, a) for a in (perfect, torch.randn(5, 1, 4, 4,
                                                                          generator=g), -perfect)]
    assert (s[0] < s[1]).all() and (s[1] < s[2]).all()
    # closed form: change_p = (sum of the round(16 p) smallest contributions) / (w . x)
    contrib = perfect.flatten(1).sort(1).values
    total = contrib.sum(1)
    fr, change = metric.curve(model, x, t, perfect)
    expected = torch.stack([contrib[:, :int(round(p * 16))].sum(1) / total
                            for p in fr.tolist()], 1)
    torch.testing.assert_close(change, expected, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(fr, torch.arange(1, 10, dtype=torch.float32) / 10)
    torch.testing.assert_close(s[0], expected.mean(1), rtol=1e-5, atol=1e-6)
    assert metric.higher_is_better is False


# -- exact small cases ---------------------------------------------------------------------------

@pytest.fixture
def two_by_two():
    # f_0 = 2 x0 - x1 + 4 x2 + x3, f_1 = x1 (flattened 2x2 image, row-major)
    model = linear_model(torch.tensor([2.0, -1.0, 4.0, 1.0]), torch.tensor([0.0, 1.0, 0, 0]))
    x = torch.tensor([[0.5, 1.0], [0.25, 2.0]]).view(1, 1, 2, 2)
    a = torch.tensor([[0.3, 0.1], [0.9, -0.2]]).view(1, 1, 2, 2)
    return model, x, a


def test_morf_curve_by_hand(two_by_two):
    model, x, a = two_by_two
    # logits (f_0, f_1): start (3, 1); MoRF order x2, x0, x1, x3:
    # remove x2 -> (2, 1); x0 -> (1, 1); x1 -> (2, 0); x3 -> (0, 0)
    expected = [sigmoid(2), sigmoid(1), 0.5, sigmoid(2), 0.5]
    fr = [0, 0.25, 0.5, 0.75, 1.0]
    metric = metrics.get("morf", fractions=fr)
    x_axis, y = metric.curve(model, x, 0, a)
    assert x_axis.tolist() == fr
    torch.testing.assert_close(y[0].double(), torch.tensor(expected, dtype=torch.float64))
    auc = 0.25 * (expected[0] / 2 + sum(expected[1:4]) + expected[4] / 2)
    assert auc == pytest.approx(0.7005635488992071, abs=1e-12)  # the numbers, spelled out
    assert metric.evaluate(model, x, 0, a).item() == pytest.approx(auc, abs=1e-6)
    # logits instead of probabilities
    y_logit = metrics.get("morf", fractions=fr, output="logit").curve(model, x, 0, a)[1]
    assert y_logit[0].tolist() == [3.0, 2.0, 1.0, 2.0, 0.0]
    # deletion is the same experiment
    torch.testing.assert_close(metrics.get("deletion", fractions=fr).curve(model, x, 0, a)[1], y)


def test_lerf_curve_by_hand(two_by_two):
    model, x, a = two_by_two
    # contributions to f_0: x0 1, x1 -1, x2 1, x3 2. LeRF order x3, x1, x0, x2:
    # (3, 1) -> (1, 1) -> (2, 0) -> (1, 0) -> (0, 0)
    expected = [sigmoid(2), 0.5, sigmoid(2), sigmoid(1), 0.5]
    y = metrics.get("lerf", fractions=[0, 0.25, 0.5, 0.75, 1]).curve(model, x, 0, a)[1]
    torch.testing.assert_close(y[0].double(), torch.tensor(expected, dtype=torch.float64))
    # target class 1 (logit x1 only): drops to 0 once x1 (second in LeRF order) is removed
    y1 = metrics.get("lerf", fractions=[0, 0.25, 0.5, 1], output="logit").curve(
        model, x, 1, a)[1]
    assert y1[0].tolist() == [1.0, 1.0, 0.0, 0.0]


def test_insertion_curve_by_hand(two_by_two):
    model, x, a = two_by_two
    # from the constant 0.5 image f_0 = 2*.5 - .5 + 4*.5 + .5 = 3; inserting (MoRF order)
    # x2 = .25: 3 + 4*(.25 - .5) = 2; x0 = .5: unchanged; x1 = 1: 2 - (1 - .5) = 1.5;
    # x3 = 2: 1.5 + (2 - .5) = 3 (the input's own logit)
    y = metrics.get("insertion", fractions=[0, .25, .5, .75, 1], baseline=0.5,
                    output="logit").curve(model, x, 0, a)[1]
    assert y[0].tolist() == [3.0, 2.0, 2.0, 1.5, 3.0]


def test_fraction_rounding_and_default_fractions(two_by_two):
    model, x, a = two_by_two
    fr = torch.arange(11, dtype=torch.float64) / 10
    # round(p * 4), halves to even: 0.4->0, 0.8->1, 1.2->1, 1.6->2, 2.0->2, 2.4->2, 2.8->3 ...
    assert feature_counts(fr, 4).tolist() == [0, 0, 1, 1, 2, 2, 2, 3, 3, 4, 4]
    m = metrics.get("morf", output="logit")
    x_axis, y = m.curve(model, x, 0, a)
    torch.testing.assert_close(x_axis, fr.float())
    by_k = [3.0, 2.0, 1.0, 2.0, 0.0]
    assert y[0].tolist() == [by_k[k] for k in [0, 0, 1, 1, 2, 2, 2, 3, 3, 4, 4]]
    assert metrics.get("insertion").fractions.numel() == 16
    assert metrics.get("deletion").fractions.tolist() == \
        (torch.arange(16, dtype=torch.float64) / 15).tolist()
    assert metrics.get("morf", steps=4).fractions.tolist() == [0, 0.25, 0.5, 0.75, 1]
    assert metrics.get("lerf_change", steps=4).fractions.tolist() == [0.25, 0.5, 0.75]


def test_normalized_auc():
    x = torch.tensor([0.0, 0.5, 1.0])
    y = torch.tensor([[1.0, 0.0, 1.0], [2.0, 2.0, 2.0]])
    assert normalized_auc(x, y).tolist() == [0.5, 2.0]
    # over [0.2, 0.6]: area 0.4 * 1.5 divided by the width 0.4
    assert normalized_auc(torch.tensor([0.2, 0.6]), torch.tensor([[1.0, 2.0]])).item() == \
        pytest.approx(1.5)


def test_tie_breaking_is_stable_and_deterministic(two_by_two):
    scores = torch.tensor([[1.0, 1.0, 0.0, 1.0]])
    # MoRF: the three 1.0s in index order, then the 0; LeRF: the 0 first, then index order
    assert rank_features(scores, True).tolist() == [[0, 1, 3, 2]]
    assert rank_features(scores, False).tolist() == [[1, 2, 0, 3]]
    assert rank_features(torch.zeros(1, 5), True).tolist() == [[0, 1, 2, 3, 4]]
    model, x, _ = two_by_two
    a = scores.view(1, 1, 2, 2)
    m = metrics.get("morf", fractions=[0, .25, .5, .75, 1], output="logit")
    y = m.curve(model, x, 0, a)[1]
    # removal order x0, x1, x3, x2: 3 -> 2 -> 3 -> 1 -> 0
    assert y[0].tolist() == [3.0, 2.0, 3.0, 1.0, 0.0]
    for _ in range(3):
        assert torch.equal(m.curve(model, x, 0, a)[1], y)


def test_pixel_features_sum_channels_and_per_channel_entries():
    a = torch.zeros(1, 2, 2, 2)
    a[0, 0, 0, 0] = 1.0   # pixel 0: 1.0 in channel 0
    a[0, 1, 1, 1] = 2.0   # pixel 3: 2.0 in channel 1
    a[0, 1, 0, 0] = 0.5   # pixel 0 in total 1.5
    lay = FeatureLayout((2, 2, 2))
    assert lay.scores(a).tolist() == [[1.5, 0.0, 0.0, 2.0]]
    lay_c = FeatureLayout((2, 2, 2), per_channel=True)
    assert lay_c.n_features == 8 and lay_c.scores(a)[0].tolist() == a.flatten().tolist()
    x = torch.rand(1, 2, 2, 2) + 1
    rec = Recorder(8)
    metrics.get("morf", fractions=[0.0, 0.25, 0.5]).curve(rec, x, 0, a)
    rows = rec.rows()
    assert torch.equal(rows[0], x[0])
    removed = (rows == 0)
    # 1 pixel (both channels) = pixel 3, then pixel 0
    assert removed[1].sum() == 2 and removed[1][:, 1, 1].all()
    assert removed[2].sum() == 4 and removed[2][:, 0, 0].all()
    rec.seen.clear()
    metrics.get("morf", fractions=[0.0, 0.125, 0.25], per_channel=True).curve(rec, x, 0, a)
    removed = (rec.rows() == 0)
    assert removed[1].sum() == 1 and removed[1][1, 1, 1]
    assert removed[2].sum() == 2 and removed[2][0, 0, 0]


def test_patch_grid_layout():
    lay = FeatureLayout((1, 4, 4), grid=2)
    assert lay.index.view(4, 4).tolist() == [[0, 0, 1, 1], [0, 0, 1, 1], [2, 2, 3, 3],
                                             [2, 2, 3, 3]]
    # non-divisible: row h belongs to patch row floor(h * g / H)
    assert FeatureLayout((1, 5, 5), grid=2).index.view(5, 5)[:, 0].tolist() == [0, 0, 0, 2, 2]
    a = torch.arange(16.0).view(1, 1, 4, 4)
    assert lay.scores(a).tolist() == [[0 + 1 + 4 + 5, 2 + 3 + 6 + 7, 8 + 9 + 12 + 13,
                                       10 + 11 + 14 + 15]]


# -- baselines -------------------------------------------------------------------------------

def test_mean_baseline_replaces_ranked_pixels_by_channel_means():
    g = torch.Generator().manual_seed(5)
    x = torch.rand(2, 2, 3, 3, generator=g)
    a = torch.rand(2, 2, 3, 3, generator=g)
    rec = Recorder(18)
    metrics.get("morf", fractions=[0.0, 1 / 3], baseline="mean").curve(rec, x, 0, a)
    rows = rec.rows().view(2, 2, 2, 3, 3)  # (sample, fraction, C, H, W)
    top3 = a.sum(1).flatten(1).argsort(1, descending=True)[:, :3]
    for i in range(2):
        assert torch.equal(rows[i, 0], x[i])
        mask = torch.zeros(9, dtype=torch.bool)
        mask[top3[i]] = True
        mask = mask.view(3, 3)
        means = x[i].mean((1, 2))  # per-channel mean of this image
        for c in range(2):
            assert torch.allclose(rows[i, 1, c][mask], means[c].expand(3))
            assert torch.equal(rows[i, 1, c][~mask], x[i, c][~mask])


def test_blur_baseline_values():
    tvf = pytest.importorskip("torchvision.transforms.functional")
    from scipy import ndimage
    g = torch.Generator().manual_seed(7)
    x = torch.rand(2, 3, 8, 8, generator=g, dtype=torch.float64)
    ours = gaussian_blur(x, sigma=1.0, kernel_size=5)
    torch.testing.assert_close(ours, tvf.gaussian_blur(x, [5, 5], [1.0, 1.0]))
    ref = ndimage.gaussian_filter(x.numpy(), sigma=(0, 0, 1, 1), mode="mirror", truncate=2.0)
    np.testing.assert_allclose(ours.numpy(), ref, atol=1e-12)
    # image not larger than the radius (RISE defaults 11 / 5 on 4x4): replicate padding
    small = x[:, :, :4, :4]
    ref = ndimage.gaussian_filter(small.numpy(), sigma=(0, 0, 5, 5), mode="nearest",
                                  truncate=1.0)
    np.testing.assert_allclose(replacement(small, "blur").numpy(), ref, atol=1e-12)
    # deletion with the blur baseline puts the blurred values at the removed pixels
    a = torch.rand(2, 3, 8, 8, generator=g, dtype=torch.float64)
    rec = Recorder(192).double()
    metrics.get("deletion", fractions=[0.0, 0.25, 1.0], baseline="blur", sigma=1.0,
                kernel_size=5).curve(rec, x, 0, a)
    rows = rec.rows().view(2, 3, 3, 8, 8)
    top = torch.zeros(2, 64, dtype=torch.bool)
    top.scatter_(1, a.sum(1).flatten(1).argsort(1, descending=True)[:, :16], True)
    top = top.view(2, 1, 8, 8).expand(2, 3, 8, 8)
    assert torch.equal(rows[:, 1][top], ours[top]) and torch.equal(rows[:, 1][~top], x[~top])
    assert torch.equal(rows[:, 2], ours)


def test_insertion_starts_blurred_and_ends_at_input():
    g = torch.Generator().manual_seed(8)
    x = torch.rand(2, 3, 8, 8, generator=g)
    a = torch.rand(2, 3, 8, 8, generator=g)
    rec = Recorder(192)
    metric = metrics.get("insertion")
    assert metric.baseline == "blur" and metric.sigma == 5.0 and metric.kernel_size == 11
    metric.curve(rec, x, 0, a)
    rows = rec.rows().view(2, 16, 3, 8, 8)
    assert torch.equal(rows[:, 0], replacement(x, "blur", 5.0, 11))
    assert torch.equal(rows[:, -1], x)
    # at 1/15 of the 64 pixels (round(4.27) = 4) the 4 top pixels hold the input
    top = a.sum(1).flatten(1).argsort(1, descending=True)[:, :4]
    changed = (rows[:, 1] != rows[:, 0]).any(1).flatten(1)
    for i in range(2):
        assert set(changed[i].nonzero().flatten().tolist()) <= set(top[i].tolist())


def test_constant_baseline_and_zero():
    x = torch.rand(1, 2, 3, 3)
    assert torch.equal(replacement(x, 0.25), torch.full_like(x, 0.25))
    assert torch.equal(replacement(x, "zero"), torch.zeros_like(x))
    flat = torch.rand(3, 5)
    torch.testing.assert_close(replacement(flat, "mean"), flat.mean(1, keepdim=True).expand(3, 5))


# -- batching, model safety --------------------------------------------------------------------

@pytest.mark.parametrize("name", NAMES)
def test_batch_size_does_not_change_results(name):
    # float64, so that the only possible difference (the conv/matmul kernels' summation
    # order for different batch sizes, ~1e-7 relative in float32) is below 1e-12
    model = small_cnn().double()
    g = torch.Generator().manual_seed(2)
    x = torch.rand(3, 3, 8, 8, generator=g, dtype=torch.float64)
    a = torch.randn(3, 3, 8, 8, generator=g, dtype=torch.float64)
    t = torch.tensor([0, 2, 1])
    one = metrics.get(name, batch_size=1)
    odd = metrics.get(name, batch_size=7)  # chunks cut across samples
    many = metrics.get(name, batch_size=4096)
    x1, y1 = one.curve(model, x, t, a)
    x2, y2 = many.curve(model, x, t, a)
    assert torch.equal(x1, x2)
    tight = dict(rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(y1, y2, **tight)
    torch.testing.assert_close(odd.curve(model, x, t, a)[1], y2, **tight)
    torch.testing.assert_close(one.evaluate(model, x, t, a), many.evaluate(model, x, t, a),
                               **tight)
    # a sample's score does not depend on the rest of the batch
    torch.testing.assert_close(many.evaluate(model, x[1:2], t[1:2], a[1:2]),
                               many.evaluate(model, x, t, a)[1:2], **tight)
    scores, (xs, ys) = many.evaluate_with_curve(model, x, t, a)
    assert torch.equal(ys, y2) and scores.shape == (3,)


def test_model_state_is_restored_and_eval_mode_used():
    model = nn.Sequential(nn.Flatten(), nn.Dropout(0.5), nn.Linear(16, 2)).train()
    x = torch.rand(2, 1, 4, 4)
    a = torch.rand(2, 1, 4, 4)
    m = metrics.get("morf")
    s1, s2 = m.evaluate(model, x, 0, a), m.evaluate(model, x, 0, a)
    assert torch.equal(s1, s2)  # dropout off
    m.curve(model, x, 0, a)
    assert model.training and all(p.requires_grad for p in model.parameters())


# -- agreement with Quantus ----------------------------------------------------------------------

@pytest.fixture(scope="module")
def quantus():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return pytest.importorskip("quantus")


def _call(metric, model, x, y, a, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return np.asarray(metric(model=model, x_batch=x.numpy(), y_batch=y.numpy(),
                                 a_batch=a.numpy(), device="cpu", channel_first=True, **kw))


@pytest.mark.parametrize("channels,per_channel,softmax", [(1, False, True), (1, False, False),
                                                          (3, True, True)])
def test_pixel_flipping_agrees_with_quantus(quantus, channels, per_channel, softmax):
    # Quantus PixelFlipping: argsort(-a) over the flattened (C, H, W) entries, one entry per
    # step replaced by perturb_baseline (0.0: zero), output after each step (no k = 0 point).
    model = small_cnn(channels, 4)
    g = torch.Generator().manual_seed(4)
    x = torch.rand(4, channels, 4, 4, generator=g)
    a = torch.randn(4, channels, 4, 4, generator=g)  # continuous: no ties
    y = torch.tensor([0, 1, 2, 1])
    n = channels * 16
    pf = quantus.PixelFlipping(features_in_step=1, perturb_baseline=0.0, abs=False,
                               normalise=False, disable_warnings=True)
    q = _call(pf, model, x, y, a, softmax=softmax)
    ours = metrics.get("morf", fractions=torch.arange(n + 1) / n, baseline=0.0,
                       per_channel=per_channel, output="prob" if softmax else "logit")
    xs, curve = ours.curve(model, x, y, a)
    assert q.shape == (4, n)
    np.testing.assert_allclose(curve[:, 1:].numpy(), q, rtol=0, atol=1e-6)
    # AUC: Quantus would use np.trapz(dx=1) over its n points (np.trapz is gone in NumPy 2,
    # so return_auc_per_sample fails there); ours is normalised over x in [0, 1] and has the
    # k = 0 point: ours * n == trapezoid(q) + (y_0 + y_1) / 2
    score = ours.evaluate(model, x, y, a).double().numpy()
    full = curve.double().numpy()
    np.testing.assert_allclose(score * n, np.trapezoid(q, axis=1) + (full[:, 0] + full[:, 1]) / 2,
                               rtol=1e-5)


@pytest.mark.parametrize("order", ["morf", "lerf"])
def test_region_perturbation_agrees_with_quantus(quantus, order):
    # Quantus RegionPerturbation(patch_size=2) on 8x8 = our grid=4 (16 patches of 2x2, all
    # channels), returning f(x) - f(x after k patches) for k = 1..16.
    model = small_cnn(3, 8)
    g = torch.Generator().manual_seed(6)
    x = torch.rand(3, 3, 8, 8, generator=g)
    a = torch.randn(3, 3, 8, 8, generator=g)
    y = torch.tensor([2, 0, 1])
    rp = quantus.RegionPerturbation(patch_size=2, order=order, perturb_baseline=0.0, abs=False,
                                    normalise=False, disable_warnings=True)
    q = _call(rp, model, x, y, a, softmax=True)
    _, curve = metrics.get(order, fractions=torch.arange(17) / 16, baseline=0.0,
                           grid=4).curve(model, x, y, a)
    assert q.shape == (3, 16)
    np.testing.assert_allclose((curve[:, :1] - curve[:, 1:]).numpy(), q, rtol=0, atol=1e-6)


# -- errors ----------------------------------------------------------------------------------

@pytest.mark.parametrize("name", NAMES)
def test_bad_attributions_raise(name, linear_case):
    model, x, t, perfect, _ = linear_case
    m = metrics.get(name, baseline=0.0)
    with pytest.raises(ValueError, match="do not match"):
        m.evaluate(model, x, t, perfect[:, :, :3])
    with pytest.raises(ValueError, match="do not match"):
        m.curve(model, x, t, perfect[:3])
    bad = perfect.clone()
    bad[0, 0, 1, 1] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        m.evaluate(model, x, t, bad)
    with pytest.raises(ValueError, match="NaN"):
        m.curve(model, x, t, bad)
    with pytest.raises(ValueError, match="targets"):
        m.evaluate(model, x, None, perfect)
    with pytest.raises(ValueError, match="out of range"):
        m.evaluate(model, x, 5, perfect)


@pytest.mark.parametrize("fractions,match", [
    ([0.0, 0.5, 1.5], r"\[0, 1\]"), ([-0.1, 0.5], r"\[0, 1\]"), ([0.0, 0.6, 0.4], "increasing"),
    ([0.0, 0.5, 0.5], "increasing"), ([0.5], "at least 2"), ([[0.0, 1.0]], "1-D"),
    ([0.0, float("nan")], r"\[0, 1\]"), ("abc", "numbers"),
])
def test_bad_fractions_raise(fractions, match):
    with pytest.raises(ValueError, match=match):
        metrics.get("morf", fractions=fractions)


@pytest.mark.parametrize("options,match", [
    (dict(baseline="gray"), "unknown baseline"), (dict(baseline=float("inf")), "finite"),
    (dict(baseline=None), "baseline"), (dict(output="softmax"), "output"),
    (dict(steps=0), "steps"), (dict(steps=4, fractions=[0, 1]), "either"),
    (dict(grid=2, per_channel=True), "exclude"), (dict(grid=0), "grid"),
    (dict(sigma=0.0), "sigma"), (dict(kernel_size=4), "odd"), (dict(batch_size=0), "batch_size"),
])
@pytest.mark.parametrize("name", ["morf", "insertion"])
def test_bad_options_raise(name, options, match):
    with pytest.raises(ValueError, match=match):
        metrics.get(name, **options)


def test_input_dependent_errors():
    flat_model = nn.Sequential(nn.Linear(6, 2))
    x = torch.rand(2, 6)
    with pytest.raises(ValueError, match="blur"):
        metrics.get("insertion").evaluate(flat_model, x, 0, x)  # blur needs images
    with pytest.raises(ValueError, match="grid"):
        metrics.get("morf", grid=2).evaluate(flat_model, x, 0, x)
    with pytest.raises(ValueError, match="larger than the image"):
        metrics.get("morf", grid=5).evaluate(small_cnn(1, 4), torch.rand(1, 1, 4, 4), 0,
                                             torch.rand(1, 1, 4, 4))
    with pytest.raises(ValueError, match="steps >= 2"):
        metrics.get("lerf_change", steps=1)
    # flat inputs work with the other baselines: one feature per entry
    s = metrics.get("morf", baseline="mean").evaluate(flat_model, x, 0, x)
    assert s.shape == (2,) and torch.isfinite(s).all()
