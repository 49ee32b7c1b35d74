"""Captum parity of the method API: tuple inputs, ``additional_forward_args``, plain callables,
(N,) outputs, convergence deltas (NoiseTunnel, DeepLiftShap per pair, compute_convergence_delta)
and ``multiply_by_inputs=False``.

Every feature is compared with Captum on the same model and inputs (float64, so both libraries
evaluate the same formula and differ by summation order only: ``EXACT`` as in
test_captum_agreement.py). Methods without a Captum equivalent (pgxi, gxsi, rectgrad) are
checked against their closed form or against the same model taking one concatenated input.
"""

from __future__ import annotations

import pytest
import torch
from captum.attr import (
    DeepLift,
    DeepLiftShap,
    GuidedBackprop,
    InputXGradient,
    IntegratedGradients,
    NoiseTunnel,
    Saliency,
)
from torch import Tensor, nn

from attrlab import methods

pytestmark = pytest.mark.filterwarnings(r"ignore::UserWarning:captum\..*")

EXACT = 1e-10
# Captum rounds IG's Gauss-Legendre weights to float32 (test_captum_agreement, quirk 5): compare
# IG with a rule whose positions and weights are exact in binary (n a power of 2)
IGK = dict(n_steps=8, method="riemann_middle")


@pytest.fixture(autouse=True, scope="module")
def _float64_default():
    """Captum draws NoiseTunnel's noise in the default dtype (see test_captum_agreement)."""
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(old)


def agree(actual, expected, rel: float = EXACT) -> None:
    """Tensors or tuples of tensors: same structure and shapes, max|diff| <= rel * scale."""
    if isinstance(expected, tuple):
        assert isinstance(actual, tuple) and len(actual) == len(expected)
        scale = max(e.abs().max().item() for e in expected)
        pairs = list(zip(actual, expected))
    else:
        assert isinstance(actual, Tensor), type(actual)
        scale, pairs = expected.abs().max().item(), [(actual, expected)]
    assert scale > 0, "degenerate comparison: the expected map is all zero"
    for a, e in pairs:
        assert a.shape == e.shape, (a.shape, e.shape)
        diff = (a - e).abs().max().item()
        assert diff <= rel * scale, f"max|diff| {diff:.3g} > {rel:g} * scale {scale:.3g}"


# ------------------------------------------------------------------------------------ models

class TwoInputNet(nn.Module):
    """f(x1, x2) for x1 (N, 4) and x2 (N, 2, 3): two ReLU branches merged into 3 logits,
    one ReLU module per call (Captum's DeepLIFT hooks modules)."""

    def __init__(self) -> None:
        super().__init__()
        self.a, self.b = nn.Linear(4, 5), nn.Linear(6, 5)
        self.relu_a, self.relu_b, self.relu_c = nn.ReLU(), nn.ReLU(), nn.ReLU()
        self.c, self.out = nn.Linear(10, 6), nn.Linear(6, 3)

    def forward(self, x1: Tensor, x2: Tensor) -> Tensor:
        h = torch.cat([self.relu_a(self.a(x1)), self.relu_b(self.b(x2.flatten(1)))], 1)
        return self.out(self.relu_c(self.c(h)))


class MaskedNet(nn.Module):
    """f(x, mask, scale) for token embeddings x (N, L, D), an attention mask (N, L) and a
    Python float: masked mean of ReLU(W x) over tokens, times ``scale``, to 3 logits."""

    def __init__(self) -> None:
        super().__init__()
        self.proj, self.relu, self.out = nn.Linear(4, 6), nn.ReLU(), nn.Linear(6, 3)

    def forward(self, x: Tensor, mask: Tensor, scale: float = 1.0) -> Tensor:
        h = self.relu(self.proj(x)) * mask.unsqueeze(-1)
        pooled = h.sum(1) / mask.sum(1, keepdim=True)
        return self.out(pooled) * scale


class ConcatNet(nn.Module):
    """One-input MLP g(z) for z (N, 10); ``two(x1, x2) = g(cat(x1, x2.flatten(1)))``."""

    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(10, 8), nn.ReLU(), nn.Linear(8, 8), nn.ReLU(),
                                 nn.Linear(8, 3))

    def forward(self, z: Tensor) -> Tensor:
        return self.net(z)

    def two(self, x1: Tensor, x2: Tensor) -> Tensor:
        return self.net(torch.cat([x1, x2.flatten(1)], 1))


