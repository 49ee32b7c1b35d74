"""Model zoo: shapes, layer counts, NIB property (paper 01, sections 2.2 and 4.1), BiasFreeBatchNorm2d,
ResNet8 ReLU reuse, rebuild from ``model.arch``."""

import json

import pytest
import torch
from torch import nn

from attrlab.models import (
    BUILDERS,
    BiasFreeBatchNorm2d,
    build,
    cnn6c3l,
    has_implicit_bias,
    lstm_classifier,
    mnist_cnn,
    nib_cnn,
    nib_vgg,
    resnet8,
)

DEPTHS = {"13-6": 7, "13-4": 9, "13-2": 11, "13": 13, "16": 16}
W = 0.125  # small VGGs keep the file fast


def n_layers(model: nn.Module, kind) -> int:
    return sum(isinstance(m, kind) for m in model.modules())


def warm(model: nn.Module, shape, seed: int = 0, passes: int = 3) -> nn.Module:
    """A few train-mode passes to populate the BN running statistics, then eval, float64."""
    torch.manual_seed(seed)
    model.train()
    with torch.no_grad():
        for _ in range(passes):
            model(torch.randn(8, *shape) * 2 + 0.5)
    return model.eval().double()


# --- shapes and layer counts -------------------------------------------------------------------


@pytest.mark.parametrize("depth", list(DEPTHS))
def test_nib_vgg_shapes_and_layer_counts(depth):
    torch.manual_seed(0)
    m = nib_vgg(depth, num_classes=7, width=W).eval()
    assert m(torch.randn(2, 3, 32, 32)).shape == (2, 7)
    n_conv, n_lin = n_layers(m, nn.Conv2d), n_layers(m, nn.Linear)
    assert n_lin == 3
    assert n_conv + n_lin == DEPTHS[depth]
    assert n_layers(m, nn.MaxPool2d) == 5
    assert n_layers(m, BiasFreeBatchNorm2d) == n_conv
    assert isinstance(m.features, nn.Sequential) and isinstance(m.classifier, nn.Sequential)


def test_nib_vgg_width_input_size_and_channels():
    m = nib_vgg("13-6", num_classes=3, in_channels=1, input_size=64, width=0.25).eval()
    convs = [c for c in m.modules() if isinstance(c, nn.Conv2d)]
    assert [c.out_channels for c in convs] == [16, 16, 32, 32]
    assert convs[0].in_channels == 1
    lins = [c for c in m.modules() if isinstance(c, nn.Linear)]
    assert lins[0].in_features == 32 * 2 * 2 and lins[0].out_features == 1024
    assert m(torch.randn(2, 1, 64, 64)).shape == (2, 3)
    # ReLUs are not inplace
    assert all(not r.inplace for r in m.modules() if isinstance(r, nn.ReLU))


@pytest.mark.parametrize("size", [28, 0, 48, 16])
def test_nib_vgg_rejects_input_size_not_divisible_by_32(size):
    with pytest.raises(ValueError, match="32"):
        nib_vgg("13-6", input_size=size, width=W)


def test_nib_vgg_rejects_unknown_depth():
    with pytest.raises(ValueError, match="depth"):
        nib_vgg("11", width=W)


def test_other_builders_shapes():
    torch.manual_seed(0)
    cases = [
        (resnet8(num_classes=5), (3, 32, 32), 5),
        (resnet8(num_classes=4, in_channels=1, width=8), (1, 28, 28), 4),
        (cnn6c3l(num_classes=6), (3, 32, 32), 6),
        (cnn6c3l(num_classes=6, in_channels=1, input_size=28, width=0.5), (1, 28, 28), 6),
        (mnist_cnn(), (1, 28, 28), 10),
        (mnist_cnn(num_classes=3, in_channels=3, input_size=32), (3, 32, 32), 3),
        (nib_cnn(), (1, 8, 8), 10),
        (nib_cnn(num_classes=4, in_channels=3, input_size=16, width=4), (3, 16, 16), 4),
    ]
    for model, shape, k in cases:
        assert model.eval()(torch.randn(2, *shape)).shape == (2, k), model.arch


