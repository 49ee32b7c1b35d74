"""Cascading parameter randomisation (sanity checks): the user's model is never touched, the
cascade runs top-down and cumulatively, model-independent maps stay identical, the
similarity functions are the textbook ones, and the curves agree with Quantus's MPRT where
the definitions coincide."""

import warnings

import numpy as np
import pytest
import torch
from scipy import stats
from skimage.metrics import structural_similarity
from torch import nn

from attrlab import methods, metrics
from attrlab.metrics.randomisation.model_randomisation import (
    SIMILARITIES,
    ModelRandomisation,
    parameterized_modules,
    prepare_maps,
    rebind,
    similarity,
)
from attrlab.models import nib_cnn, resnet8

KINDS = [f"sanity_{k}" for k in SIMILARITIES]


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture
def setup():
    torch.manual_seed(0)
    model = nib_cnn(num_classes=3, width=4)  # 1 x 8 x 8 inputs
    x = torch.randn(5, 1, 8, 8)
    t = torch.tensor([0, 1, 2, 0, 1])
    return model, x, t


class EdgeDetector(methods.Attribution):
    """Ignores the model: horizontal + vertical finite differences of the input."""

    def _attribute(self, inputs, target):
        dx = torch.zeros_like(inputs)
        dy = torch.zeros_like(inputs)
        dx[..., :, 1:] = inputs[..., :, 1:] - inputs[..., :, :-1]
        dy[..., 1:, :] = inputs[..., 1:, :] - inputs[..., :-1, :]
        return dx.abs() + dy.abs()


def test_registered_with_orientation():
    for name in KINDS:
        cls = metrics.metric_class(name)
        assert issubclass(cls, ModelRandomisation)
        assert cls.higher_is_better is False and cls.needs_method is True and cls.fast is False


def test_user_model_state_and_hooks_unchanged(setup):
    model, x, t = setup
    model.train()
    model.features[0].weight.requires_grad_(False)
    calls = []
    handle = model.classifier.register_forward_hook(lambda *_: calls.append(1))
    state = {k: v.clone() for k, v in model.state_dict().items()}
    training = [m.training for m in model.modules()]
    grads = [p.requires_grad for p in model.parameters()]
    hooks = [(dict(m._forward_hooks), dict(m._forward_pre_hooks), dict(m._backward_hooks))
             for m in model.modules()]
    rng = torch.get_rng_state()
    method = methods.Saliency(model)
    a = method.attribute(x, t)
    for name in ("sanity_spearman", "sanity_ssim"):
        for init in ("normal", "reset"):
            scores = metrics.get(name, init=init).evaluate(model, x, t, a, method=method)
            assert scores.shape == (5,) and torch.isfinite(scores).all()
    now = model.state_dict()
    assert all(torch.equal(state[k], now[k]) for k in state)
    assert [m.training for m in model.modules()] == training
    assert [p.requires_grad for p in model.parameters()] == grads
    assert [(dict(m._forward_hooks), dict(m._forward_pre_hooks), dict(m._backward_hooks))
            for m in model.modules()] == hooks
    assert all(p.grad is None for p in model.parameters())
    assert torch.equal(torch.get_rng_state(), rng), "the global RNG was changed"
    assert method.model is model  # the method itself is not re-bound
    handle.remove()


def test_rebind_follows_submethods_and_layer_references(setup):
    model, x, t = setup
    clone = nib_cnn(num_classes=3, width=4)
    nt = methods.NoiseTunnel(model, base="saliency", nt_samples=2)
    cam = methods.GradCAM(model, layer="features.7")
    shap = methods.DeepLiftShap(model, internal_batch_size=7)
    for m in (nt, cam, shap):
        r = rebind(m, clone)
        assert type(r) is type(m) and r.model is clone and m.model is model
    assert rebind(nt, clone).base.model is clone and rebind(nt, clone).nt_samples == 2
    assert rebind(cam, clone).layer is clone.features[7]
    assert rebind(shap, clone).deeplift.model is clone
    assert rebind(shap, clone).internal_batch_size == 7
    with pytest.raises(ValueError, match="structure"):
        rebind(cam, nib_cnn(num_classes=3, width=4, input_size=16).features)


