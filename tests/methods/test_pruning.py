"""PruneGrad / PrunePGD (paper 03) and the activation masks behind them."""

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from attrlab import methods
from attrlab.core.activation_masks import (
    calibrate_percentage,
    iterative_percentage,
    prune_masks,
    pruned_forward,
    relative_output_change,
    relu_importance,
)
from attrlab.methods.base import target_gradient

pytestmark = pytest.mark.usefixtures("one_thread")


class Tiny(nn.Module):
    """y = C relu(B relu(A x)), with functional F.relu: two ReLU calls."""

    def __init__(self):
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.A = nn.Parameter(torch.randn(5, 3, generator=g, dtype=torch.float64))
        self.B = nn.Parameter(torch.randn(4, 5, generator=g, dtype=torch.float64))
        self.C = nn.Parameter(torch.randn(2, 4, generator=g, dtype=torch.float64))

    def forward(self, x):
        return F.relu(F.relu(x @ self.A.T) @ self.B.T) @ self.C.T


def closed_form(net, x, t):
    """Activations, dy/da and the pruned net's input gradient written out by hand."""
    A, B, C = net.A.detach(), net.B.detach(), net.C.detach()
    z1 = x @ A.T
    a1 = z1.clamp(min=0)
    z2 = a1 @ B.T
    a2 = z2.clamp(min=0)
    g2 = C[t]                                   # dy/da2
    g1 = (g2 * (z2 > 0)) @ B                    # dy/da1
    return a1, a2, g1, g2, z1, z2, (A, B, C)