def test_layer_counts_of_fixed_architectures():
    r = resnet8()
    convs = [c for c in r.modules() if isinstance(c, nn.Conv2d) and c.kernel_size == (3, 3)]
    assert len(convs) + n_layers(r, nn.Linear) == 8  # 1x1 shortcuts not counted
    assert [c.out_channels for c in convs] == [16, 16, 16, 32, 32, 64, 64]
    c = cnn6c3l()
    assert (n_layers(c, nn.Conv2d), n_layers(c, nn.Linear)) == (6, 3)
    assert c.classifier[1].in_features == 128 * 4 * 4
    mn = mnist_cnn()
    assert (n_layers(mn, nn.Conv2d), n_layers(mn, nn.Linear)) == (3, 2)
    assert mn.classifier[1].in_features == 128 * 3 * 3
    assert n_layers(mn, nn.Dropout) == 1 and mn.classifier[3].p == 0.25
    nc = nib_cnn()
    assert (n_layers(nc, nn.Conv2d), n_layers(nc, nn.Linear)) == (3, 2)
    assert [m.num_features for m in nc.modules() if isinstance(m, BiasFreeBatchNorm2d)] == [16, 16, 32]


# --- no implicit bias ------------------------------------------------------------------------------


def bias_names(model: nn.Module) -> list[str]:
    return [n for n, _ in model.named_parameters() if "bias" in n]


@pytest.mark.parametrize("make", [lambda: nib_vgg("16", width=W), lambda: nib_vgg("13-6", width=W), nib_cnn])
def test_nib_models_have_no_bias(make):
    m = make()
    assert bias_names(m) == []
    assert not any("mean" in n for n, _ in m.named_buffers())
    assert not has_implicit_bias(m)


def test_bias_ablations_have_implicit_bias():
    lb = nib_vgg("13-6", width=W, layer_bias=True)
    assert bias_names(lb) and has_implicit_bias(lb)
    assert n_layers(lb, BiasFreeBatchNorm2d) == 4 and n_layers(lb, nn.BatchNorm2d) == 0
    bnb = nib_vgg("13-6", width=W, bn_bias=True)
    assert bias_names(bnb) and has_implicit_bias(bnb)
    assert n_layers(bnb, nn.BatchNorm2d) == 4 and n_layers(bnb, BiasFreeBatchNorm2d) == 0
    assert all(n.startswith("features") for n in bias_names(bnb))  # only the BN shifts
    for m in (resnet8(), cnn6c3l(), mnist_cnn()):
        assert has_implicit_bias(m)
    # a bias-free conv followed by a standard BN still has an implicit bias
    assert has_implicit_bias(nn.Sequential(nn.Conv2d(1, 2, 3, bias=False), nn.BatchNorm2d(2, affine=False)))
    assert not has_implicit_bias(nn.Sequential(nn.Conv2d(1, 2, 3, bias=False), nn.ReLU()))


def test_init():
    torch.manual_seed(0)
    m = nib_vgg("13-6", width=0.25, layer_bias=True, bn_bias=True)
    for mod in m.modules():
        if isinstance(mod, (nn.Conv2d, nn.Linear)):
            assert torch.all(mod.bias == 0)
        if isinstance(mod, nn.BatchNorm2d):
            assert torch.all(mod.weight == 1) and torch.all(mod.bias == 0)
    lin = m.classifier[4].weight  # 1024 x 1024
    assert abs(lin.std().item() - 0.01) < 1e-3 and abs(lin.mean().item()) < 1e-3
    conv = m.features[0].weight  # Kaiming normal, fan_out = 16 * 9
    assert abs(conv.std().item() - (2 / (16 * 9)) ** 0.5) < 0.03


# --- BiasFreeBatchNorm2d ---------------------------------------------------------------------------


def test_bfbn_has_only_gamma():
    bn = BiasFreeBatchNorm2d(5)
    assert [n for n, _ in bn.named_parameters()] == ["weight"]
    assert torch.all(bn.weight == 1) and torch.all(bn.running_var == 1)


def test_bfbn_train_formula_and_running_var():
    torch.manual_seed(0)
    bn = BiasFreeBatchNorm2d(3, eps=1e-3)
    with torch.no_grad():
        bn.weight.copy_(torch.tensor([0.5, 2.0, -1.0]))
    old = torch.tensor([1.0, 2.0, 0.5])
    bn.running_var.copy_(old)
    x = torch.randn(4, 3, 5, 6) * torch.tensor([1.0, 3.0, 0.2]).view(1, 3, 1, 1) + 4.0
    y = bn.train()(x)
    var_b = x.var(dim=(0, 2, 3), unbiased=False)
    expect = bn.weight.view(1, 3, 1, 1) * x / torch.sqrt(var_b + 1e-3).view(1, 3, 1, 1)
    torch.testing.assert_close(y, expect)
    # the mean (about 4) is NOT subtracted: the output keeps the sign of gamma * x
    assert torch.all(torch.sign(y) == torch.sign(bn.weight).view(1, 3, 1, 1) * torch.sign(x))
    torch.testing.assert_close(bn.running_var, 0.9 * old + 0.1 * x.var(dim=(0, 2, 3), unbiased=True))
    assert int(bn.num_batches_tracked) == 1
    # gradients flow to gamma and through the batch variance
    y.sum().backward()
    assert bn.weight.grad is not None


