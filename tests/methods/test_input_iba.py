"""InputIBA: the stacked critics are the authors' critic per image, the whole three-stage method
gives each image of a batch its own result (batch == one-by-one under per-image draws), the
input bottleneck's first capacity is Proposition 3's closed form, fit/state_dict, the model
restored."""

import io

import pytest
import torch
from torch import nn

from attrlab import methods
from attrlab.core import bottleneck as bn
from attrlab.methods.information import input_iba as input_iba_module
from attrlab.methods.information.input_iba import input_bottleneck
from attrlab.methods.information.wgan import Draws, StackedCritic, fit_input_mask

pytestmark = pytest.mark.usefixtures("one_thread")
D = torch.float64
SMALL = {"feature_steps": 2, "steps": 3, "copies": 2, "gan_epochs": 2, "gan_samples": 12,
             "gan_batch_size": 5, "gan_group_size": 4, "critic_iter": 2}


class Tiny(nn.Module):
    """conv 1 -> 2 channels (the layer, 8 x 8) -> ReLU -> linear, 3 classes."""

    def __init__(self):
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.conv = nn.Conv2d(1, 2, 3, padding=1)
        self.relu = nn.ReLU(inplace=True)
        self.fc = nn.Linear(2 * 8 * 8, 3)
        with torch.no_grad():
            for p in self.parameters():
                p.copy_(torch.randn(p.shape, generator=g) * 0.5)

    def forward(self, x):
        return self.fc(self.relu(self.conv(x)).flatten(1))


def data(n, seed=3):
    return torch.randn(n, 1, 8, 8, generator=torch.Generator().manual_seed(seed), dtype=D)


class PerImage(Draws):
    """Draws of image i from its own generator (seeded seeds[i]); permutations shared."""

    def __init__(self, seeds, dtype=D):
        super().__init__(len(seeds), torch.Generator(), torch.device("cpu"), dtype)
        self.gens = [torch.Generator().manual_seed(s) for s in seeds]
        self.perm = torch.Generator().manual_seed(99)

    def normal(self, *shape):
        return torch.stack([torch.randn(shape, generator=g, dtype=self.dtype) for g in self.gens])

    def uniform(self, lo, hi, *shape):
        return torch.stack([lo + (hi - lo) * torch.rand(shape, generator=g, dtype=self.dtype)
                            for g in self.gens])

    def permutation(self, m):
        return torch.randperm(m, generator=self.perm)


