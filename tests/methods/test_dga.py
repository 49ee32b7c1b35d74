"""DGA (paper 04, Algorithm 1) against a slow re-implementation written from eqs. 6-12."""

import pytest
import torch
from torch import nn

from attrlab import methods
from attrlab.methods.aggregate.dga import (
    extreme_positive_mask,
    rank_fraction,
    weak_contributor_mask,
)


@pytest.fixture(autouse=True)
def _float64():
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(torch.float32)


def small_net(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(2, 3, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Flatten(), nn.Linear(3 * 2 * 2, 4)).eval()


def slow_dga(model, x, t, N, q, aggregate):
    """Eqs. 6-12 literally, one sample at a time, loops over features j and k."""
    ufg = methods.get("ufg", model)
    out = []
    for i in range(x.shape[0]):
        x0 = x[i:i + 1]
        xn, phis = x0, []
        for n in range(N + 1):
            phi = ufg.attribute(xn, t[i:i + 1]).flatten()
            phis.append(phi)
            d = phi.numel()
            wc = torch.tensor([0.0 if sum(float(abs(phi[k]) <= abs(phi[j])) for k in range(d)) / d
                               <= n / N else 1.0 for j in range(d)])
            epc = torch.tensor([1.0 if sum(float(phi[k] <= phi[j]) for k in range(d)) / d <= q
                                else 0.0 for j in range(d)])
            xn = x0 * ((n / N) * wc + (1 - n / N) * epc).view_as(x0)
        relu = [p.clamp(min=0) for p in phis]
        agg = sum(relu[1:]) / N if aggregate == "mean" else sum(relu)
        out.append(agg.view_as(x0))
    return torch.cat(out)


@pytest.mark.parametrize("aggregate", ["mean", "sum"])
def test_dga_matches_the_definition(aggregate):
    model = small_net()
    torch.manual_seed(1)
    x, t = torch.randn(3, 2, 4, 4), torch.tensor([0, 3, 1])
    got = methods.get("dga", model, n_steps=4, q=0.8, aggregate=aggregate).attribute(x, t)
    torch.testing.assert_close(got, slow_dga(model, x, t, 4, 0.8, aggregate))


def test_masks_and_rank_fraction_by_hand():
    phi = torch.tensor([[3.0, -1.0, 0.5, -4.0]])
    # sorted: -4, -1, 0.5, 3
    torch.testing.assert_close(rank_fraction(phi), torch.tensor([[1.0, 0.5, 0.75, 0.25]]))
    # |phi| = 3, 1, .5, 4 -> fractions .75, .5, .25, 1 ; n/N = 1/2 drops the two weakest
    torch.testing.assert_close(weak_contributor_mask(phi, 1, 2), torch.tensor([[1.0, 0.0, 0.0, 1.0]]))
    # signed ranks .25 (-4), .5 (-1), .75 (.5), 1 (3): q = .75 drops only the top entry
    torch.testing.assert_close(extreme_positive_mask(phi, 0.75), torch.tensor([[0.0, 1.0, 1.0, 1.0]]))
    ties = torch.tensor([[1.0, 1.0, 2.0, 2.0]])
    torch.testing.assert_close(rank_fraction(ties), torch.tensor([[0.5, 0.5, 1.0, 1.0]]))


def test_n_plus_one_passes_batched_and_per_sample_equal():
    model = small_net(2)
    calls = []
    h = model[0].register_forward_hook(lambda m, i, o: calls.append(o.shape[0]))
    torch.manual_seed(3)
    x, t = torch.randn(5, 2, 4, 4), torch.tensor([0, 1, 2, 3, 0])
    dga = methods.get("dga", model, n_steps=6)
    batched = dga.attribute(x, t)
    h.remove()
    assert calls == [5] * 7  # N + 1 batched forward passes, nothing else
    for i in range(5):
        torch.testing.assert_close(dga.attribute(x[i:i + 1], t[i:i + 1]), batched[i:i + 1])
    assert (batched >= 0).all()
    seq = dga.local_attributions(x, t)
    assert seq.shape == (7,) + x.shape
    torch.testing.assert_close(seq[0], methods.get("ufg", model).attribute(x, t))


def test_gxi_local_attribution_option_and_errors():
    model = small_net()
    x, t = torch.randn(2, 2, 4, 4), torch.tensor([1, 2])
    a = methods.get("dga", model, n_steps=3, local="gxi").local_attributions(x, t)
    torch.testing.assert_close(a[0], methods.get("gxi", model).attribute(x, t))
    for kw, words in [({"n_steps": 0}, "n_steps"), ({"q": 1.5}, "q"), ({"local": "ig"}, "local"),
                      ({"aggregate": "max"}, "aggregate")]:
        with pytest.raises(ValueError, match=words):
            methods.get("dga", model, **kw)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_rank_at_most_matches_rank_fraction(dtype):
    """The kthvalue shortcut gives exactly the sorted-rank comparison of eqs. 6 and 9, ties
    and boundary fractions (n/N, q) included."""
    from attrlab.methods.aggregate.dga import rank_at_most

    g = torch.Generator().manual_seed(0)
    cont = torch.randn(5, 3, 8, 8, generator=g, dtype=dtype)
    ties = torch.randint(-3, 4, (5, 3, 8, 8), generator=g).to(dtype)
    for values in (cont, ties, cont.abs(), torch.zeros(2, 7, dtype=dtype)):
        fractions = [n / 30 for n in range(31)] + [0.9, 0.25, 1 / 192, 0.5 + 1e-9]
        for frac in fractions:
            assert torch.equal(rank_at_most(values, frac), rank_fraction(values) <= frac), frac


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_step_mask_equals_eq11_sum_of_the_two_masks(dtype):
    """DGA's fused mask is, bit for bit, (n/N) M^WC + (1 - n/N) M^EPC (eq. 11), ties too."""
    dga = methods.get("dga", nn.Sequential(nn.Flatten(), nn.Linear(192, 3)), n_steps=30)
    phi = torch.randn(4, 3, 8, 8, generator=torch.Generator().manual_seed(5), dtype=dtype)
    phi[0, 0, :2] = 0.0
    phi[1] = phi[1].round()
    for n in range(30):
        w = n / 30
        ref = w * weak_contributor_mask(phi, n, 30) + (1 - w) * extreme_positive_mask(phi, 0.9)
        assert torch.equal(dga._mask(phi, n, 30, 0.9), ref), n