def seeded(cls, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return cls().double().eval()


@pytest.fixture(scope="module")
def two():
    torch.manual_seed(1)
    x = (torch.randn(5, 4), torch.randn(5, 2, 3))
    return seeded(TwoInputNet), x, torch.tensor([0, 1, 2, 1, 0])


@pytest.fixture(scope="module")
def masked():
    torch.manual_seed(2)
    x = torch.randn(4, 5, 4)
    mask = torch.ones(4, 5)
    mask[0, 3:] = 0
    mask[2, 1:] = 0
    mask[3, 4] = 0
    return seeded(MaskedNet), x, mask, torch.tensor([2, 0, 1, 1])


# ------------------------------------------------------------------------ 1. tuple inputs

def test_tuple_inputs_gradient_methods_match_captum(two):
    m, x, t = two
    agree(methods.get("saliency", m).attribute(x, t), Saliency(m).attribute(x, target=t))
    agree(methods.get("saliency", m, abs=False).attribute(x, t),
          Saliency(m).attribute(x, target=t, abs=False))
    agree(methods.get("gxi", m).attribute(x, t), InputXGradient(m).attribute(x, target=t))
    grads = Saliency(m).attribute(x, target=t, abs=False)
    agree(methods.get("pgxi", m).attribute(x, t),
          tuple(g.clamp(min=0) * xi for g, xi in zip(grads, x)))
    agree(methods.get("gxsi", m).attribute(x, t), tuple(g * xi.sign() for g, xi in zip(grads, x)))
    agree(methods.get("gbp", m).attribute(x, t), GuidedBackprop(m).attribute(x, target=t))


@pytest.mark.parametrize("baselines", [None, 0.5, (0.0, -1.0), "tensors"])
def test_tuple_inputs_ig_and_deeplift_match_captum(two, baselines):
    m, x, t = two
    if baselines == "tensors":  # a per-sample tensor for one input, a broadcast row for the other
        torch.manual_seed(3)
        baselines = (torch.randn(5, 4) * 0.3, torch.randn(1, 2, 3) * 0.3)
    theirs_b = (baselines, baselines) if isinstance(baselines, float) else baselines
    ours, d = methods.get("ig", m, **IGK).attribute(x, t, baselines=baselines,
                                                    return_convergence_delta=True)
    theirs, d_c = IntegratedGradients(m).attribute(x, baselines=theirs_b, target=t, **IGK,
                                                   return_convergence_delta=True)
    agree(ours, theirs)
    agree(d, d_c, 1e-8)
    assert isinstance(ours, tuple) and [a.shape for a in ours] == [xi.shape for xi in x]
    ours, d = methods.get("deeplift", m).attribute(x, t, baselines=baselines,
                                                   return_convergence_delta=True)
    theirs, d_c = DeepLift(m).attribute(x, baselines=theirs_b, target=t,
                                        return_convergence_delta=True)
    agree(ours, theirs)
    assert d.shape == (5,) and d.abs().max() < 1e-10 and d_c.abs().max() < 1e-10


def test_tuple_inputs_noise_tunnel_and_deepshap_match_captum(two):
    m, x, t = two
    torch.manual_seed(7)
    ours = methods.get("smoothgrad", m, nt_samples=5, stdevs=(0.2, 0.1),
                       nt_samples_batch_size=2).attribute(
        x, t, generator=torch.Generator().manual_seed(11))
    torch.manual_seed(11)
    theirs = NoiseTunnel(Saliency(m)).attribute(x, nt_samples=5, stdevs=(0.2, 0.1),
                                                nt_samples_batch_size=2, target=t)
    agree(ours, theirs)
    torch.manual_seed(4)
    bases = (torch.randn(3, 4), torch.randn(3, 2, 3))
    ours, d = methods.get("deepshap", m).attribute(x, t, baselines=bases,
                                                   return_convergence_delta=True)
    theirs, d_c = DeepLiftShap(m).attribute(x, baselines=bases, target=t,
                                            return_convergence_delta=True)
    agree(ours, theirs)
    assert d.shape == d_c.shape == (15,)


def test_tuple_inputs_rectgrad_equals_the_concatenated_model():
    """RectGrad has no Captum counterpart: splitting one input into two changes nothing (its
    per-layer percentile sees the same activations), so the tuple maps are the split map."""
    m = seeded(ConcatNet)
    torch.manual_seed(5)
    x = (torch.randn(3, 4), torch.randn(3, 2, 3))
    z = torch.cat([x[0], x[1].flatten(1)], 1)
    for name in ("rectgrad", "gbp", "deeplift", "ig", "saliency", "pgxi", "gxsi"):
        a1, a2 = methods.get(name, m.two).attribute(x, [0, 1, 2])
        whole = methods.get(name, m).attribute(z, [0, 1, 2])
        agree(torch.cat([a1, a2.flatten(1)], 1), whole)


def test_single_element_tuple_gives_a_tuple(two):
    m = seeded(ConcatNet)
    z = torch.randn(2, 10)
    out = methods.get("ig", m, n_steps=4).attribute((z,), 1)
    assert isinstance(out, tuple) and len(out) == 1
    agree(out[0], methods.get("ig", m, n_steps=4).attribute(z, 1))
    cam = methods.get("gxi", m).attribute((z,), 1)
    assert isinstance(cam, tuple)


@pytest.mark.parametrize("name", ["gradcam", "fullgrad", "ufg", "dga", "guided_ig",
                                  "attribution_mask"])
def test_single_input_methods_refuse_tuples(name):
    m = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 3))
    x = torch.randn(2, 3, 8, 8, dtype=torch.float64)
    with pytest.raises(ValueError, match="takes a single input tensor; got a tuple of 2"):
        methods.get(name, m.double()).attribute((x, x), 0)