def authors_critic(c, size):
    """The authors' VisionDiscriminator architecture."""
    return nn.ModuleDict({
        "main": nn.Sequential(
            nn.Conv2d(c, 2 * c, 4, 2, 1), nn.BatchNorm2d(2 * c), nn.LeakyReLU(0.2),
            nn.Conv2d(2 * c, 4 * c, 4, 2, 1), nn.BatchNorm2d(4 * c), nn.LeakyReLU(0.2),
            nn.Conv2d(4 * c, c, 3, 1, 1), nn.BatchNorm2d(c), nn.LeakyReLU(0.2)),
        "out": nn.Sequential(nn.Linear(c * (size // 4) ** 2, 512), nn.LeakyReLU(0.2),
                             nn.Linear(512, 256), nn.LeakyReLU(0.2), nn.Linear(256, 1))})


def test_stacked_critics_are_the_authors_critic_per_image():
    critic = StackedCritic.init(PerImage([1, 2, 3]), 2, (8, 8))
    feats = torch.randn(3, 5, 2, 8, 8, generator=torch.Generator().manual_seed(0), dtype=D)
    out = critic(feats)
    assert out.shape == (3, 5)
    for i in range(3):
        ref = authors_critic(2, 8).double().train()
        convs = [m for m in ref["main"] if isinstance(m, nn.Conv2d)]
        bns = [m for m in ref["main"] if isinstance(m, nn.BatchNorm2d)]
        lins = [m for m in ref["out"] if isinstance(m, nn.Linear)]
        p = critic.params
        with torch.no_grad():
            for k, (conv, norm) in enumerate(zip(convs, bns), 1):
                conv.weight.copy_(p[f"conv{k}.weight"][i])
                conv.bias.copy_(p[f"conv{k}.bias"][i])
                norm.weight.copy_(p[f"conv{k}.bn_weight"][i] * 0.5 + 0.25)
                norm.bias.copy_(p[f"conv{k}.bn_bias"][i] + 0.1)
                p[f"conv{k}.bn_weight"][i] = norm.weight
                p[f"conv{k}.bn_bias"][i] = norm.bias
            for k, lin in enumerate(lins, 1):
                lin.weight.copy_(p[f"fc{k}.weight"][i].T)
                lin.bias.copy_(p[f"fc{k}.bias"][i, 0])
        # the reference sees only image i's batch
        expect = ref["out"](ref["main"](feats[i]).flatten(1)).squeeze(1)
        torch.testing.assert_close(critic(feats)[i], expect)


def test_gan_batch_equals_one_by_one():
    model = Tiny().double().eval()
    x = data(3)
    fmap = model.conv(x).detach()
    fmask = torch.rand(fmap.shape, generator=torch.Generator().manual_seed(4), dtype=D)
    logit = torch.randn(x.shape, generator=torch.Generator().manual_seed(5), dtype=D)
    opts = {"samples": 12, "group_size": 4, "epochs": 2, "batch_size": 5, "critic_iter": 2}

    def run(sl, seeds):
        return fit_input_mask(lambda z: model.conv(z), x[sl], fmap[sl], fmask[sl], logit[sl],
                              PerImage(seeds), **opts)

    batch = run(slice(0, 3), [1, 2, 3])
    assert batch.shape == x.shape and ((batch > 0) & (batch < 1)).all()
    assert not torch.allclose(batch, torch.sigmoid(logit))  # the generator trained
    for i in range(3):
        torch.testing.assert_close(batch[i:i + 1], run(slice(i, i + 1), [i + 1]),
                                   rtol=1e-9, atol=1e-12)


def fitted(model, **kw):
    return methods.get("input_iba", model, layer="conv", **{**SMALL, **kw}).fit(data(30))


def test_input_bottleneck_first_capacity_is_proposition_3():
    model = Tiny().double()
    m = fitted(model)
    x, t = data(2, seed=7), torch.tensor([0, 2])
    lam_g = torch.rand(x.shape, generator=torch.Generator().manual_seed(1), dtype=D)
    with m.guard():
        _, cap = input_bottleneck(m, x, t, (), lam_g, PerImage([1, 2]), beta=20.0, steps=1,
                                  lr=1.0, copies=3, alpha_init=5.0, sigma=1.0)
    lam = torch.sigmoid(torch.tensor(5.0, dtype=D))  # constant: smoothing keeps it
    torch.testing.assert_close(cap, bn.prior_kl(x, lam.expand_as(x), lam_g))


def test_whole_method_batch_equals_one_by_one(monkeypatch):
    model = Tiny().double()
    m = fitted(model)
    x, t = data(3, seed=7), torch.tensor([2, 0, 1])
    seeds = {"now": [1, 2, 3]}
    monkeypatch.setattr(input_iba_module, "Draws", lambda *a: PerImage(seeds["now"]))
    batch = m.attribute(x, target=t)
    assert batch.shape == x.shape and ((batch >= 0) & (batch <= 1)).all()
    for i in range(3):
        seeds["now"] = [i + 1]
        torch.testing.assert_close(batch[i:i + 1], m.attribute(x[i:i + 1], target=t[i:i + 1]),
                                   rtol=1e-9, atol=1e-12)


def test_stages_shapes_and_state_dict_round_trip():
    model = Tiny().double()
    m = fitted(model)
    buf = io.BytesIO()
    torch.save(m.state_dict(), buf)
    buf.seek(0)
    other = methods.get("input_iba", model, layer="conv", **SMALL)
    other.load_state_dict(torch.load(buf, weights_only=True))
    x = data(2, seed=7)
    a = m.attribute(x, target=1, generator=torch.Generator().manual_seed(3))
    assert torch.equal(a, other.attribute(x, target=1, generator=torch.Generator().manual_seed(3)))
    with m.guard():
        st = m.stages(x, torch.tensor([1, 1]),
                      **{**m.defaults, "generator": torch.Generator().manual_seed(3)})
    assert st["feature_capacity"].shape == (2, 2, 8, 8) and (st["feature_capacity"] >= 0).all()
    assert st["lambda_g"].shape == x.shape and st["alpha"].shape == x.shape
    torch.testing.assert_close(a, torch.sigmoid(st["alpha"]).mean(1, keepdim=True).expand_as(x))


def test_model_restored_and_early_errors():
    model = Tiny().double().train()
    m = fitted(model)
    assert model.training and all(p.requires_grad for p in model.parameters())
    with pytest.raises(ValueError, match="target out of range"):
        m.attribute(data(2), target=5)
    assert model.training and all(p.requires_grad for p in model.parameters())
    assert all(not mod._forward_hooks for mod in model.modules())
    with pytest.raises(ValueError, match="fitted first"):
        methods.get("input_iba", model, layer="conv").attribute(data(1), target=0)
