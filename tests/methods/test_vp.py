"""VP and nVP (paper 05): the fit is deterministic under its generator and resumes to the
same weights, leaves the classifier as it was, saves and loads with weights_only=True, and
learns where a known classifier looks."""

import io

import pytest
import torch
from torch import nn

from attrlab import methods

pytestmark = pytest.mark.usefixtures("one_thread")

TINY = dict(width=4, depth=2, topk_iters=20, batch_size=4, progress=False)


class Quadrant(nn.Module):
    """Two logits that read only the top-left 4 x 4 quadrant of an 8 x 8 image."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(64, 2)
        with torch.no_grad():
            w = torch.zeros(8, 8)
            w[:4, :4] = 1.0
            self.fc.weight.copy_(torch.stack([w, -w]).flatten(1))
            self.fc.bias.zero_()

    def forward(self, x):
        return self.fc(x.flatten(1))


def data(n=10, seed=0, dtype=torch.float32):
    return torch.randn(n, 1, 8, 8, generator=torch.Generator().manual_seed(seed), dtype=dtype)


def weights(m):
    return {k: v.clone() for k, v in m.state_dict()["explainers"]["2"]["weights"].items()}


def same(a, b):
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("name", ["vp", "nvp"])
def test_fit_is_deterministic_under_its_generator(name):
    model = Quadrant()
    fit = lambda seed: weights(methods.get(name, model, max_steps=4, **TINY).fit(  # noqa: E731
        data(), generator=torch.Generator().manual_seed(seed)))
    assert same(fit(1), fit(1))
    assert not same(fit(1), fit(2))
    rng = torch.get_rng_state()
    fit(1)
    assert torch.equal(rng, torch.get_rng_state()), "fit drew from the global RNG"


def test_an_interrupted_fit_resumes_to_the_same_weights(tmp_path):
    model = Quadrant()
    straight = methods.get("vp", model, max_steps=5, epochs=5, **TINY).fit(data(),
                                                                           generator=None)
    ck = tmp_path / "vp.ckpt"
    # 10 samples in batches of 4: 3 steps per epoch, so the resumed fit crosses an epoch
    methods.get("vp", model, max_steps=2, epochs=5, save_every=1, **TINY).fit(data(),
                                                                              checkpoint=ck)
    resumed = methods.get("vp", model, max_steps=5, epochs=5, **TINY).fit(data(), checkpoint=ck)
    assert same(weights(straight), weights(resumed))
    assert resumed.configs[2]["steps"] == 5 and resumed.configs[2]["epochs"] == 1
    with pytest.raises(ValueError, match="other settings"):
        methods.get("vp", model, max_steps=6, **{**TINY, "lr": 0.1}).fit(data(), checkpoint=ck)


def test_fit_leaves_the_classifier_as_it_was():
    model = nn.Sequential(nn.Conv2d(1, 3, 3, padding=1), nn.BatchNorm2d(3), nn.ReLU(),
                          nn.Dropout(0.5), nn.Flatten(), nn.Linear(192, 3)).train()
    model[0].weight.requires_grad_(False)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    flags = [p.requires_grad for p in model.parameters()]
    methods.get("vp", model, max_steps=3, **TINY).fit(data())
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())
    assert model.training and all(m.training for m in model.modules())
    assert [p.requires_grad for p in model.parameters()] == flags
    assert all(p.grad is None for p in model.parameters())


@pytest.mark.parametrize("name", ["vp", "nvp"])
def test_state_dict_round_trip_with_weights_only(name, tmp_path):
    model = Quadrant()
    m = methods.get(name, model, max_steps=2, **TINY).fit(data())
    torch.save(m.state_dict(), tmp_path / "s.pt")
    state = torch.load(tmp_path / "s.pt", weights_only=True)
    m2 = methods.get(name, model).load_state_dict(state)
    x = data(3, seed=5)
    assert torch.equal(m.attribute(x, 0), m2.attribute(x, 0))
    other = methods.get("nvp" if name == "vp" else "vp", model)
    with pytest.raises(ValueError, match="explainer"):
        other.load_state_dict(state)


def test_explanation_is_the_posterior_mean_and_samples_are_on_request():
    model = Quadrant()
    vp = methods.get("vp", model, max_steps=2, **TINY).fit(data())
    x = data(3, seed=6)
    post = vp.posterior(x, 4, generator=torch.Generator().manual_seed(0))
    assert torch.equal(vp.attribute(x, 1), post["mean"])
    assert post["samples"].shape == (4, 3, 1, 8, 8) and (post["std"] > 0).all()
    draw = vp.attribute(x, 1, sample=True, generator=torch.Generator().manual_seed(0))
    assert not torch.equal(draw, post["mean"])
    assert torch.equal(draw, vp.attribute(x, 1, sample=True,
                                          generator=torch.Generator().manual_seed(0)))
    nvp = methods.get("nvp", model, max_steps=2, **TINY).fit(data())
    assert (nvp.posterior(x, 2)["std"] == 0).all()


def test_several_upsample_sizes_and_named_errors():
    model = Quadrant()
    vp = methods.get("vp", model, max_steps=1, **TINY).fit(data())
    x = data(2, seed=7)
    with pytest.raises(ValueError, match="no explainer for upsample=4"):
        vp.attribute(x, 0, upsample=4)
    vp.fit(data(), upsample=4)
    assert vp.attribute(x, 0, upsample=4).shape == x.shape
    with pytest.raises(ValueError, match="power of two"):
        methods.get("vp", model, upsample=3)
    with pytest.raises(ValueError, match="divisible"):
        methods.get("vp", model, upsample=16, max_steps=1, **TINY).fit(data())
    with pytest.raises(ValueError, match="fitted on images of shape"):
        vp.attribute(torch.zeros(2, 1, 16, 16), 0)
    with pytest.raises(ValueError, match="must be fitted first"):
        methods.get("vp", model).attribute(x, 0)


def test_fit_takes_a_data_loader():
    from torch.utils.data import DataLoader, TensorDataset

    model = Quadrant()
    loader = DataLoader(TensorDataset(data(), torch.zeros(10)), batch_size=4)
    vp = methods.get("vp", model, epochs=2, **TINY).fit(loader)
    assert vp.configs[2]["steps"] == 6


@pytest.mark.parametrize("name", ["vp", "nvp"])
def test_learns_where_the_classifier_looks(name):
    """The classifier reads only the top-left quadrant: after training, the explainer's mean
    ranks that quadrant above the rest of the image for unseen inputs."""
    model = Quadrant()
    m = methods.get(name, model, upsample=2, width=8, depth=3, topk_iters=30, batch_size=16,
                    epochs=30, lr=1e-2, baseline="noise", progress=False)
    m.fit(data(64, seed=1) * 2)
    a = m.attribute(data(8, seed=9) * 2, 0)[:, 0]
    inside = a[:, :4, :4].mean((1, 2))
    outside = (a.sum((1, 2)) - a[:, :4, :4].sum((1, 2))) / 48
    assert (inside - outside > 1.0).all(), (inside, outside)  # untrained: about 0.1


def test_concrete_subset_keeps_at_most_k_and_follows_the_logits():
    from attrlab.methods.learned.l2x import concrete_subset

    logits = torch.tensor([[4.0, 4.0, 4.0, -4.0, -4.0, -4.0, -4.0, -4.0]]).repeat(2000, 1)
    v = concrete_subset(logits, 3, 0.1, torch.Generator().manual_seed(0))
    assert v.shape == logits.shape and (v >= 0).all() and (v <= 1).all()
    total = v.sum(1)
    assert (total <= 3 + 1e-5).all() and total.mean() < 3  # duplicates: fewer than k
    assert v[:, :3].mean() > 10 * v[:, 3:].mean()
    # the same generator state, the same draw
    torch.testing.assert_close(v, concrete_subset(logits, 3, 0.1,
                                                  torch.Generator().manual_seed(0)))


def test_l2x_learns_where_the_classifier_looks():
    model = Quadrant()
    m = methods.get("l2x", model, upsample=2, width=8, depth=3, batch_size=16, epochs=60,
                    lr=1e-2, k_fraction=0.25, progress=False)
    m.fit(data(64, seed=1) * 2)
    a = m.attribute(data(8, seed=9) * 2, 0)[:, 0]
    inside = a[:, :4, :4].mean((1, 2))
    outside = (a.sum((1, 2)) - a[:, :4, :4].sum((1, 2))) / 48
    assert (inside - outside > 1.0).all(), (inside, outside)
    buf = io.BytesIO()
    torch.save(m.state_dict(), buf)
    buf.seek(0)
    state = torch.load(buf, weights_only=True)
    assert torch.equal(methods.get("l2x", model).load_state_dict(state).attribute(
        data(2, seed=3), 0), m.attribute(data(2, seed=3), 0))
    with pytest.raises(ValueError, match="l2x explainer"):
        methods.get("nvp", model).load_state_dict(state)
