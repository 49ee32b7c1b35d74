"""Attribution mask (paper 01 Algorithm 1, eq. 11) and masked-input accuracy (eq. 12)."""

import pytest
import torch
from torch import nn

from attrlab import methods, metrics
from attrlab.data import digits
from attrlab.methods.aggregate.attribution_mask import minmax
from attrlab.models import load_checkpoint


def test_minmax_per_sample_and_channel():
    a = torch.tensor([[[[1.0, 3.0], [2.0, 5.0]], [[-1.0, -1.0], [-1.0, -1.0]]]])
    out = minmax(a)
    torch.testing.assert_close(out[0, 0], torch.tensor([[0.0, 0.5], [0.25, 1.0]]))
    torch.testing.assert_close(out[0, 1], torch.zeros(2, 2))  # max == min: denominator 1
    flat = minmax(torch.tensor([[2.0, 4.0, 3.0]]))
    torch.testing.assert_close(flat, torch.tensor([[0.0, 1.0, 0.5]]))


def test_gxsi_mask_on_a_linear_model_by_hand():
    torch.manual_seed(0)
    lin = nn.Sequential(nn.Flatten(), nn.Linear(6, 3, bias=False))
    x = torch.randn(2, 1, 2, 3)
    t = torch.tensor([0, 2])
    w = lin[1].weight[t].detach().view(2, 1, 2, 3)
    m1 = minmax(w * x.sign())
    m2 = m1 * minmax(w * (x * m1).sign())
    masks = methods.get("attribution_mask", lin, iterations=2).masks(x, t)
    assert masks.shape == (3, 2, 1, 2, 3)
    torch.testing.assert_close(masks[0], torch.ones_like(x))
    torch.testing.assert_close(masks[1], m1)
    torch.testing.assert_close(masks[2], m2)
    torch.testing.assert_close(methods.get("attribution_mask", lin, iterations=2).attribute(x, t), m2)
    # batched over samples == one sample at a time
    one = methods.get("attribution_mask", lin, iterations=2).masks(x[1:], t[1:])
    torch.testing.assert_close(one[:, 0], masks[:, 1])


@pytest.fixture(scope="module")
def nib_digits():
    model, _ = load_checkpoint("digits_nib_cnn")
    x, y = digits("test").tensors(torch.arange(48))
    return model.double(), x.double(), y


def mia_curve(model, x, y, name, **opts):
    method = methods.get(name, model, **opts)
    return metrics.get("mia", iterations=4).curve(model, x, y, torch.zeros_like(x), method)[1]


def test_mia_equal_for_gxi_ig_deeplift_on_nib_model(nib_digits):
    """Paper 01, Table 2: on a NIB model GxI, DeepLIFT and IG (zero baselines) give the same
    MIA, because their maps coincide (Appendix A)."""
    model, x, y = nib_digits
    gxi = mia_curve(model, x, y, "gxi")
    assert torch.equal(gxi, mia_curve(model, x, y, "deeplift"))
    assert torch.equal(gxi, mia_curve(model, x, y, "ig", n_steps=8))
    assert gxi[:, 0].mean() == (model(x).argmax(1) == y).double().mean()  # i = 0: plain accuracy
    # ... and a different method generally does not
    assert not torch.equal(gxi, mia_curve(model, x, y, "gbp"))


def test_mia_metric_needs_the_method_and_scores_last_iteration(nib_digits):
    model, x, y = nib_digits
    mia = metrics.get("mia", iterations=3)
    method = methods.get("gxsi", model)
    scores = mia.evaluate(model, x, y, torch.zeros_like(x), method=method)
    curve = mia.curve(model, x, y, torch.zeros_like(x), method)[1]
    assert torch.equal(scores, curve[:, -1]) and set(scores.tolist()) <= {0.0, 1.0}
    with pytest.raises(ValueError, match="needs the attribution method"):
        mia.evaluate(model, x, y, torch.zeros_like(x))
    with pytest.raises(ValueError, match="iterations"):
        metrics.get("mia", iterations=0)