def test_tuple_input_errors(two):
    m, x, t = two
    with pytest.raises(ValueError, match="share their batch size"):
        methods.get("saliency", m).attribute((x[0], x[1][:3]), 0)
    with pytest.raises(ValueError, match="baselines has 1 entries but there are 2 inputs"):
        methods.get("ig", m).attribute(x, t, baselines=(0.0,))
    with pytest.raises(ValueError, match="must be a tuple"):
        methods.get("ig", m).attribute(x, t, baselines=torch.zeros(5, 4))
    with pytest.raises(ValueError, match=r"baselines\[1\] of shape"):
        methods.get("deeplift", m).attribute(x, t, baselines=(0.0, torch.zeros(5, 3)))
    with pytest.raises(TypeError, match=r"inputs\[1\] must be a floating"):
        methods.get("saliency", m).attribute((x[0], x[1].long()), 0)


# ------------------------------------------------------------- 2. additional_forward_args

def test_attention_mask_argument_matches_captum(masked):
    m, x, mask, t = masked
    args = (mask, 0.5)
    agree(methods.get("saliency", m).attribute(x, t, additional_forward_args=args),
          Saliency(m).attribute(x, target=t, additional_forward_args=args))
    agree(methods.get("gbp", m).attribute(x, t, additional_forward_args=args),
          GuidedBackprop(m).attribute(x, target=t, additional_forward_args=args))
    # IG: n_steps path rows, chunked by internal_batch_size (4 rows = 1 step per chunk)
    ours, d = methods.get("ig", m, **IGK, internal_batch_size=4).attribute(
        x, t, additional_forward_args=args, return_convergence_delta=True)
    theirs, d_c = IntegratedGradients(m).attribute(
        x, target=t, **IGK, internal_batch_size=4, additional_forward_args=args,
        return_convergence_delta=True)
    agree(ours, theirs)
    agree(d, d_c, 1e-8)
    # DeepLIFT: the [inputs; baselines] batch
    base = torch.randn(4, 5, 4) * 0.2
    agree(methods.get("deeplift", m).attribute(x, t, baselines=base, additional_forward_args=args),
          DeepLift(m).attribute(x, baselines=base, target=t, additional_forward_args=args))
    # DeepSHAP: (sample, baseline) pairs, chunked by internal_batch_size
    bases = torch.randn(3, 5, 4)
    ours, d = methods.get("deepshap", m, internal_batch_size=5).attribute(
        x, t, baselines=bases, additional_forward_args=args, return_convergence_delta=True)
    theirs, d_c = DeepLiftShap(m).attribute(x, baselines=bases, target=t,
                                            additional_forward_args=args,
                                            return_convergence_delta=True)
    agree(ours, theirs)
    assert d.shape == d_c.shape == (4 * 3,) and d.abs().max() < 1e-12 and d_c.abs().max() < 1e-12
    # NoiseTunnel: nt_samples copies, in chunks of nt_samples_batch_size
    ours = methods.get("smoothgrad", m, nt_samples=5, stdevs=0.3, nt_samples_batch_size=2
                       ).attribute(x, t, additional_forward_args=args,
                                   generator=torch.Generator().manual_seed(3))
    torch.manual_seed(3)
    theirs = NoiseTunnel(Saliency(m)).attribute(x, nt_samples=5, stdevs=0.3, target=t,
                                                nt_samples_batch_size=2,
                                                additional_forward_args=args)
    agree(ours, theirs)


