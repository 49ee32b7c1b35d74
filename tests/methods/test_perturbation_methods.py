"""Perturbation methods: agreement with Captum (occlusion, feature ablation exactly; LIME and
KernelSHAP given the same samples), closed forms (Shapley values, linear weights, RISE's
expectation) and RISE's invariances."""

import itertools
import math

import pytest
import torch
from captum._utils.models.linear_model import (
    SkLearnLasso,
    SkLearnLinearRegression,
    SkLearnRidge,
)
from captum.attr import FeatureAblation as CaptumAblation
from captum.attr import KernelShap as CaptumKernelShap
from captum.attr import Lime as CaptumLime
from captum.attr import Occlusion as CaptumOcclusion
from torch import nn

from attrlab import methods
from attrlab.core.perturbation import feature_ids, rise_grids, rise_masks
from attrlab.experiments.bench import DEFAULT_COST_CAP, default_methods
from attrlab.methods.perturbation.kernel_shap import shapley_kernel
from attrlab.methods.perturbation.lime import lime_kernel

pytestmark = pytest.mark.usefixtures("one_thread")
F64 = dict(dtype=torch.float64)


def conv_net(classes=5, side=10):
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Flatten(),
                         nn.Linear(4 * side * side, classes)).double().eval()


def images(n=3, side=10, seed=1):
    return torch.randn(n, 3, side, side, generator=torch.Generator().manual_seed(seed), **F64)


# Captum's Occlusion returns float32 (``.float()`` before dividing by the window counts), so
# agreement is to float32 rounding; FeatureAblation keeps the dtype: bit for bit.
@pytest.mark.parametrize("window, strides, baseline", [
    ((3, 4, 4), (1, 3, 3), 0.5), ((1, 3, 2), (1, 2, 1), 0.0), ((3, 10, 10), 1, -1.0),
    ((2, 5, 3), (1, 5, 3), 0.25)])
def test_occlusion_equals_captum(window, strides, baseline):
    model, x, t = conv_net(), images(), torch.tensor([0, 2, 4])
    ours = methods.get("occlusion", model, sliding_window_shapes=window, strides=strides,
                       baselines=baseline, internal_batch_size=7).attribute(x, t)
    ref = CaptumOcclusion(model).attribute(x, sliding_window_shapes=window, strides=strides,
                                           baselines=baseline, target=t, perturbations_per_eval=4)
    torch.testing.assert_close(ours, ref.double(), rtol=1e-6, atol=1e-7)


def test_occlusion_int_window_is_all_channels_and_sequences_take_whole_tokens():
    model, x, t = conv_net(), images(2), torch.tensor([1, 3])
    a = methods.get("occlusion", model, sliding_window_shapes=4, strides=2).attribute(x, t)
    b = CaptumOcclusion(model).attribute(x, sliding_window_shapes=(3, 4, 4), strides=2, target=t)
    torch.testing.assert_close(a, b.double(), rtol=1e-6, atol=1e-7)
    seq = nn.Sequential(nn.Flatten(), nn.Linear(6 * 4, 3)).double()
    e = torch.randn(2, 6, 4, **F64)
    a = methods.get("occlusion", seq, sliding_window_shapes=2, strides=1).attribute(e, 0)
    b = CaptumOcclusion(seq).attribute(e, sliding_window_shapes=(2, 4), strides=1, target=0)
    torch.testing.assert_close(a, b.double(), rtol=1e-6, atol=1e-7)