def test_scores_and_one_global_threshold_per_sample_closed_form():
    net = Tiny()
    x = torch.randn(6, 3, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    t = torch.tensor([0, 1, 0, 1, 1, 0])
    a1, a2, g1, g2, _, _, _ = closed_form(net, x, t)
    scores, y = relu_importance(net, x, t)
    torch.testing.assert_close(scores[0], (a1 * g1).abs())
    torch.testing.assert_close(scores[1], (a2 * g2).abs())
    torch.testing.assert_close(y, net(x).gather(1, t[:, None])[:, 0])
    pooled = torch.cat([scores[0], scores[1]], 1)            # 9 neurons per sample
    for p in (0.0, 30.0, 50.0, 80.0, 100.0):
        k = math.floor(p / 100 * 9)
        masks = prune_masks(scores, p)
        keep = torch.cat(masks, 1).bool()
        for i in range(len(x)):
            expect = torch.ones(9, dtype=torch.bool) if k == 0 else \
                pooled[i] > pooled[i].sort().values[k - 1]
            assert torch.equal(keep[i], expect), (p, i)
        # zero activations are pruned as soon as anything is
        if k > 0:
            assert not keep[torch.cat([a1, a2], 1) == 0].any()
    # the threshold is global: the pruned count per sample is over both layers together
    keep = torch.cat(prune_masks(scores, 50.0), 1)
    assert (keep.sum(1) <= 9 - 4).all()


def test_prunegrad_is_the_gradient_of_the_pruned_network_closed_form():
    net = Tiny()
    x = torch.randn(4, 3, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    t = torch.tensor([1, 0, 0, 1])
    a1, _, _, _, z1, z2, (A, B, C) = closed_form(net, x, t)
    m1, m2 = prune_masks(relu_importance(net, x, t)[0], 40.0)
    # d/dx of C_t (m2 * relu(B (m1 * relu(A x))))
    d2 = C[t] * m2 * (z2 > 0)
    d1 = (d2 @ B) * m1 * (z1 > 0)
    expect = d1 @ A
    pg = methods.get("prunegrad", net, percentage=40.0, channel_reduction=None)
    torch.testing.assert_close(pg.attribute(x, target=t), expect)
    # the pruned forward really is that network
    out = pruned_forward(net, x, [m1, m2])
    torch.testing.assert_close(out, (m2 * ((m1 * a1) @ B.T).clamp(min=0)) @ C.T)


class Reused(nn.Module):
    """One in-place ReLU module called twice, and a functional relu."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.c1, self.c2 = nn.Conv2d(3, 4, 3, padding=1), nn.Conv2d(4, 4, 3, padding=1)
        self.relu = nn.ReLU(inplace=True)
        self.fc = nn.Linear(4 * 8 * 8, 3)

    def forward(self, x):
        h = self.relu(self.c1(x))
        h = self.relu(self.c2(h)) + h
        return self.fc(F.relu(h).flatten(1))


def _x(n=3, size=8):
    return torch.randn(n, 3, size, size, generator=torch.Generator().manual_seed(3))


@pytest.mark.parametrize("name", ["prunegrad", "prunepgd"])
def test_pruning_zero_percent_is_the_plain_gradient(name):
    net = Reused()
    x, t = _x(), torch.tensor([0, 2, 1])
    grad, _ = target_gradient(net, x, t)
    m = methods.get(name, net, percentage=0.0, channel_reduction=None)
    if name == "prunegrad":
        torch.testing.assert_close(m.attribute(x, target=t), grad)
    else:  # one PGD step from 0 is step * g / ||g||
        one = m.attribute(x, target=t, iterations=1, step=0.05, eps=1.0)
        norm = grad.flatten(1).norm(dim=1).view(-1, 1, 1, 1)
        torch.testing.assert_close(one, 0.05 * grad / norm)
    # channel reduction: per pixel the channel of largest magnitude
    red = methods.get("prunegrad", net, percentage=0.0).attribute(x, target=t)
    idx = grad.abs().argmax(1, keepdim=True)
    torch.testing.assert_close(red, grad.gather(1, idx).expand_as(grad))


def test_prunepgd_stays_in_the_l2_ball_and_ascends():
    net = Reused()
    x, t = _x(), torch.tensor([0, 2, 1])
    m = methods.get("prunepgd", net, percentage=60.0, channel_reduction=None)
    for eps in (0.05, 0.3):
        d = m.attribute(x, target=t, eps=eps, step=0.02, iterations=20)
        assert (d.flatten(1).norm(dim=1) <= eps * (1 + 1e-5)).all()
    d = m.attribute(x, target=t, eps=0.3, step=0.02, iterations=20)
    masks = m.masks(x, t, (), m.resolve_options({}))
    with torch.no_grad():
        before = pruned_forward(net, x, masks).gather(1, t[:, None])
        after = pruned_forward(net, x + d, masks).gather(1, t[:, None])
    assert (after > before).all()
    # scale_to keeps the per-pixel RMS: at 8 px, eps given for 16 px is halved
    s = m.attribute(x, target=t, eps=0.3, step=0.02, iterations=20, scale_to=16)
    assert (s.flatten(1).norm(dim=1) <= 0.15 * (1 + 1e-5)).all()


def test_calibration_search_closed_form():
    # mean change c(p) = (p / 100)^2: threshold 0.15 is reached at p = 100 * sqrt(0.15)
    p, c = calibrate_percentage(lambda ps: torch.tensor([(q / 100) ** 2 for q in ps]), 0.15)
    assert abs(p - 100 * math.sqrt(0.15)) < 0.01 and abs(c - 0.15) < 1e-3
    p, _ = calibrate_percentage(lambda ps: torch.tensor([q / 1000 for q in ps]), 0.5)
    assert p == 100.0  # never reached: prune everything there is


def test_fit_hits_the_threshold_and_state_round_trips(tmp_path):
    net = Reused()
    data = _x(40)
    pg = methods.get("prunegrad", net, output_change=0.2, calibration_samples=32)
    with pytest.raises(ValueError, match="must be fitted"):
        pg.attribute(data[:2])
    pg.fit(data)
    p = pg.state_dict()["percentage"]
    assert 0 < p < 100
    # recompute the mean change at the fitted percentage independently, on the same samples
    pick = torch.randperm(40, generator=torch.Generator().manual_seed(0))[:32].sort().values
    x = data[pick]
    t = net(x).argmax(1)
    scores, y = relu_importance(net, x, t)
    with torch.no_grad():
        out = pruned_forward(net, x, prune_masks(scores, p)).gather(1, t[:, None])[:, 0]
    change = relative_output_change(out, y).mean().item()
    assert change == pytest.approx(pg.state_dict()["mean_change"], rel=1e-5)
    assert abs(change - 0.2) < 0.03
    torch.save(pg.state_dict(), tmp_path / "s.pt")
    other = methods.get("prunepgd", net).load_state_dict(
        torch.load(tmp_path / "s.pt", weights_only=True))
    assert other.percentage() == p
    torch.testing.assert_close(
        methods.get("prunegrad", net).load_state_dict(pg.state_dict()).attribute(data[:2]),
        pg.attribute(data[:2]))


def test_iterative_variant_stops_at_the_last_percentage_within_the_threshold():
    net = Reused()
    x, t = _x(4), torch.tensor([0, 1, 2, 0])
    scores, y = relu_importance(net, x, t)
    p = iterative_percentage(net, x, t, scores, y, 0.1, step=5.0)
    for i in range(4):
        def change(q, i=i):
            with torch.no_grad():
                out = pruned_forward(net, x[i:i + 1], prune_masks([s[i:i + 1] for s in scores], q))
            return relative_output_change(out[0, t[i]], y[i]).item()
        q = p[i].item()
        assert all(change(r) <= 0.1 for r in torch.arange(5.0, q + 1, 5.0).tolist())
        assert q == 100.0 or change(q + 5.0) > 0.1
    m = methods.get("prunegrad", net, calibration="iterative", step=5.0)
    batch = m.attribute(x, target=t)
    single = torch.cat([m.attribute(x[i:i + 1], target=t[i:i + 1]) for i in range(4)])
    torch.testing.assert_close(batch, single)


def test_a_model_without_relu_is_refused():
    net = nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 4), nn.Tanh(), nn.Linear(4, 2))
    with pytest.raises(ValueError, match="no ReLU call"):
        methods.get("prunegrad", net, percentage=50.0).attribute(_x(2), target=0)
    with pytest.raises(ValueError, match="no ReLU call"):
        methods.get("prunepgd", net).fit(_x(4))


def test_torchvision_resnet18_reused_inplace_relu_and_model_restored():
    tv = pytest.importorskip("torchvision")
    torch.manual_seed(0)
    net = tv.models.resnet18(num_classes=5).train()
    net.requires_grad_(True)
    state = {k: v.clone() for k, v in net.state_dict().items()}
    x, t = _x(2, 32), torch.tensor([1, 4])
    scores, _ = relu_importance(net.eval(), x, t)
    net.train()
    assert len(scores) == 17  # the stem, and two calls of each block's one (reused) ReLU
    m = methods.get("prunegrad", net, percentage=0.0, channel_reduction=None)
    net.eval()
    grad, _ = target_gradient(net, x, t)
    net.train()
    torch.testing.assert_close(m.attribute(x, target=t), grad, rtol=1e-4, atol=1e-6)
    assert net.training and all(p.requires_grad for p in net.parameters())
    out = methods.get("prunepgd", net, percentage=70.0, iterations=2).attribute(x, target=t)
    assert out.shape == x.shape and torch.isfinite(out).all()
    assert net.training and all(p.requires_grad for p in net.parameters())
    for k, v in net.state_dict().items():
        assert torch.equal(v, state[k]), k
    assert not any(mod._forward_hooks or mod._forward_pre_hooks for mod in net.modules())


def test_registry_metadata():
    for name, cost in (("prunegrad", 2.0), ("prunepgd", 21.0)):
        cls = methods.method_class(name)
        assert cls.needs_data and cls.signed and not cls.random
        assert cls.cost() == cost
    assert methods.method_class("prunepgd").cost(iterations=5) == 6.0
    assert methods.method_class("prunegrad").cost(calibration="iterative", step=2.0) == 52.0