def test_mask_changes_the_map_and_single_values_are_wrapped(masked):
    """The mask really reaches the model (masked tokens get no attribution), and a single
    tensor argument needs no tuple."""
    m, x, mask, t = masked
    a = methods.get("ig", m, n_steps=5).attribute(x, t, additional_forward_args=mask)
    assert (a[0, 3:] == 0).all() and (a[2, 1:] == 0).all() and a[0, :3].abs().sum() > 0
    b = methods.get("ig", m, n_steps=5).attribute(x, t, additional_forward_args=(mask,))
    agree(a, b, 0.0 + 1e-15)
    # predicted class (target=None) uses the args too
    pred = m(x, mask).argmax(1)
    agree(methods.get("saliency", m).attribute(x, additional_forward_args=mask),
          Saliency(m).attribute(x, target=pred, additional_forward_args=mask))


def test_args_go_through_wrappers_and_subclasses_without_them(masked):
    m, x, mask, t = masked
    ig = methods.get("ig", m, n_steps=4)
    nt = methods.get("smoothgrad", m, base="ig", nt_samples=3, stdevs=0.1, n_steps=4)
    out = nt.attribute(x, t, additional_forward_args=mask)
    assert out.shape == x.shape
    mask_m = methods.get("attribution_mask", m, base="gxi", iterations=2)
    assert mask_m.attribute(x, t, additional_forward_args=mask).shape == x.shape
    assert ig.attribute(x, t, additional_forward_args=(mask, 2.0)).shape == x.shape

    class Plain(methods.Attribution):
        def _attribute(self, inputs, target):
            return inputs

    with pytest.raises(ValueError, match="does not take additional_forward_args"):
        Plain(m).attribute(x, t, additional_forward_args=mask)


# -------------------------------------------------------------------- 3. plain callables

def test_callables_match_captum_and_modules_are_guarded():
    net = seeded(ConcatNet)
    z = torch.randn(3, 10)
    t = [0, 2, 1]

    def closure(v: Tensor) -> Tensor:
        return net(v) * 2.0

    agree(methods.get("saliency", closure).attribute(z, t), Saliency(closure).attribute(z, target=t))
    agree(methods.get("ig", closure, **IGK).attribute(z, t),
          IntegratedGradients(closure).attribute(z, target=t, **IGK))
    # rule-based methods work on callables (rules come from a TorchFunctionMode)
    for name, ref in (("gbp", GuidedBackprop(net)), ("deeplift", DeepLift(net))):
        expected = ref.attribute(z, target=t)
        agree(methods.get(name, lambda v: net(v)).attribute(z, t), expected)
        agree(methods.get(name, net.forward).attribute(z, t), expected)
    # the guard finds the module of a bound method: train mode and requires_grad restored
    net.train()
    sal = methods.get("saliency", net.forward)
    assert sal.model is net
    sal.attribute(z, t)
    assert net.training and all(p.requires_grad for p in net.parameters())
    assert methods.get("saliency", closure).model is None
    with pytest.raises(TypeError, match="must be callable"):
        methods.get("ig", "not a model")
    net.eval()


def test_scalar_output_per_sample_matches_captum():
    net = seeded(ConcatNet)
    z = torch.randn(4, 10)

    def logit(v: Tensor) -> Tensor:  # (N,): one logit per sample
        return net(v)[:, 1]

    theirs, d_c = IntegratedGradients(logit).attribute(z, **IGK, return_convergence_delta=True)
    for target in (None, 0):
        ours, d = methods.get("ig", logit, **IGK).attribute(z, target,
                                                              return_convergence_delta=True)
        agree(ours, theirs)
        agree(d, d_c, 1e-8)
    agree(methods.get("saliency", logit).attribute(z), Saliency(logit).attribute(z))
    agree(methods.get("deeplift", logit).attribute(z, 0),
          methods.get("deeplift", net).attribute(z, 1))
    with pytest.raises(ValueError, match="one output per sample.*target must be None or 0"):
        methods.get("saliency", logit).attribute(z, 1)


# ------------------------------------------------------------------------------ 4. deltas