def test_feature_ablation_equals_captum():
    model, x, t = conv_net(), images(), torch.tensor([0, 2, 4])
    g = torch.Generator().manual_seed(2)
    shared = torch.randint(0, 6, (1, 1, 10, 10), generator=g)
    per_sample = torch.randint(3, 9, (3, 3, 10, 10), generator=g)  # ids 3..8, per channel
    for mask in (shared, per_sample):
        ours = methods.get("feature_ablation", model, feature_mask=mask, baselines=-0.3,
                           internal_batch_size=5).attribute(x, t)
        ref = CaptumAblation(model).attribute(x, feature_mask=mask, baselines=-0.3, target=t)
        assert torch.equal(ours, ref)
    ours = methods.get("feature_ablation", model, internal_batch_size=64).attribute(x, t)
    assert torch.equal(ours, CaptumAblation(model).attribute(x, target=t, perturbations_per_eval=8))
    # a 5 x 5 patch grid is the mask of patch ids
    patches = (torch.arange(10).view(-1, 1) // 2 * 5 + torch.arange(10).view(1, -1) // 2)
    ours = methods.get("feature_ablation", model, feature_mask=5).attribute(x, t)
    ref = CaptumAblation(model).attribute(x, feature_mask=patches.view(1, 1, 10, 10), target=t)
    assert torch.equal(ours, ref)


def test_feature_ablation_tokens_and_forward_args():
    class Seq(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(4, 3).double()

        def forward(self, e, mask):
            return self.fc((e * mask.unsqueeze(2)).sum(1))

    model = Seq()
    e, mask = torch.randn(2, 5, 4, **F64), torch.tensor([[1., 1, 1, 0, 0], [1, 1, 1, 1, 1]], **F64)
    ours = methods.get("feature_ablation", model, feature_mask="tokens").attribute(
        e, 1, additional_forward_args=mask)
    ref = CaptumAblation(model).attribute(e, target=1, additional_forward_args=mask,
                                          feature_mask=torch.arange(5).view(1, 5, 1))
    assert torch.equal(ours, ref)
    assert (ours[0, 3:] == 0).all()  # masked-out tokens change nothing


def test_feature_ids_relabel_per_sample_and_refuse_bad_masks():
    x = torch.zeros(2, 1, 2, 2)
    ids, n = feature_ids(x, torch.tensor([[[[5, 9], [9, 7]]], [[[1, 1], [1, 1]]]]))
    assert n.tolist() == [3, 1] and ids[0].flatten().tolist() == [0, 2, 2, 1]
    with pytest.raises(ValueError, match="integer tensor"):
        feature_ids(x, torch.zeros(1, 1, 2, 2))
    with pytest.raises(ValueError, match="broadcast"):
        feature_ids(x, torch.zeros(1, 1, 3, 2, dtype=torch.long))
    with pytest.raises(ValueError, match="feature_mask"):
        methods.get("lime", nn.Linear(4, 2), feature_mask="bogus")


def _replay(samples):
    """A Captum perturb_func giving ``samples`` in order (again for every input)."""
    state = {"i": 0}

    def perturb(_inputs, **_):
        row = samples[state["i"] % samples.shape[0]].view(1, -1)
        state["i"] += 1
        return row

    return perturb


# Captum's Lime fits its sklearn surrogate on float32 copies: agreement to ~1e-7 relative.
@pytest.mark.parametrize("surrogate, captum_model", [("ridge", SkLearnRidge(alpha=1.0)),
                                                     ("lasso", SkLearnLasso(alpha=0.01))])
def test_lime_equals_captum_given_the_same_samples(surrogate, captum_model):
    model, x, t = conv_net(), images(2), torch.tensor([0, 2])
    fm = torch.arange(100).view(1, 1, 10, 10) // 10  # 10 features: the rows
    z = torch.randint(0, 2, (60, 10), generator=torch.Generator().manual_seed(3))
    z[0] = 1
    ours = methods.get("lime", model, feature_mask=fm, samples=z, surrogate=surrogate,
                       baselines=0.1).attribute(x, t)

    def similarity(_x, _xp, interp, **_):
        return lime_kernel(interp.view(1, 1, -1), torch.tensor([10]), 0.25).view(-1)

    lime = CaptumLime(model, interpretable_model=captum_model, similarity_func=similarity,
                      perturb_func=_replay(z))
    ref = torch.cat([lime.attribute(x[i:i + 1], target=t[i:i + 1], feature_mask=fm,
                                    baselines=0.1, n_samples=60) for i in range(2)])
    torch.testing.assert_close(ours, ref.double(), rtol=2e-5, atol=1e-6)
    assert ours.abs().max() > 1e-3


def _kernel_samples(m, s, seed):
    """Coalitions as Captum's KernelShap draws them: full, empty, then random subsets."""
    g = torch.Generator().manual_seed(seed)
    z = torch.zeros(s, m, dtype=torch.long)
    z[0] = 1
    for i in range(2, s):
        z[i, torch.randperm(m, generator=g)[:int(torch.randint(1, m, (1,), generator=g))]] = 1
    return z


def test_kernel_shap_equals_captum_given_the_same_samples():
    model, x, t = conv_net(), images(2), torch.tensor([1, 3])
    fm = torch.arange(100).view(1, 1, 10, 10) % 10  # 10 features: the columns
    z = _kernel_samples(10, 50, 4)
    ours = methods.get("kernel_shap", model, feature_mask=fm, samples=z).attribute(x, t)
    ks = CaptumKernelShap(model)

    def replay(_inputs, **_):
        yield from z.view(50, 1, 10)

    ks.perturb_func = replay
    ref = torch.cat([ks.attribute(x[i:i + 1], target=t[i:i + 1], feature_mask=fm, n_samples=50)
                     for i in range(2)])
    torch.testing.assert_close(ours, ref.double(), rtol=2e-5, atol=1e-6)
    # the Bernoulli sampler with Shapley kernel weights: Captum's Lime with that kernel
    zb = torch.randint(0, 2, (50, 10), generator=torch.Generator().manual_seed(5))
    zb[0], zb[1] = 1, 0
    ours = methods.get("kernel_shap", model, feature_mask=fm, samples=zb,
                       sampler="bernoulli").attribute(x, t)
    lime = CaptumLime(model, interpretable_model=SkLearnLinearRegression(),
                      similarity_func=lambda _a, _b, z, **_: shapley_kernel(
                          z.view(1, 1, -1), torch.tensor([10])).view(-1),
                      perturb_func=_replay(zb))
    ref = torch.cat([lime.attribute(x[i:i + 1], target=t[i:i + 1], feature_mask=fm, n_samples=50)
                     for i in range(2)])
    torch.testing.assert_close(ours, ref.double(), rtol=2e-5, atol=1e-6)


class Interacting(nn.Module):
    """f(x) = x0 x1 + 2 x2 - x3 x4 x0 + 0.5 x4^2 (one output): non-additive."""

    def forward(self, x):
        return x[:, 0] * x[:, 1] + 2 * x[:, 2] - x[:, 3] * x[:, 4] * x[:, 0] + 0.5 * x[:, 4] ** 2


def exact_shapley(f, x, b):
    """Shapley values of the set function v(S) = f(x on S, b elsewhere), by definition."""
    m = x.shape[1]
    phi = torch.zeros_like(x)
    for i in range(m):
        others = [j for j in range(m) if j != i]
        for k in range(m):
            for s in itertools.combinations(others, k):
                w = math.factorial(k) * math.factorial(m - k - 1) / math.factorial(m)
                keep = torch.zeros(m, dtype=torch.bool)
                keep[list(s)] = True
                without = torch.where(keep, x, b)
                keep[i] = True
                phi[:, i] += w * (f(torch.where(keep, x, b)) - f(without))
    return phi


def test_kernel_shap_with_every_coalition_gives_exact_shapley_values():
    x = torch.tensor([[1.0, 2.0, -1.0, 0.5, 3.0], [-2.0, 0.3, 1.5, 1.0, -1.0]], **F64)
    base = torch.tensor([[0.5, -1.0, 0.0, 2.0, 1.0]], **F64)
    coalitions = torch.tensor(list(itertools.product([0, 1], repeat=5)))
    coalitions = torch.cat([coalitions[-1:], coalitions[:1], coalitions[1:-1]])  # full, empty
    phi = methods.get("kernel_shap", Interacting(), samples=coalitions, sampler="bernoulli",
                      baselines=base).attribute(x, 0)
    torch.testing.assert_close(phi, exact_shapley(Interacting(), x, base), rtol=1e-6, atol=1e-6)
    # efficiency, up to the finite weight (1e6, as Captum) of the full and empty coalitions
    torch.testing.assert_close(phi.sum(1), Interacting()(x) - Interacting()(base).expand(2),
                               rtol=1e-5, atol=1e-5)


def test_kernel_shap_recovers_an_additive_model_from_sampled_coalitions():
    w = torch.tensor([[0.5, -1.0, 2.0, 0.0, 3.0, -0.5, 1.5, 0.25]], **F64)
    model = nn.Linear(8, 2).double()
    with torch.no_grad():
        model.weight.copy_(torch.cat([w, -w])), model.bias.fill_(0.7)
    x = torch.randn(3, 8, generator=torch.Generator().manual_seed(0), **F64)
    phi = methods.get("kernel_shap", model, n_samples=60).attribute(
        x, 0, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(phi, w * x, rtol=1e-7, atol=1e-8)  # baseline 0


def test_lime_recovers_the_weights_of_a_linear_model():
    w = torch.tensor([[1.0, -2.0, 0.5, 3.0, 0.0, -1.0]], **F64)
    model = nn.Linear(6, 1).double()
    with torch.no_grad():
        model.weight.copy_(w), model.bias.fill_(-0.3)
    x = torch.ones(2, 6, **F64)  # baseline 0: f(x_z) = b + sum_i w_i z_i, so beta = w
    exact = methods.get("lime", model, alpha=0.0, n_samples=50).attribute(x, 0)
    torch.testing.assert_close(exact, w.expand(2, 6))
    ridge = methods.get("lime", model).attribute(x, 0)  # lime's ridge (alpha 1), 1,000 samples
    torch.testing.assert_close(ridge, w.expand(2, 6), rtol=0.02, atol=0.02)


def test_lime_images_use_superpixels_and_text_sampler_removes_tokens():
    model, x = conv_net(side=16), images(2, 16)
    ids, n = feature_ids(x, "slic")
    a = methods.get("lime", model, feature_mask="slic", n_samples=40).attribute(x, 1)
    for i in range(2):  # constant on every superpixel
        for f in range(int(n[i])):
            vals = a[i][ids[i].expand(3, 16, 16) == f]
            assert torch.equal(vals, vals[:1].expand_as(vals))
    seq = nn.Sequential(nn.Flatten(), nn.Linear(5 * 3, 2)).double()
    e = torch.randn(1, 5, 3, **F64)
    out = methods.get("lime", seq, n_samples=30).attribute(e, 0)  # auto: tokens, text sampler
    assert out.shape == e.shape and torch.equal(out, out[:, :, :1].expand_as(out))


class PatchModel(nn.Module):
    """Two classes, logits (s, -s), s = 3 (mean of one patch of channel 0 - 1/2)."""

    def __init__(self, rows, cols):
        super().__init__()
        self.rows, self.cols = rows, cols

    def forward(self, x):
        s = 3 * (x[:, 0, self.rows, self.cols].mean((1, 2)) - 0.5)
        return torch.stack([s, -s], 1)


def test_rise_peaks_on_the_only_patch_the_model_depends_on():
    model = PatchModel(slice(8, 16), slice(16, 24))
    x = torch.ones(2, 3, 32, 32, **F64)
    sal = methods.get("rise", model, n_masks=500, cells=4).attribute(
        x, 0, generator=torch.Generator().manual_seed(0))[:, 0]
    inside = sal[:, 8:16, 16:24].mean((1, 2))
    outside = sal.clone()
    outside[:, 8:16, 16:24] = float("nan")
    far = outside.nanmean((1, 2))
    assert (inside > far + 0.1).all()
    peak = sal.flatten(1).argmax(1)
    assert ((peak // 32 >= 6) & (peak // 32 < 18) & (peak % 32 >= 14) & (peak % 32 < 26)).all()


class LinearProb(nn.Module):
    """Logits log(a + w.x), log(b - w.x): softmax_0 = (a + w.x) / (a + b), linear in x."""

    def __init__(self, w, a=3.0, b=2.0):
        super().__init__()
        self.w, self.a, self.b = w, a, b

    def forward(self, x):
        s = (x.flatten(1) * self.w).sum(1)
        return torch.stack([torch.log(self.a + s), torch.log(self.b - s)], 1)


def test_rise_expectation_form_on_a_closed_form_model():
    """cells = side: cell-sized masks without upsampling blur are i.i.d. Bernoulli(p) per pixel,
    so E[S_j] = E[P(x * M) M_j] / p = (a + w_j x_j + p sum_{k != j} w_k x_k) / (a + b)."""
    g = torch.Generator().manual_seed(0)
    w = torch.rand(16, generator=g, **F64) * 0.1
    x = torch.rand(1, 1, 4, 4, generator=g, **F64)
    p = 0.3
    sal = methods.get("rise", LinearProb(w), n_masks=40000, cells=4, p=p).attribute(
        x, 0, generator=torch.Generator().manual_seed(1)).flatten()
    wx = w * x.flatten()
    expected = (3.0 + wx + p * (wx.sum() - wx)) / 5.0
    torch.testing.assert_close(sal, expected, rtol=0, atol=0.01)  # MC error ~ 0.003


def test_rise_batch_equals_one_by_one_and_any_chunking():
    model, x, t = conv_net(side=12), images(3, 12), torch.tensor([0, 4, 2])
    rise = methods.get("rise", model, n_masks=50, cells=3)
    batch = rise.attribute(x, t, generator=torch.Generator().manual_seed(7))
    single = torch.cat([rise.attribute(x[i:i + 1], t[i:i + 1],
                                       generator=torch.Generator().manual_seed(7))
                        for i in range(3)])
    torch.testing.assert_close(batch, single, rtol=1e-10, atol=1e-12)
    chunked = rise.attribute(x, t, generator=torch.Generator().manual_seed(7),
                             internal_batch_size=7)
    torch.testing.assert_close(batch, chunked, rtol=1e-10, atol=1e-12)


def test_rise_masks_are_upsampled_shifted_grids():
    grids, shifts = rise_grids(200, (20, 20), 4, 0.5, torch.Generator().manual_seed(0))
    assert grids.shape == (200, 4, 4) and grids.dtype == torch.bool
    assert shifts.min() >= 0 and shifts.max() < 5
    m = rise_masks(grids, shifts, (20, 20), "cpu", torch.float32)
    assert m.shape == (200, 1, 20, 20) and m.dtype == torch.float32
    assert m.min() >= 0 and m.max() <= 1
    assert abs(float(m.mean()) - 0.5) < 0.05
    # an all-ones grid gives an all-ones mask
    ones = rise_masks(torch.ones(1, 4, 4, dtype=torch.bool), shifts[:1], (20, 20), "cpu",
                      torch.float64)
    torch.testing.assert_close(ones, torch.ones_like(ones))


def test_costs_follow_the_options():
    assert methods.method_class("rise").cost(n_masks=100) == 100
    assert methods.method_class("lime").cost() == 1000
    assert methods.method_class("kernel_shap").cost(n_samples=30) == 30
    occ = methods.method_class("occlusion")
    assert occ.cost(sliding_window_shapes=4, strides=2, sample_shape=(3, 8, 8)) == 1 + 9
    assert methods.method_class("feature_ablation").cost(feature_mask=4) == 17
    # every default exceeds the bench's default cap: `attrlab bench` runs them on request only
    costly = {"occlusion", "feature_ablation", "rise", "lime", "kernel_shap"}
    assert all(methods.method_class(name).cost() > DEFAULT_COST_CAP for name in costly)
    left_out = set(methods.available()) - set(default_methods())
    assert costly <= left_out  # the others left out must be trained or calibrated first
    assert all(not methods.method_class(n).default_set for n in left_out - costly
               if methods.method_class(n).cost() <= DEFAULT_COST_CAP)


def test_bad_options_are_refused_early():
    model, x = conv_net(), images(1)
    with pytest.raises(ValueError, match="larger than the input"):
        methods.get("occlusion", model, sliding_window_shapes=11).attribute(x, 0)
    with pytest.raises(ValueError, match="samples"):
        methods.get("lime", model, samples=torch.full((4, 3), 2))
    with pytest.raises(ValueError, match=r"samples must have shape"):
        methods.get("lime", model, feature_mask=2, samples=torch.ones(4, 3)).attribute(x, 0)
    with pytest.raises(ValueError, match="image inputs"):
        methods.get("rise", nn.Linear(4, 2)).attribute(torch.randn(2, 4), 0)
    with pytest.raises(ValueError, match="p must be"):
        methods.get("rise", model, p=0.0)


@pytest.mark.parametrize("name, opts", [("rise", {"n_masks": 20, "cells": 3}),
                                        ("lime", {"n_samples": 20, "feature_mask": 2}),
                                        ("kernel_shap", {"n_samples": 20, "feature_mask": 2})])
def test_random_methods_draw_from_their_generator_only(name, opts):
    m, x = methods.get(name, conv_net(), **opts), images(2)
    torch.manual_seed(123)
    before = torch.rand(3)
    torch.manual_seed(123)
    a = m.attribute(x, 1, generator=torch.Generator().manual_seed(5))
    assert torch.equal(torch.rand(3), before)  # the global RNG was not drawn from
    assert torch.equal(m.attribute(x, 1), m.attribute(x, 1, **m.seeded(0)))
    assert not torch.equal(a, m.attribute(x, 1, generator=torch.Generator().manual_seed(6)))


@pytest.mark.parametrize("name", ["lime", "kernel_shap"])
def test_samples_with_different_feature_counts_in_one_batch(name):
    """Padding columns of a sample with fewer features change nothing: the batch equals each
    sample on its own with its own columns of the injected samples."""
    model, x, t = conv_net(), images(2), torch.tensor([1, 4])
    mask = torch.stack([torch.arange(100).view(1, 10, 10) // 34,      # 3 features
                        torch.arange(100).view(1, 10, 10) // 20])     # 5 features
    z = torch.randint(0, 2, (2, 40, 5), generator=torch.Generator().manual_seed(0))
    z[:, 0], z[:, 1] = 1, 0
    m = methods.get(name, model, **({"sampler": "bernoulli"} if name == "kernel_shap" else {}))
    batch = m.attribute(x, t, feature_mask=mask, samples=z)
    for i, f in ((0, 3), (1, 5)):
        single = m.attribute(x[i:i + 1], t[i:i + 1], feature_mask=mask[i:i + 1],
                             samples=z[i:i + 1, :, :f])
        torch.testing.assert_close(batch[i:i + 1], single, rtol=1e-7, atol=1e-9)  # pinv, 1e6 weights


def test_quickshift_superpixels_follow_the_image():
    img = torch.zeros(1, 3, 32, 32)
    img[:, 0, :, 16:] = 1.0  # red right half
    img[:, 2, :, :16] = 1.0  # blue left half
    ids, n = feature_ids(img, "quickshift")
    assert n.item() >= 2
    left, right = set(ids[0, 0, :, :16].unique().tolist()), set(ids[0, 0, :, 16:].unique().tolist())
    assert not left & right  # no superpixel crosses the colour edge


def test_defaults_scale_with_the_image():
    """Occlusion: a side // 8 window over all channels, stride half of it (Captum needs both
    given); LIME's "auto" features: SLIC below 128 px (lime's quickshift makes 1-3 there)."""
    model, x, t = conv_net(side=16), images(2, 16), torch.tensor([0, 1])
    ours = methods.get("occlusion", model).attribute(x, t)
    ref = CaptumOcclusion(model).attribute(x, sliding_window_shapes=(3, 2, 2), strides=(1, 1, 1),
                                           target=t)
    torch.testing.assert_close(ours, ref.double(), rtol=1e-6, atol=1e-7)
    lime = methods.get("lime", model, n_samples=30)
    torch.testing.assert_close(lime.attribute(x, t), lime.attribute(x, t, feature_mask="slic"))
