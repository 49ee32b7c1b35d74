"""Contract tests generated over every registered method: output shape and dtype, the model
untouched (also after an exception), the same result under the same generator, batch ==
one-by-one, float32 and float64, and bound options through every wrapper. A new method is
covered as soon as it is registered: give it small options in ``SMALL`` if its defaults are
slow."""

import pytest
import torch
from torch import nn

from attrlab import methods

pytestmark = pytest.mark.usefixtures("one_thread")

# cheap options so the whole matrix runs in seconds
SMALL = {"ig": {"n_steps": 4}, "guided_ig": {"n_steps": 4}, "smoothgrad": {"nt_samples": 3},
         "dga": {"n_steps": 3}, "attribution_mask": {"iterations": 2},
         "iba": {"steps": 3, "copies": 2},
         "input_iba": {"feature_steps": 2, "steps": 3, "copies": 2, "gan_epochs": 1,
                       "gan_samples": 8, "gan_batch_size": 4, "gan_group_size": 4},
         "meaningful_perturbation": {"iterations": 4, "blur_sigma": 2.0},
         "extremal_perturbation": {"iterations": 4, "areas": (0.1, 0.3), "step": 2,
                                   "sigma": 3.0}}


class Net(nn.Module):
    """Conv -> BN -> ReLU (one in-place module, used twice) -> max-pool -> linear."""

    def __init__(self):
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.conv1, self.conv2 = nn.Conv2d(3, 6, 3, padding=1), nn.Conv2d(6, 6, 3, padding=1)
        self.bn = nn.BatchNorm2d(6)
        self.relu = nn.ReLU(inplace=True)
        self.pool = nn.MaxPool2d(2)
        self.fc = nn.Linear(6 * 4 * 4, 4)
        with torch.no_grad():
            for p in self.parameters():
                p.copy_(torch.randn(p.shape, generator=g) * 0.5)
            self.bn.running_mean.copy_(torch.randn(6, generator=g) * 0.1)
            self.bn.running_var.copy_(torch.rand(6, generator=g) + 0.5)

    def forward(self, x):
        x = self.relu(self.bn(self.conv1(x)))
        x = self.pool(self.relu(self.conv2(x)))
        return self.fc(x.flatten(1))


def build(name, model, dtype=torch.float32):
    m = methods.get(name, model, **SMALL.get(name, {}))
    if m.needs_data:
        m.fit(torch.randn(5, 3, 8, 8, generator=torch.Generator().manual_seed(9), dtype=dtype))
    return m


def snapshot(model):
    return ({k: v.clone() for k, v in model.state_dict().items()},
            [(m, m.training) for m in model.modules()],
            [(p, p.requires_grad) for p in model.parameters()])


def assert_untouched(model, snap):
    state, modes, grads = snap
    for k, v in model.state_dict().items():
        assert torch.equal(v, state[k]), k
    assert all(m.training == t for m, t in modes)
    assert all(p.requires_grad == r for p, r in grads)
    for m in model.modules():
        assert not m._forward_hooks and not m._forward_pre_hooks and not m._backward_hooks


def inputs(dtype, n=3):
    return torch.randn(n, 3, 8, 8, generator=torch.Generator().manual_seed(1), dtype=dtype)


@pytest.fixture
def model():
    return Net().train()  # a training-mode model: every call must restore the mode


NAMES = methods.available()


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("name", NAMES)
def test_shape_dtype_and_model_untouched(name, dtype, model):
    model = model.to(dtype)
    snap = snapshot(model)
    x = inputs(dtype)
    out = build(name, model, dtype).attribute(x, target=torch.tensor([0, 3, 1]))
    assert out.shape == x.shape and out.dtype == dtype and torch.isfinite(out).all()
    if not methods.method_class(name).signed:
        assert (out >= 0).all(), f"{name} declares non-negative maps"
    assert_untouched(model, snap)


@pytest.mark.parametrize("name", NAMES)
def test_model_untouched_after_an_exception(name, model):
    snap = snapshot(model)
    with pytest.raises(ValueError, match="target out of range"):
        build(name, model).attribute(inputs(torch.float32), target=7)
    assert_untouched(model, snap)
    model(inputs(torch.float32))  # still usable


@pytest.mark.parametrize("name", NAMES)
def test_same_result_under_the_same_generator(name, model):
    m = build(name, model)
    x = inputs(torch.float32)
    a = m.attribute(x, target=1, **m.seeded(4))
    b = m.attribute(x, target=1, **m.seeded(4))
    assert torch.equal(a, b)
    if m.random:
        assert not torch.equal(a, m.attribute(x, target=1, **m.seeded(5)))


@pytest.mark.parametrize("name", [n for n in NAMES if not methods.method_class(n).random])
def test_batch_equals_one_by_one(name, model):
    """Samples are independent: a batch gives each sample's own map (random methods draw
    their noise per batch, so they are excluded by construction)."""
    m = build(name, model.double(), torch.float64)
    x, t = inputs(torch.float64), torch.tensor([2, 0, 3])
    batch = m.attribute(x, target=t)
    single = torch.cat([m.attribute(x[i:i + 1], target=t[i:i + 1]) for i in range(len(x))])
    torch.testing.assert_close(batch, single, rtol=1e-9, atol=1e-12)


WRAPPERS = [n for n in NAMES if methods.method_class(n).wraps]


@pytest.mark.parametrize("wrapper", WRAPPERS)
@pytest.mark.parametrize("base, opts", [("ig", {"n_steps": 3}), ("saliency", {"abs": False}),
                                        ("deepshap", None)])
def test_bound_options_pass_through_every_wrapper(wrapper, base, opts, model):
    x = inputs(torch.float32, 2)
    if opts is None:  # a fitted base: its data passes through
        opts = {"baselines": torch.randn(4, 3, 8, 8, generator=torch.Generator().manual_seed(3))}
    bound = methods.get(base, model).bind(**opts)
    small = {k: v for k, v in SMALL.get(wrapper, {}).items()}
    a = methods.get(wrapper, model, base=bound, **small).attribute(x, target=1)
    b = methods.get(wrapper, model, base=base, **small, **opts).attribute(x, target=1)
    torch.testing.assert_close(a, b)


def test_every_method_is_in_the_contract():
    assert set(NAMES) >= {"saliency", "gxi", "ig", "deeplift", "deepshap", "smoothgrad",
                          "gradcam", "fullgrad", "dga", "attribution_mask"}
    assert WRAPPERS == ["attribution_mask", "smoothgrad"]