@pytest.mark.parametrize("batch", [None, 2])
def test_noise_tunnel_returns_the_delta_of_every_noisy_sample(two, batch):
    m, x, t = two
    ours, d = methods.get("smoothgrad", m, base="ig", nt_samples=5, stdevs=0.2,
                          nt_samples_batch_size=batch, **IGK).attribute(
        x, t, return_convergence_delta=True, generator=torch.Generator().manual_seed(5))
    torch.manual_seed(5)
    theirs, d_c = NoiseTunnel(IntegratedGradients(m)).attribute(
        x, nt_samples=5, stdevs=0.2, nt_samples_batch_size=batch, target=t, **IGK,
        return_convergence_delta=True)
    agree(ours, theirs)
    assert d.shape == d_c.shape == (5 * 5,)
    agree(d, d_c, 1e-8)
    # Captum's spelling NoiseTunnel(method) gives the same
    ig = methods.IntegratedGradients(m, **IGK)
    again, d2 = methods.NoiseTunnel(ig, nt_samples=5, stdevs=0.2, nt_samples_batch_size=batch
                                    ).attribute(x, t, return_convergence_delta=True,
                                                generator=torch.Generator().manual_seed(5))
    agree(again, ours, 0.0 + 1e-15)
    agree(d2, d, 1e-12)
    nt = methods.get("smoothgrad", m)
    assert not nt.has_convergence_delta()
    with pytest.raises(TypeError, match="return_convergence_delta"):
        nt.attribute(x, t, return_convergence_delta=True)


def test_deepshap_delta_per_pair_matches_captum(masked):
    m, x, mask, t = masked
    torch.manual_seed(6)
    bases = torch.randn(3, 5, 4)
    ours, d = methods.get("deepshap", m).attribute(x, t, baselines=bases,
                                                   additional_forward_args=mask,
                                                   return_convergence_delta=True)
    theirs, d_c = DeepLiftShap(m).attribute(x, baselines=bases, target=t,
                                            additional_forward_args=(mask,),
                                            return_convergence_delta=True)
    agree(ours, theirs)
    assert d.shape == d_c.shape == (4 * 3,) and d.abs().max() < 1e-12 and d_c.abs().max() < 1e-12
    # with multiply_by_inputs=False the pair deltas are far from 0: same values, same order
    ours, d = methods.get("deepshap", m, multiply_by_inputs=False).attribute(
        x, t, baselines=bases, additional_forward_args=mask, return_convergence_delta=True)
    theirs, d_c = DeepLiftShap(m, multiply_by_inputs=False).attribute(
        x, baselines=bases, target=t, additional_forward_args=(mask,),
        return_convergence_delta=True)
    agree(ours, theirs)
    assert d.abs().min() > 1e-3
    agree(d, d_c)
    # each entry is the completeness error of one (sample i, baseline j) pair, row i * B + j
    dl = methods.get("deeplift", m, multiply_by_inputs=False)
    pair = dl.attribute(x[1:2], t[1:2], baselines=bases[2:3], additional_forward_args=mask[1:2])
    with torch.no_grad():
        expected = pair.sum() - (m(x[1:2], mask[1:2])[0, t[1]] - m(bases[2:3], mask[1:2])[0, t[1]])
    assert abs(d[1 * 3 + 2] - expected) < 1e-12


def test_compute_convergence_delta_and_has_convergence_delta(two):
    m, x, t = two
    ig, cig = methods.get("ig", m, n_steps=5), IntegratedGradients(m)
    attr = ig.attribute(x, t, baselines=(0.1, 0.0))
    ours = ig.compute_convergence_delta(attr, (0.1, 0.0), x, target=t)
    theirs = cig.compute_convergence_delta(attr, (0.1, 0.0), x, target=t)
    agree(ours, theirs)
    assert ours.shape == (5,)
    mm = MaskedNet().double()
    xm, mask = torch.randn(2, 3, 4), torch.ones(2, 3)
    a = methods.get("ig", mm, n_steps=4).attribute(xm, 1, additional_forward_args=mask)
    agree(methods.get("ig", mm).compute_convergence_delta(a, None, xm, 1, mask),
          IntegratedGradients(mm).compute_convergence_delta(a, None, xm, 1, (mask,)))
    has = {n: methods.get(n, m).has_convergence_delta() for n in
           ("ig", "deeplift", "deepshap", "saliency", "gxi", "gbp", "rectgrad")}
    assert has == {"ig": True, "deeplift": True, "deepshap": True, "saliency": False,
                   "gxi": False, "gbp": False, "rectgrad": False}
    assert methods.get("smoothgrad", m, base="ig").has_convergence_delta()


# ------------------------------------------------------------------- 5. multiply_by_inputs