@pytest.mark.parametrize("name", KINDS)
def test_model_independent_method_stays_identical(setup, name):
    model, x, t = setup
    method = EdgeDetector(model)
    a = method.attribute(x, t)
    steps, y = metrics.get(name).curve(model, x, t, a, method=method)
    assert torch.equal(steps, torch.arange(9, dtype=torch.float32))  # original + 8 layers
    assert y.shape == (5, 9)
    torch.testing.assert_close(y, torch.ones_like(y))
    torch.testing.assert_close(metrics.get(name).evaluate(model, x, t, a, method=method),
                               torch.ones(5))


def test_saliency_changes_after_top_layer_randomisation(setup):
    model, x, t = setup
    method = methods.Saliency(model, abs=False)
    a = method.attribute(x, t)
    for name in KINDS:
        metric = metrics.get(name)
        steps, y = metric.curve(model, x, t, a, method=method)
        torch.testing.assert_close(y[:, 0], torch.ones(5))  # deterministic: step 0 is 1
        assert (y[:, 1] < 0.95).all(), (name, y[:, 1])
        assert y[:, 1:].mean() < 0.6, name
        torch.testing.assert_close(metric.evaluate(model, x, t, a, method=method),
                                   y[:, 1:].mean(1))
    # reproducible (seeded) and seed-dependent
    _, y1 = metrics.get("sanity_pearson", seed=3).curve(model, x, t, a, method=method)
    _, y2 = metrics.get("sanity_pearson", seed=3).curve(model, x, t, a, method=method)
    _, y3 = metrics.get("sanity_pearson", seed=4).curve(model, x, t, a, method=method)
    assert torch.equal(y1, y2) and not torch.equal(y1, y3)


def test_cascade_is_top_down_and_cumulative():
    torch.manual_seed(0)
    model = nib_cnn(num_classes=3, width=4)
    x = torch.randn(2, 1, 8, 8)
    metric = metrics.get("sanity_spearman")
    assert metric.cascade_layers(model, x) == [
        "classifier.3", "classifier.1", "features.8", "features.7", "features.4",
        "features.3", "features.1", "features.0"]
    # forward (call) order: the shortcut of a ResNet block runs before conv1 although it is
    # registered after bn2; registration order is available as an option (Quantus's order)
    r = resnet8(num_classes=3, in_channels=1, width=2)
    xr = torch.randn(1, 1, 8, 8)
    top = metrics.get("sanity_spearman").cascade_layers(r, xr)[:7]
    assert top == ["fc", "layer3.0.bn2", "layer3.0.conv2", "layer3.0.bn1", "layer3.0.conv1",
                   "layer3.0.downsample.1", "layer3.0.downsample.0"]
    reg = metrics.get("sanity_spearman", order="registration").cascade_layers(r, xr)[:7]
    assert reg == ["fc", "layer3.0.downsample.1", "layer3.0.downsample.0", "layer3.0.bn2",
                   "layer3.0.conv2", "layer3.0.bn1", "layer3.0.conv1"]
    assert parameterized_modules(r, None) == parameterized_modules(r, xr, "registration")
    # restricted, block-wise cascade: randomisation is cumulative and top-down
    metric = metrics.get("sanity_spearman", layers=["layer1", "fc", "conv1"])
    assert metric.cascade_layers(r, xr) == ["fc", "layer1", "conv1"]
    orig = {k: v.clone() for k, v in r.state_dict().items()}
    changed = []
    for name, bound in metric.randomized(methods.Saliency(r), xr):
        assert bound.model is not r
        now = bound.model.state_dict()
        changed.append((name, sorted({k.split(".")[0] for k in orig
                                      if not torch.equal(orig[k], now[k])})))
    assert changed == [("original", []), ("fc", ["fc"]), ("layer1", ["fc", "layer1"]),
                       ("conv1", ["conv1", "fc", "layer1"])]
    assert all(torch.equal(orig[k], v) for k, v in r.state_dict().items())
    # init="normal" draws N(0, std) for every parameter of the layer (paper 03, 4.2)
    big = nn.Sequential(nn.Linear(200, 300))
    bound = dict(metrics.get("sanity_spearman", std=0.5).randomized(methods.Saliency(big)))
    w = bound["0"].model[0].weight.detach()
    assert abs(float(w.std()) - 0.5) < 0.02 and abs(float(w.mean())) < 0.02
    # each layer gets its own seed (seed + step); same_seed=True reseeds every layer alike
    # (Quantus's convention): the two BatchNorms of nib_cnn (4 channels each) then coincide
    for same, equal in ((False, False), (True, True)):
        metric = metrics.get("sanity_spearman", same_seed=same)
        final = list(metric.randomized(methods.Saliency(model), x))[-1][1].model
        assert torch.equal(final.features[1].weight, final.features[4].weight) is equal
    with pytest.raises(ValueError, match="unknown layer"):
        metrics.get("sanity_ssim", layers=["nope"]).cascade_layers(r, xr)


