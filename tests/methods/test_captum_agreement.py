"""attrlab agrees with Captum, method by method, on two realistic networks.

Models (built once per module, float64 so that the tolerances can be tight):

* ``resnet18``: a random-init torchvision ResNet-18 (10 classes, 32x32 inputs) whose BatchNorm
  layers got random running statistics and affine parameters, so that every BN has a
  non-trivial implied bias (the case where attribution methods usually differ).
* ``nib_vgg16``: ``attrlab.models.nib_vgg("16", width=0.125)``, its ``BiasFreeBatchNorm2d``
  running variances populated by train-mode passes on random data.

Tolerances are relative to the scale of the map (``max |expected|``): see :func:`agree`.
Unless a comment says otherwise, both libraries evaluate the same float64 formula with the
same operations and can differ only in summation order (autograd reductions, chunked sums):
float64's unit roundoff is 1.1e-16, and a reduction over the ~5e3 terms of a conv/linear
layer, repeated through ~20 layers, reorders to at most ~1e-12 of the map's scale. ``EXACT =
1e-10`` keeps a 100x margin and is still 10^4 times tighter than anything float32 or a
different formula would produce.

Captum quirks found while writing these tests (attrlab is right in each case, see the tests):

1. ``DeepLift``/``DeepLiftShap`` raise on torchvision's ResNet, whose ``BasicBlock`` calls one
   ``ReLU`` module twice. We compare against a functionally identical copy with one ReLU
   module per call.
2. ``DeepLift`` silently skips its max-pool rule when the max-pool's input is the very
   tensor a hooked ReLU returned (VGG's and ResNet's ReLU -> MaxPool): both of Captum's tensor
   hooks land on that one tensor and the ReLU records its ``grad_output`` before the max-pool
   hook replaced it, so the plain max-pool gradient is used. With a non-constant baseline
   summation-to-delta then fails. The Captum copies insert a ``clone`` before each max-pool.
3. Captum's max-pool rule scatters with ``max_unpool`` which overwrites where overlapping
   windows (ResNet's 3x3/stride-2 stem pool) share an argmax; attrlab accumulates as the
   chain rule requires. ResNet-18 DeepLIFT is therefore compared exactly on the network after
   the stem pool, and attrlab's full-model completeness is asserted separately.
4. ``riemann_trapezoid`` uses step 1/n instead of 1/(n-1) (its weights sum to (n-1)/n).
5. ``IntegratedGradients`` casts its quadrature weights to float32 (``.float()``).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np
import pytest
import torch
import torchvision
from captum.attr import (
    DeepLift,
    DeepLiftShap,
    GuidedBackprop,
    InputXGradient,
    IntegratedGradients,
    LayerGradCam,
    NoiseTunnel,
    Saliency,
)
from torch import Tensor, nn
from zoo_helpers import resnet18_random_bn

from attrlab import methods
from attrlab.models import nib_vgg

pytestmark = pytest.mark.filterwarnings(r"ignore::UserWarning:captum\..*")

EXACT = 1e-10  # same float64 formula, different summation order only (module docstring)
N_STEPS = 8  # IG steps: agreement does not depend on n; 8 keeps ResNet-18 in float64 fast
NT = dict(nt_samples=6, stdevs=0.2)


@pytest.fixture(autouse=True, scope="module")
def _float64_default():
    """Captum creates some tensors in the default dtype: NoiseTunnel's noise std
    (``torch.tensor(stdev)``, so its noise would be drawn in float32) and the Riemann
    positions (``torch.linspace(...).tolist()``). float64 inputs need a float64 default."""
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(old)


def agree(actual: Tensor, expected: Tensor, rel: float, what: str = "") -> float:
    """Assert max|actual - expected| <= rel * max|expected| (same shape); return the
    observed max abs difference (printed, visible with ``pytest -s``)."""
    assert actual.shape == expected.shape, (actual.shape, expected.shape)
    assert actual.dtype == expected.dtype == torch.float64
    scale = expected.abs().max().item()
    assert scale > 0, "degenerate comparison: the expected map is all zero"
    diff = (actual - expected).abs().max().item()
    print(f"{what}: max|diff| = {diff:.3g}  (scale {scale:.3g}, rel {diff / scale:.3g})")
    assert diff <= rel * scale, f"{what}: max|diff| {diff:.3g} > {rel:g} * scale {scale:.3g}"
    return diff


def half_zero(x: Tensor, baseline: Tensor) -> Tensor:
    """Per-sample baselines: zero for the first half of the batch, ``baseline`` for the rest
    (one call then covers the zero and the random baseline)."""
    k = x.shape[0] // 2
    return torch.cat([torch.zeros_like(x[:k]), baseline[k:]])


# ---------------------------------------------------------------------------------------------
# Models
# ---------------------------------------------------------------------------------------------


class SplitReluBlock(nn.Module):
    """torchvision ``BasicBlock`` with one ``ReLU`` module per call (the original calls its
    single ``self.relu`` twice, which Captum's DeepLIFT cannot hook). Same function."""

    def __init__(self, block: torchvision.models.resnet.BasicBlock) -> None:
        super().__init__()
        self.conv1, self.bn1, self.conv2, self.bn2 = block.conv1, block.bn1, block.conv2, block.bn2
        self.downsample = block.downsample
        self.relu1, self.relu2 = nn.ReLU(), nn.ReLU()

    def forward(self, x: Tensor) -> Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu1(self.bn1(self.conv1(x)))
        return self.relu2(self.bn2(self.conv2(out)) + identity)


class Fresh(nn.Module):
    """Identity returning a new tensor: keeps Captum's hook on a max-pool's input off the
    tensor that the preceding ReLU returned (Captum quirk 2 in the module docstring)."""

    def forward(self, x: Tensor) -> Tensor:
        return x.clone()


def captum_ready(model: nn.Module) -> nn.Module:
    """Deep copy computing the same function that Captum's DeepLIFT can hook correctly:
    distinct ReLU modules per call and a ``Fresh`` step before every max-pool."""
    c = copy.deepcopy(model)
    for parent in list(c.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, torchvision.models.resnet.BasicBlock):
                setattr(parent, name, SplitReluBlock(child))
            elif isinstance(child, nn.MaxPool2d):
                setattr(parent, name, nn.Sequential(Fresh(), child))
    return c.eval()


def resnet18_random_bn_double() -> nn.Module:
    with torch.random.fork_rng():
        return resnet18_random_bn(0.1, affine_bias_std=0.1).double().eval()


def nib_vgg16_warmed() -> nn.Module:
    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = nib_vgg("16", width=0.125).double().train()
        with torch.no_grad():
            for _ in range(3):
                model(torch.randn(16, 3, 32, 32, dtype=torch.float64))
    return model.eval()


@dataclass
class Case:
    name: str
    model: nn.Module  # the original model: attrlab always runs on it
    x: Tensor  # (4, 3, 32, 32) float64
    target: Tensor  # per-sample targets
    baseline: Tensor  # one random baseline per sample, shaped like x
    baselines3: Tensor  # a batch of 3 random baselines (3, 3, 32, 32)
    gradcam_layer: str
    # DeepLIFT / DeepSHAP: the network compared exactly, its Captum-ready copy, its inputs,
    # a random baseline and a batch of 3 random baselines (ResNet-18: the network after the
    # stem max-pool, see Captum quirk 3; NIB VGG: the whole model).
    dl_model: nn.Module
    dl_captum: nn.Module
    dl_x: Tensor
    dl_baseline: Tensor
    dl_baselines3: Tensor


def _data(seed: int):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(4, 3, 32, 32, generator=g, dtype=torch.float64)
    baseline = 0.5 * torch.randn(4, 3, 32, 32, generator=g, dtype=torch.float64)
    baselines3 = 0.5 * torch.randn(3, 3, 32, 32, generator=g, dtype=torch.float64)
    return x, baseline, baselines3


@pytest.fixture(scope="module")
def resnet_case() -> Case:
    model = resnet18_random_bn_double()
    x, baseline, baselines3 = _data(1)
    stem = nn.Sequential(model.conv1, model.bn1, model.relu, model.maxpool)
    tail = nn.Sequential(model.layer1, model.layer2, model.layer3, model.layer4,
                         model.avgpool, nn.Flatten(), model.fc)
    ready = captum_ready(model)
    ready_tail = nn.Sequential(ready.layer1, ready.layer2, ready.layer3, ready.layer4,
                               ready.avgpool, nn.Flatten(), ready.fc)
    with torch.no_grad():
        # the copies compute exactly the same function (same ops in the same order)
        torch.testing.assert_close(ready(x), model(x), rtol=0, atol=0)
        torch.testing.assert_close(tail(stem(x)), model(x), rtol=0, atol=0)
        z, z0, z3 = stem(x), stem(baseline), stem(baselines3)
    return Case("resnet18", model, x, torch.tensor([0, 3, 5, 9]), baseline, baselines3,
                "layer4", tail, ready_tail, z, z0, z3)


@pytest.fixture(scope="module")
def vgg_case() -> Case:
    model = nib_vgg16_warmed()
    x, baseline, baselines3 = _data(2)
    ready = captum_ready(model)
    with torch.no_grad():
        torch.testing.assert_close(ready(x), model(x), rtol=0, atol=0)
    last_conv = [n for n, m in model.named_modules() if isinstance(m, nn.Conv2d)][-1]
    return Case("nib_vgg16", model, x, torch.tensor([1, 2, 7, 4]), baseline, baselines3,
                last_conv, model, ready, x, baseline, baselines3)


CASE_FIXTURES = {"resnet18": "resnet_case", "nib_vgg16": "vgg_case"}


@pytest.fixture(scope="module", params=list(CASE_FIXTURES))
def case(request) -> Case:
    return request.getfixturevalue(CASE_FIXTURES[request.param])


# ---------------------------------------------------------------------------------------------
# Gradient methods
# ---------------------------------------------------------------------------------------------


def test_saliency(case):
    m, x, t = case.model, case.x, case.target
    # abs=True is the default of both; per-sample target tensor
    agree(methods.get("saliency", m).attribute(x, t),
          Saliency(m).attribute(x, target=t), EXACT, f"{case.name} saliency")
    # signed gradient; one int target for the whole batch
    agree(methods.get("saliency", m, abs=False).attribute(x, 3),
          Saliency(m).attribute(x, target=3, abs=False), EXACT, f"{case.name} saliency signed")


def test_gradient_x_input(case):
    m, x = case.model, case.x
    agree(methods.get("gxi", m).attribute(x, case.target.tolist()),
          InputXGradient(m).attribute(x, target=case.target), EXACT, f"{case.name} gxi")


def test_predicted_class_target(case):
    """target=None is attrlab's predicted class; Captum needs it spelled out."""
    m, x = case.model, case.x
    with torch.no_grad():
        pred = m(x).argmax(1)
    agree(methods.get("gxi", m).attribute(x, None),
          InputXGradient(m).attribute(x, target=pred), EXACT, f"{case.name} gxi target=None")


def _path_gradients(model: nn.Module, x: Tensor, base: Tensor, alphas: Tensor,
                    target: Tensor) -> Tensor:
    """Signed input gradients at x' + a (x - x') for each alpha, shape (n_steps,) + x.shape,
    in one batch (attrlab's signed saliency, itself checked against Captum above)."""
    path = (base.unsqueeze(0) + alphas.view(-1, 1, 1, 1, 1) * (x - base).unsqueeze(0))
    grads = methods.get("saliency", model, abs=False).attribute(
        path.flatten(0, 1), target.repeat(len(alphas)))
    return grads.view((len(alphas),) + x.shape)


@pytest.mark.parametrize("rule", ["gausslegendre", "riemann_trapezoid", "riemann_left"])
def test_integrated_gradients(case, rule):
    m, x, t = case.model, case.x, case.target
    base = half_zero(x, case.baseline)  # samples 0-1: zero baseline, 2-3: random
    ig = methods.get("ig", m, n_steps=N_STEPS, method=rule)
    ours = ig.attribute(x, t, baselines=base)
    theirs = IntegratedGradients(m).attribute(x, baselines=base, target=t, n_steps=N_STEPS,
                                              method=rule)
    what = f"{case.name} ig {rule}"
    if rule == "riemann_left":
        # positions k/n and weights 1/n are exact in binary: same formula
        agree(ours, theirs, EXACT, what)
    elif rule == "riemann_trapezoid":
        # Captum's trapezoid weights are (1/2, 1, ..., 1, 1/2) / n: they sum to (n-1)/n, not 1
        # (a linear model would not get f(x) - f(x')). attrlab's are / (n-1), as the
        # trapezoid rule on n points of [0, 1] requires. Same positions, so the maps differ
        # exactly by the factor n/(n-1).
        agree(ours, theirs * (N_STEPS / (N_STEPS - 1)), EXACT, what)
    else:
        # Captum rounds the Gauss-Legendre weights w_k to float32 (``.float()``), a relative
        # error |e_k| <= 2^-24 each, so |captum - exact| <= 2^-24 |x - x'| sum_k w_k |g_k|
        # elementwise (g_k the path gradients), plus float64 roundoff.
        nodes, weights = np.polynomial.legendre.leggauss(N_STEPS)
        alphas, w = torch.tensor(0.5 * (nodes + 1)), torch.tensor(0.5 * weights)
        g = _path_gradients(m, x, base, alphas, t)
        wabs = (w.view(-1, 1, 1, 1, 1) * g.abs()).sum(0)
        bound = 2.0 ** -24 * (x - base).abs() * wabs + EXACT * theirs.abs().max()
        diff = (ours - theirs).abs()
        print(f"{what}: max|diff| = {diff.max().item():.3g} (bound {bound.max().item():.3g})")
        assert (diff <= bound).all(), f"{what}: max excess {(diff - bound).max().item():.3g}"
        # and the map is still equal to Captum's far below any algorithmic difference
        agree(ours, theirs, 1e-6, what)
        # chunking the path rows changes only the summation order over the steps. Samples
        # are independent, so two of them suffice: 7 rows -> 3 steps of 2 samples per chunk,
        # chunks of 3, 3 and 2 steps.
        agree(ig.attribute(x[2:], t[2:], baselines=base[2:], internal_batch_size=7), ours[2:],
              EXACT, f"{what} internal_batch_size=7 vs None")


# ---------------------------------------------------------------------------------------------
# Modified backpropagation
# ---------------------------------------------------------------------------------------------


def test_guided_backprop(case):
    # Captum's GBP hooks ReLU modules and only rewrites grad_input, so the reused in-place
    # ReLU of ResNet's BasicBlock is fine for it: compare on the original model.
    m, x, t = case.model, case.x, case.target
    agree(methods.get("gbp", m).attribute(x, t), GuidedBackprop(m).attribute(x, target=t),
          EXACT, f"{case.name} gbp")


def test_deeplift(case):
    ours_m, theirs_m, x, t = case.dl_model, case.dl_captum, case.dl_x, case.target
    base = half_zero(x, case.dl_baseline)
    ours, delta = methods.get("deeplift", ours_m).attribute(x, t, baselines=base,
                                                            return_convergence_delta=True)
    theirs = DeepLift(theirs_m).attribute(x, baselines=base, target=t)
    agree(ours, theirs, EXACT, f"{case.name} deeplift zero (samples 0-1) / random baselines")
    # summation-to-delta: sum(attr) = f_t(x) - f_t(x'), float64 roundoff only
    assert delta.abs().max() <= EXACT * ours.flatten(1).sum(1).abs().max(), delta


def test_deepshap(case):
    ours_m, theirs_m, x, t = case.dl_model, case.dl_captum, case.dl_x, case.target
    ds = methods.get("deepshap", ours_m)
    ours, delta = ds.attribute(x, t, baselines=case.dl_baselines3, return_convergence_delta=True)
    theirs = DeepLiftShap(theirs_m).attribute(x, baselines=case.dl_baselines3, target=t)
    agree(ours, theirs, EXACT, f"{case.name} deepshap")
    assert delta.abs().max() <= EXACT * ours.flatten(1).sum(1).abs().max(), delta


def test_deeplift_resnet18_full_model_is_complete(resnet_case):
    """On the whole ResNet-18 (original, reused in-place ReLUs, overlapping stem max-pool)
    attrlab's DeepLIFT satisfies summation-to-delta, sum(attr) = f_t(x) - f_t(x').

    Captum cannot: on the Captum-ready copy its max_unpool drops the contributions of stem-pool
    windows that share an argmax. Measured with these data (|f_t(x) - f_t(x')| <= 1.16,
    attributions of max ~0.07): Captum's |delta| reaches 0.87 (zero baseline) and 0.51
    (random baseline), DeepLiftShap's 0.75; attrlab's stays ~2e-15. On the copy without the
    ``Fresh`` step (Captum quirk 2) Captum's delta is ~0 at the zero baseline only by luck (a
    constant baseline makes the plain max-pool gradient complete) and 0.28 at the random one.
    """
    m, x, t = resnet_case.model, resnet_case.x, resnet_case.target
    attr, delta = methods.get("deeplift", m).attribute(
        x, t, baselines=half_zero(x, resnet_case.baseline), return_convergence_delta=True)
    assert delta.abs().max() <= EXACT * attr.flatten(1).sum(1).abs().max(), delta


def test_deeplift_overlapping_maxpool_accumulates():
    """Two overlapping 3x3/stride-2 windows share their argmax: the chain rule adds both
    contributions. f(x) = sum_o w_o maxpool(x)_o with x = 5 at (1, 1) and 0 elsewhere is
    5 (w_0 + w_1 + w_3 + w_4) = 60 at the zero baseline, all of it on pixel (1, 1).
    (Captum's DeepLift gives 25 there: max_unpool keeps only one window's weight.)"""
    conv = nn.Conv2d(1, 1, 1, bias=False).double()
    lin = nn.Linear(9, 1, bias=False).double()
    with torch.no_grad():
        conv.weight.fill_(1.0)
        lin.weight.copy_(torch.arange(1.0, 10.0).view(1, 9))
    model = nn.Sequential(conv, nn.MaxPool2d(3, 2, 1), nn.Flatten(), lin).eval()
    x = torch.zeros(1, 1, 5, 5, dtype=torch.float64)
    x[0, 0, 1, 1] = 5.0
    attr, delta = methods.get("deeplift", model).attribute(x, 0, return_convergence_delta=True)
    expected = torch.zeros_like(x)
    expected[0, 0, 1, 1] = 60.0
    torch.testing.assert_close(attr, expected, rtol=0, atol=1e-12)
    assert delta.abs().max() <= 1e-12


def test_captum_deeplift_fails_on_reused_relu(resnet_case):
    """Known Captum limitation that attrlab lifts: torchvision's BasicBlock calls one ReLU
    module twice and Captum's DeepLift raises. (On a deep copy: Captum may leave hook
    attributes behind when it raises.)"""
    m = copy.deepcopy(resnet_case.model)
    with pytest.raises(Exception):
        DeepLift(m).attribute(resnet_case.x, target=resnet_case.target)
    # attrlab handles the original model (its values: test_deeplift_resnet18_full_model...)


# ---------------------------------------------------------------------------------------------
# Grad-CAM
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("relu", [False, True])
def test_gradcam(case, relu):
    m, x, t = case.model, case.x, case.target
    layer = dict(m.named_modules())[case.gradcam_layer]
    ours = methods.get("gradcam", m, layer=case.gradcam_layer,
                       relu_attributions=relu).layer_attribute(x, t)
    theirs = LayerGradCam(m, layer).attribute(x, target=t, relu_attributions=relu)
    agree(ours, theirs, EXACT, f"{case.name} gradcam({case.gradcam_layer}) relu={relu}")


# ---------------------------------------------------------------------------------------------
# SmoothGrad / NoiseTunnel
# ---------------------------------------------------------------------------------------------

_CAPTUM_BASE = {"saliency": Saliency, "gxi": InputXGradient}


def _smoothgrad_pair(case, base, nt_type, batch, seed=7, x=None, model=None):
    m = case.model if model is None else model
    x = case.x if x is None else x
    ours = methods.get("smoothgrad", m, base=base, nt_type=nt_type, nt_samples_batch_size=batch,
                       **NT).attribute(x, case.target,
                                       generator=torch.Generator().manual_seed(seed))
    torch.manual_seed(seed)
    theirs = NoiseTunnel(_CAPTUM_BASE[base](m)).attribute(
        x, nt_type=nt_type, target=case.target, nt_samples_batch_size=batch, **NT)
    return ours, theirs


# The nt_type reductions (mean, mean of squares, variance) are model-independent arithmetic on
# the same base maps; the model only enters through the base method. So every combination runs
# on the cheap NIB VGG, and ResNet-18 (whose float64 passes cost ~10x more) runs saliency with
# smoothgrad here and with vargrad (which needs both sums) in test_smoothgrad_chunked.
@pytest.mark.parametrize("model_name,base,nt_type", [
    ("nib_vgg16", "saliency", "smoothgrad"),
    ("nib_vgg16", "saliency", "smoothgrad_sq"),
    ("nib_vgg16", "saliency", "vargrad"),
    ("nib_vgg16", "gxi", "smoothgrad"),
    ("nib_vgg16", "gxi", "vargrad"),
    ("resnet18", "saliency", "smoothgrad"),
])
def test_smoothgrad(request, model_name, base, nt_type):
    # Same seed, same noise (one torch.normal over the repeat_interleave'd batch), same base
    # maps: only the summation order of the sample means differs. vargrad is
    # E[a^2] - E[a]^2 in both, whose cancellation loses at most a factor E[a^2] / Var(a) of
    # relative precision: still far below EXACT here.
    case = request.getfixturevalue(CASE_FIXTURES[model_name])
    ours, theirs = _smoothgrad_pair(case, base, nt_type, None)
    agree(ours, theirs, EXACT, f"{case.name} smoothgrad base={base} nt_type={nt_type}")


def test_smoothgrad_chunked(case):
    # nt_samples=6 in chunks of 4: Captum draws a 4-sample noise batch then a 2-sample one,
    # attrlab the same chunks in the same order, so the RNG streams still coincide.
    ours, theirs = _smoothgrad_pair(case, "saliency", "vargrad", 4)
    agree(ours, theirs, EXACT, f"{case.name} smoothgrad chunks of 4")


def test_smoothgrad_float32_noise_matches(vgg_case):
    """The common float32 case (float32 model, inputs and default dtype): same noise, same
    maps up to float32 roundoff (unit 6e-8; the maps are sums over ~1e3-term reductions
    and 6 samples, and both libraries use the same kernels, so 1e-5 of the scale)."""
    model = copy.deepcopy(vgg_case.model).float()
    x = vgg_case.x.float()
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float32)
    try:
        ours, theirs = _smoothgrad_pair(vgg_case, "saliency", "smoothgrad", None, x=x,
                                        model=model)
    finally:
        torch.set_default_dtype(old)
    assert ours.dtype == theirs.dtype == torch.float32
    diff = (ours - theirs).abs().max().item()
    print(f"nib_vgg16 smoothgrad float32: max|diff| = {diff:.3g}")
    assert diff <= 1e-5 * theirs.abs().max().item()