def test_bfbn_eval_formula_is_linear():
    torch.manual_seed(1)
    bn = BiasFreeBatchNorm2d(4, eps=1e-5)
    with torch.no_grad():
        bn.weight.uniform_(0.5, 2.0)
        bn.running_var.uniform_(0.1, 3.0)
    rv = bn.running_var.clone()
    x = torch.randn(2, 4, 3, 3) + 1.0
    y = bn.eval()(x)
    expect = bn.weight.view(1, 4, 1, 1) * x / torch.sqrt(rv + 1e-5).view(1, 4, 1, 1)
    torch.testing.assert_close(y, expect, rtol=0, atol=0)
    torch.testing.assert_close(bn.running_var, rv, rtol=0, atol=0)  # eval does not update
    torch.testing.assert_close(bn(torch.zeros_like(x)), torch.zeros_like(x))
    torch.testing.assert_close(bn(3 * x), 3 * y)


def test_bfbn_constant_positive_input_stays_positive():
    """A standard BN maps a per-channel constant to its shift (mean subtracted: 0 + beta);
    the bias-free BN keeps it, only rescaled."""
    c = torch.tensor([1.0, 2.0, 5.0]).view(1, 3, 1, 1)
    x = c + 0.1 * torch.randn(6, 3, 4, 4)
    bn = BiasFreeBatchNorm2d(3).train()
    y = bn(x)
    assert torch.all(y > 0)
    # y / x is one positive constant per channel, 1 / sqrt(var + eps)
    ratio = (y / x).flatten(2)
    torch.testing.assert_close(ratio, ratio[..., :1].expand_as(ratio))
    std_bn = nn.BatchNorm2d(3).train()
    assert std_bn(x).mean().abs() < 1e-5 and y.mean() > 1.0


def test_bfbn_momentum_none_is_cumulative_average():
    bn = BiasFreeBatchNorm2d(2, momentum=None).train()
    xs = [torch.randn(3, 2, 4, 4) * s for s in (1.0, 2.0, 3.0)]
    for x in xs:
        bn(x)
    mean_var = torch.stack([x.var(dim=(0, 2, 3)) for x in xs]).mean(0)
    torch.testing.assert_close(bn.running_var, mean_var)


def test_bfbn_rejects_wrong_shapes():
    bn = BiasFreeBatchNorm2d(3)
    with pytest.raises(ValueError):
        bn(torch.randn(2, 3))
    with pytest.raises(ValueError):
        bn(torch.randn(2, 4, 3, 3))


# --- positive homogeneity / completeness (paper 01, eq. 8) ---------------------------------------


def homogeneity_errors(model: nn.Module, shape, seed: int = 3) -> tuple[float, float]:
    """Max relative errors of f(2x) = 2 f(x) and sum_i x_i df_c/dx_i = f_c(x), float64."""
    torch.manual_seed(seed)
    x = torch.randn(3, *shape, dtype=torch.float64, requires_grad=True)
    out = model(x)
    c = torch.tensor([0, 1, 2])
    logit = out[torch.arange(3), c]
    (grad,) = torch.autograd.grad(logit.sum(), x)
    euler = (x * grad).flatten(1).sum(1)
    with torch.no_grad():
        out2 = model(2 * x)
    scale = out.detach().abs().max()
    hom = ((out2 - 2 * out.detach()).abs().max() / scale).item()
    comp = ((euler - logit.detach()).abs().max() / logit.detach().abs().max()).item()
    return hom, comp


NIB_CASES = {
    "nib_vgg16": (lambda: nib_vgg("16", width=W), (3, 32, 32)),
    "nib_vgg13-6": (lambda: nib_vgg("13-6", width=W), (3, 32, 32)),
    "nib_cnn": (nib_cnn, (1, 8, 8)),
}