def test_similarity_functions_match_scipy_and_skimage():
    gen = torch.Generator().manual_seed(1)
    a = torch.randn(3, 2, 8, 8, generator=gen)
    b = a + 0.7 * torch.randn(3, 2, 8, 8, generator=gen)
    pa = prepare_maps(a)
    assert pa.shape == (3, 8, 8)
    for i in range(3):
        ma = a[i].double().sum(0).numpy()
        mb = b[i].double().sum(0).numpy()
        ma, mb = ma / np.abs(ma).max(), mb / np.abs(mb).max()  # range [-1, 1], paper 03 4.2
        np.testing.assert_allclose(pa[i], ma, rtol=1e-12)
        assert np.abs(pa[i]).max() == 1.0
        rng = max(ma.max(), mb.max()) - min(ma.min(), mb.min())
        want = {
            "spearman": stats.spearmanr(ma.ravel(), mb.ravel()).statistic,
            "spearman_abs": stats.spearmanr(np.abs(ma).ravel(), np.abs(mb).ravel()).statistic,
            "pearson": stats.pearsonr(ma.ravel(), mb.ravel()).statistic,
            "ssim": structural_similarity(ma, mb, win_size=7, data_range=rng),
        }
        for kind, value in want.items():
            got = similarity(a, b, kind)[i]
            assert abs(float(got) - value) < 1e-6, (kind, float(got), value)
            assert 0.01 < abs(value) < 0.99  # a non-trivial pair
    # ties: spearman uses average ranks like scipy
    ta = torch.tensor([[[[1.0, 1.0, 2.0], [0.0, 0.0, 3.0], [1.0, 2.0, 2.0]]]])
    tb = torch.tensor([[[[2.0, 1.0, 2.0], [0.0, 1.0, 3.0], [1.0, 0.0, 2.0]]]])
    want = stats.spearmanr(ta.ravel().numpy(), tb.ravel().numpy()).statistic
    assert abs(float(similarity(ta, tb, "spearman")[0]) - want) < 1e-6
    # SSIM window shrinks to fit small maps; constant maps: 1 if identical, else 0
    small = torch.randn(2, 1, 5, 5, generator=gen)
    m5 = prepare_maps(small)
    other = prepare_maps(small.flip(-1))
    want = structural_similarity(m5[0], other[0], win_size=5,
                                 data_range=max(m5[0].max(), other[0].max())
                                 - min(m5[0].min(), other[0].min()))
    assert abs(float(similarity(small, small.flip(-1), "ssim")[0]) - want) < 1e-6
    zero, ones = torch.zeros(1, 1, 8, 8), torch.ones(1, 1, 8, 8)
    for kind in SIMILARITIES:
        assert float(similarity(zero, zero, kind)[0]) == 1.0
        assert float(similarity(ones, 3 * ones, kind)[0]) == 1.0  # equal after normalising
        if kind != "ssim":  # a correlation with a constant map is undefined: 0
            assert float(similarity(zero, a[:1, :1], kind)[0]) == 0.0


# ---------------------------------------------------------------------------------------------
# Quantus's MPRT
# ---------------------------------------------------------------------------------------------


def _quantus_mprt(quantus, model, x, t, explain, similarity_func, abs_, seed, **kw):
    q = quantus.MPRT(similarity_func=similarity_func, layer_order="top_down", seed=seed,
                     abs=abs_, normalise=True, disable_warnings=True, **kw)
    with torch.random.fork_rng(), warnings.catch_warnings():  # Quantus reseeds the global RNG
        warnings.simplefilter("ignore")
        return q(model=model, x_batch=x.numpy(), y_batch=t.numpy(), a_batch=None,
                 explain_func=explain, device="cpu")