def test_multiply_by_inputs_false_matches_captum(two):
    m, x, t = two
    base = (0.3, torch.randn(5, 2, 3) * 0.1)
    agree(methods.get("ig", m, **IGK, multiply_by_inputs=False).attribute(x, t, baselines=base),
          IntegratedGradients(m, multiply_by_inputs=False).attribute(x, baselines=base, target=t,
                                                                     **IGK))
    agree(methods.get("deeplift", m).attribute(x, t, baselines=base, multiply_by_inputs=False),
          DeepLift(m, multiply_by_inputs=False).attribute(x, baselines=base, target=t))
    bases = (torch.randn(3, 4), torch.randn(3, 2, 3))
    agree(methods.get("deepshap", m, multiply_by_inputs=False).attribute(x, t, baselines=bases),
          DeepLiftShap(m, multiply_by_inputs=False).attribute(x, baselines=bases, target=t))
    with pytest.raises(ValueError, match="multiply_by_inputs must be True or False"):
        methods.get("ig", m, multiply_by_inputs=1)


# ----------------------------------------------------- 6. models reshaping inside forward

class MnistMLP(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc1, self.relu, self.fc2 = nn.Linear(784, 16), nn.ReLU(), nn.Linear(16, 10)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(self.relu(self.fc1(x.flatten(1))))


class ChannelsLast(nn.Module):
    """Takes (N, H, W, C) images and permutes them for its Conv2d."""

    def __init__(self) -> None:
        super().__init__()
        self.conv, self.relu, self.fc = nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Linear(4 * 4 * 4, 5)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(self.relu(self.conv(x.permute(0, 3, 1, 2))).flatten(1))


def test_models_reshaping_inside_forward_work():
    mlp = seeded(MnistMLP)
    x = torch.rand(3, 1, 28, 28)
    agree(methods.get("ig", mlp, **IGK).attribute(x, [1, 2, 3]),
          IntegratedGradients(mlp).attribute(x, target=[1, 2, 3], **IGK))
    cl = seeded(ChannelsLast)
    xc = torch.randn(2, 6, 6, 3)
    agree(methods.get("deeplift", cl).attribute(xc, 0), DeepLift(cl).attribute(xc, target=0))
    with pytest.raises(ValueError, match=r"cannot take inputs of shape \(3, 1, 20, 20\)"):
        methods.get("saliency", mlp).attribute(torch.rand(3, 1, 20, 20), 0)


class ScaledCNN(nn.Module):
    """A small CNN whose logits are multiplied by a forward argument."""

    def __init__(self) -> None:
        super().__init__()
        self.conv, self.relu = nn.Conv2d(3, 4, 3, padding=1), nn.ReLU()
        self.fc = nn.Linear(4 * 6 * 6, 3)

    def forward(self, x: Tensor, scale: Tensor) -> Tensor:
        return self.fc(self.relu(self.conv(x)).flatten(1)) * scale.view(-1, 1)


def test_single_input_methods_take_forward_args(masked):
    """Guided IG, Grad-CAM, FullGrad, UFG and DGA pass additional_forward_args to the model:
    guided IG with max_dist=0 is IG's left Riemann sum, and a per-sample logit scale s scales
    Grad-CAM, the FullGrad decomposition, UFG and GxI-based DGA maps by s (all positively
    homogeneous in the logit)."""
    m, x, mask, t = masked
    agree(methods.get("guided_ig", m, n_steps=8, max_dist=0.0).attribute(
        x, t, additional_forward_args=mask),
        methods.get("ig", m, n_steps=8, method="riemann_left").attribute(
            x, t, additional_forward_args=mask), 1e-9)
    cnn = seeded(ScaledCNN)
    xc = torch.randn(3, 3, 6, 6)
    s, one = torch.tensor([2.0, 0.5, 3.0]), torch.ones(3)
    view = (-1, 1, 1, 1)
    for name in ("gradcam", "ufg"):
        meth = methods.get(name, cnn)
        agree(meth.attribute(xc, 1, additional_forward_args=s),
              meth.attribute(xc, 1, additional_forward_args=one) * s.view(view))
    fg = methods.get("fullgrad", cnn)
    a, b = (fg.decompose(xc, 1, additional_forward_args=v) for v in (s, one))
    agree(a.input_term, b.input_term * s.view(view))
    agree(a.logit, b.logit * s)
    dga = methods.get("dga", cnn, local="gxi", n_steps=3)
    agree(dga.attribute(xc, 1, additional_forward_args=s),
          dga.attribute(xc, 1, additional_forward_args=one) * s.view(view))