@pytest.mark.parametrize("name", list(NIB_CASES))
def test_nib_models_are_positively_homogeneous_in_eval(name):
    make, shape = NIB_CASES[name]
    model = warm(make(), shape)
    # running_var really was populated (else the check would be trivially about init stats)
    bns = [m for m in model.modules() if isinstance(m, BiasFreeBatchNorm2d)]
    assert all(int(b.num_batches_tracked) == 3 for b in bns)
    assert not torch.allclose(bns[0].running_var, torch.ones_like(bns[0].running_var))
    hom, comp = homogeneity_errors(model, shape)
    assert hom < 1e-4 and comp < 1e-4, (hom, comp)
    with torch.no_grad():
        assert torch.all(model(torch.zeros(1, *shape, dtype=torch.float64)) == 0)


@pytest.mark.parametrize("kw", [{"bn_bias": True}, {"layer_bias": True}])
def test_biased_variants_are_not_homogeneous(kw):
    """The same check fails once implicit biases come back (paper 01, Table 5: BNB / LB)."""
    model = nib_vgg("13-6", width=W, **kw)
    with torch.no_grad():  # nonzero shifts, as after training
        for m in model.modules():
            if getattr(m, "bias", None) is not None:
                m.bias.normal_(0, 0.5)
    model = warm(model, (3, 32, 32))
    hom, comp = homogeneity_errors(model, (3, 32, 32))
    assert hom > 1e-2 and comp > 1e-2, (hom, comp)


def test_bn_bias_variant_not_homogeneous_even_at_init():
    """Standard BN subtracts its running mean: an implicit bias even with beta = 0."""
    model = warm(nib_vgg("13-6", width=W, bn_bias=True), (3, 32, 32))
    hom, comp = homogeneity_errors(model, (3, 32, 32))
    assert hom > 1e-3 and comp > 1e-3, (hom, comp)


# --- ResNet8 ReLU reuse ----------------------------------------------------------------------------


def test_resnet8_blocks_reuse_one_inplace_relu():
    model = resnet8().eval()
    blocks = [model.layer1[0], model.layer2[0], model.layer3[0]]
    counts = {id(b.relu): 0 for b in blocks}

    def hook(mod, inp, out):
        counts[id(mod)] += 1

    handles = [b.relu.register_forward_hook(hook) for b in blocks]
    try:
        model(torch.randn(2, 3, 32, 32))
    finally:
        for h in handles:
            h.remove()
    assert len(counts) == 3 and all(v == 2 for v in counts.values()), counts
    for b in blocks:
        assert b.relu.inplace
        assert sum(isinstance(m, nn.ReLU) for m in b.modules()) == 1
    assert blocks[0].downsample is None
    assert blocks[1].downsample is not None and blocks[2].downsample is not None


# --- registry --------------------------------------------------------------------------------------

ARCH_CASES = [
    lambda: nib_vgg("13-2", num_classes=5, in_channels=1, input_size=64, width=W, layer_bias=True),
    lambda: nib_vgg("13-4", width=W, bn_bias=True),
    lambda: resnet8(num_classes=3, width=8),
    lambda: cnn6c3l(num_classes=4, input_size=28, width=0.5),
    lambda: mnist_cnn(num_classes=2, input_size=32),
    lambda: nib_cnn(num_classes=7, width=4),
    lambda: lstm_classifier(vocab_size=20, embed_dim=4, hidden=6, num_layers=2),
]


@pytest.mark.parametrize("i", range(len(ARCH_CASES)))
def test_build_reproduces_architecture(i):
    m = ARCH_CASES[i]()
    arch = json.loads(json.dumps(m.arch))  # JSON round trip
    assert arch == m.arch and arch["name"] in BUILDERS
    m2 = build(arch)
    assert type(m2) is type(m) and m2.arch == m.arch
    sd, sd2 = m.state_dict(), m2.state_dict()
    assert list(sd) == list(sd2)
    assert all(sd[k].shape == sd2[k].shape for k in sd)
    m2.load_state_dict(sd)  # a checkpoint loads into the rebuilt model
    assert arch == m.arch  # build does not mutate its argument


def test_builders_registry_and_unknown_name():
    assert set(BUILDERS) == {"nib_vgg", "resnet8", "cnn6c3l", "mnist_cnn", "nib_cnn",
                             "lstm_classifier"}
    for name, fn in BUILDERS.items():
        kw = {"nib_vgg": {"width": W}, "lstm_classifier": {"vocab_size": 10}}.get(name, {})
        assert fn(**kw).arch["name"] == name
    with pytest.raises(ValueError, match="nib_vgg"):
        build({"name": "vgg19"})
    with pytest.raises(ValueError):
        build({"depth": "16"})