def test_agrees_with_quantus_mprt(setup):
    quantus = pytest.importorskip("quantus")
    sim = quantus.similarity_func
    model, x, t = setup

    def explain(model, inputs, targets, **_):
        return methods.Saliency(model, abs=False).attribute(
            torch.as_tensor(inputs), torch.as_tensor(targets)).numpy()

    method = methods.Saliency(model, abs=False)
    a = method.attribute(x, t)
    # same randomised models: reset_parameters() under torch.manual_seed(quantus seed + 1) for
    # every layer, layers in reverse named_modules order
    ours = dict(init="reset", seed=43, same_seed=True, order="registration")
    for kind, func, abs_ in (("spearman", sim.correlation_spearman, False),
                             ("spearman_abs", sim.correlation_spearman, True),
                             ("pearson", sim.correlation_pearson, False)):
        q = _quantus_mprt(quantus, model, x, t, explain, func, abs_, seed=42)
        metric = metrics.get(f"sanity_{kind}", **ours)
        assert list(q) == ["original"] + metric.cascade_layers(model, x)
        _, y = metric.curve(model, x, t, a, method=method)
        np.testing.assert_allclose(np.array([q[k] for k in q]).T, y.numpy(), atol=1e-6)
        assert y[:, 1:].lt(0.99).any()  # a real test: similarities actually drop
    # Quantus's "average" includes the unrandomised entry (its loop skips a key "orig" that
    # does not exist); our score averages the K randomised steps only
    avg = _quantus_mprt(quantus, model, x, t, explain, sim.correlation_spearman, False, seed=42,
                        return_average_correlation=True)
    _, y = metrics.get("sanity_spearman", **ours).curve(model, x, t, a, method=method)
    np.testing.assert_allclose(avg, y.mean(1).numpy(), atol=1e-6)
    assert not np.allclose(avg, y[:, 1:].mean(1).numpy(), atol=1e-3)


def test_quantus_model_independent_and_similarity_functions(setup):
    quantus = pytest.importorskip("quantus")
    sim = quantus.similarity_func
    model, x, t = setup

    def explain(model, inputs, targets, **_):
        return EdgeDetector(model).attribute(torch.as_tensor(inputs),
                                             torch.as_tensor(targets)).numpy()

    q = _quantus_mprt(quantus, model, x, t, explain, sim.correlation_spearman, True, seed=0)
    np.testing.assert_allclose(np.array([q[k] for k in q]), 1.0, atol=1e-6)
    method = EdgeDetector(model)
    _, y = metrics.get("sanity_spearman_abs").curve(model, x, t, method.attribute(x, t),
                                                    method=method)
    np.testing.assert_allclose(y.numpy(), 1.0, atol=1e-6)
    # the similarity functions agree on fixed pairs of (normalised) maps
    gen = torch.Generator().manual_seed(2)
    a = torch.randn(4, 1, 8, 8, generator=gen)
    b = a + torch.randn(4, 1, 8, 8, generator=gen)
    pa, pb = prepare_maps(a), prepare_maps(b)
    fa, fb = pa.reshape(4, -1), pb.reshape(4, -1)
    np.testing.assert_allclose(sim.correlation_spearman(fa, fb, batched=True),
                               similarity(a, b, "spearman").numpy(), atol=1e-6)
    np.testing.assert_allclose(sim.correlation_spearman(np.abs(fa), np.abs(fb), batched=True),
                               similarity(a, b, "spearman_abs").numpy(), atol=1e-6)
    np.testing.assert_allclose(sim.correlation_pearson(fa, fb, batched=True),
                               similarity(a, b, "pearson").numpy(), atol=1e-6)
    # SSIM: same on 2-D maps (same data_range convention) ...
    ours = similarity(a, b, "ssim").numpy()
    np.testing.assert_allclose([sim.ssim(pa[i], pb[i]) for i in range(4)], ours, atol=1e-6)
    # ... but MPRT hands SSIM flattened 1-D rows, a different quantity
    flat = np.array(sim.ssim(fa, fb, batched=True))
    assert np.abs(flat - ours).max() > 1e-3
