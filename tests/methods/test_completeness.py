"""Axioms: completeness on no-implicit-bias (NIB) nets, paper 01 Appendix A, and FullGrad/UFG
completeness on a biased torchvision ResNet."""

import pytest
import torch
from torch import nn
from zoo_helpers import resnet18_random_bn

from attrlab import methods
from attrlab.models import nib_cnn, nib_vgg


def warmed(model, shape, seed=0):
    """Populate BatchNorm running statistics with a few train-mode passes, then eval, float64."""
    torch.manual_seed(seed)
    model.train()
    with torch.no_grad():
        for _ in range(3):
            model(torch.randn(16, *shape))
    return model.eval().double()


@pytest.fixture(scope="module", params=["nib_vgg16", "nib_vgg13-6", "nib_cnn"])
def nib(request):
    if request.param == "nib_cnn":
        return warmed(nib_cnn(), (1, 8, 8)), (1, 8, 8)
    depth = request.param.split("vgg")[1]
    return warmed(nib_vgg(depth, width=0.125), (3, 32, 32)), (3, 32, 32)


def test_gxi_ig_deeplift_sum_to_the_logit_and_coincide(nib):
    """On a NIB net f(0) = 0 and f is positively homogeneous, so GxI, IG (zero baseline) and
    DeepLIFT (zero baseline) each sum to f_t(x), and are equal element-wise (paper 01 App. A)."""
    model, shape = nib
    torch.manual_seed(1)
    x = torch.randn(4, *shape, dtype=torch.float64)
    t = torch.tensor([0, 3, 5, 9])
    logit = model(x)[torch.arange(4), t]
    gxi = methods.get("gxi", model).attribute(x, t)
    ig = methods.get("ig", model, n_steps=8).attribute(x, t)
    dl = methods.get("deeplift", model).attribute(x, t)
    for a in (gxi, ig, dl):
        torch.testing.assert_close(a.flatten(1).sum(1), logit, rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(ig, gxi, rtol=1e-9, atol=1e-12)
    torch.testing.assert_close(dl, gxi, rtol=1e-9, atol=1e-12)
    # UFG has no bias terms to spread on a NIB net: it is exactly G x I
    torch.testing.assert_close(methods.get("ufg", model).attribute(x, t), gxi)


def test_completeness_fails_with_implicit_bias():
    """The same identity breaks once biases are added back (LB + BNB), so the test above
    can fail; IG and DeepLIFT still satisfy sum = f(x) - f(0)."""
    model = warmed(nib_vgg("13-6", width=0.125, layer_bias=True, bn_bias=True), (3, 32, 32))
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                m.bias.normal_(0, 0.1)
    torch.manual_seed(2)
    x = torch.randn(3, 3, 32, 32, dtype=torch.float64)
    t = torch.tensor([1, 2, 3])
    logit = model(x)[torch.arange(3), t]
    f0 = model(torch.zeros_like(x))[torch.arange(3), t]
    gxi = methods.get("gxi", model).attribute(x, t).flatten(1).sum(1)
    assert (gxi - logit).abs().max() > 1e-3
    ig, d_ig = methods.get("ig", model, n_steps=64).attribute(x, t, return_convergence_delta=True)
    dl, d_dl = methods.get("deeplift", model).attribute(x, t, return_convergence_delta=True)
    torch.testing.assert_close(dl.flatten(1).sum(1), logit - f0, rtol=1e-9, atol=1e-9)
    assert d_dl.abs().max() < 1e-9
    # IG's delta is a quadrature error only: small next to the logits themselves
    assert d_ig.abs().max() < 0.01 * logit.abs().max()


@pytest.fixture(scope="module")
def biased_resnet():
    return resnet18_random_bn(0.2, affine_bias_std=0.2).eval().double()


def test_fullgrad_and_ufg_completeness_on_resnet18(biased_resnet):
    """f(x) = sum(x * grad) + sum of all bias-gradient terms (incl. BatchNorm's implied bias),
    and UFG sums to f(x), on a ResNet with reused in-place ReLUs."""
    torch.manual_seed(3)
    x = torch.randn(2, 3, 32, 32, dtype=torch.float64)
    t = torch.tensor([4, 7])
    logit = biased_resnet(x)[torch.arange(2), t]
    terms = methods.get("fullgrad", biased_resnet).decompose(x, t)
    total = terms.input_term.flatten(1).sum(1) + sum(b.flatten(1).sum(1) for b in terms.bias_terms)
    torch.testing.assert_close(total, logit, rtol=1e-9, atol=1e-9)
    assert len(terms.bias_terms) == 21  # 20 BatchNorms + the fc bias
    bias_share = sum(b.flatten(1).sum(1) for b in terms.bias_terms).abs()
    assert (bias_share > 1e-3 * logit.abs()).all()  # the bias terms matter here
    ufg = methods.get("ufg", biased_resnet).attribute(x, t)
    torch.testing.assert_close(ufg.flatten(1).sum(1), logit, rtol=1e-9, atol=1e-9)
    # eq. 4 term by term: UFG's per-channel reduction equals spreading FullGrad's maps
    bias_total = sum(b.flatten(1).sum(1) for b in terms.bias_terms)
    spread = (bias_total / x[0].numel()).view(-1, 1, 1, 1)
    torch.testing.assert_close(ufg, terms.input_term + spread, rtol=1e-9, atol=1e-12)


def test_deeplift_summation_to_delta_on_resnet18(biased_resnet):
    """DeepLIFT with reused in-place ReLUs and an overlapping max-pool still sums to
    f(x) - f(x') (the rescale and max-pool rules are exact multipliers)."""
    torch.manual_seed(4)
    x = torch.randn(2, 3, 32, 32, dtype=torch.float64)
    base = torch.randn(2, 3, 32, 32, dtype=torch.float64) * 0.5
    _, delta = methods.get("deeplift", biased_resnet).attribute(
        x, [1, 2], baselines=base, return_convergence_delta=True)
    assert delta.abs().max() < 1e-9
    b = torch.randn(3, 3, 32, 32, dtype=torch.float64)
    _, delta = methods.get("deepshap", biased_resnet).attribute(
        x, [1, 2], baselines=b, return_convergence_delta=True)
    assert delta.abs().max() < 1e-9
