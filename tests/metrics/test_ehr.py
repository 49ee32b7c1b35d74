"""EHR (paper 02, section 4.5): the numeric checks of the implementation notes and of the
authors' tests, a hand-computed case, agreement with a one-image-at-a-time NumPy version of
the authors' algorithm, and the map left unmodified."""

import numpy as np
import pytest
import torch
from scipy.integrate import trapezoid
from torch import nn

from attrlab import metrics

pytestmark = pytest.mark.usefixtures("one_thread")


class Unused(nn.Module):
    def forward(self, x):
        raise AssertionError("EHR must not run the model")


def ehr(heat, boxes, **kw):
    """Scores and curve of (N, H, W) heat maps with (N, 4) boxes."""
    heat = torch.as_tensor(heat, dtype=torch.float64)
    x = torch.zeros(heat.shape[0], 1, *heat.shape[1:], dtype=torch.float64)
    return metrics.get("ehr", **kw).compute(Unused(), x, torch.zeros(len(x), dtype=torch.long),
                                            heat[:, None], ground_truth={
                                                "boxes": torch.as_tensor(boxes).view(-1, 4)})


def test_the_notes_numeric_checks():
    heat = np.zeros((1, 500, 500))
    heat[0, 100:350, 100:350] = 1.0
    assert ehr(heat, [100, 100, 350, 350]).scores.item() == pytest.approx(1.0, abs=0.01)
    heat[:] = 0
    heat[0, 100:300, 100:300] = 1.0  # the authors' case 1: heat inside a part of the box
    assert ehr(heat, [100, 100, 350, 350]).scores.item() == pytest.approx(1.0, abs=0.01)
    ring = np.zeros((1, 100, 100))
    ring[0, 20:80, 20:80] = 0.9
    ring[0, 40:60, 40:60] = 1.0
    assert ehr(ring, [40, 40, 60, 60]).scores.item() < 0.8


def test_a_case_by_hand():
    """4 x 4 map, heat 1 at (0, 0) [inside], 0.5 at (0, 1) [inside], 0.5 at (3, 3)
    [outside], 0.05 elsewhere (below the base threshold). POI heats {1, .5, .5}; with 3
    quantiles q = 0, .5, 1: t = .5, .5, min(1, .99) = .99."""
    heat = torch.full((1, 4, 4), 0.05, dtype=torch.float64)
    heat[0, 0, 0], heat[0, 0, 1], heat[0, 3, 3] = 1.0, 0.5, 0.5
    heat[0, 2, 2] = 0.0  # min 0: the min-max scaling leaves the map as it is
    r = ehr(heat, [0, 0, 2, 2], n_quantiles=3)
    expected = torch.tensor([[1.5 / 3, 1.5 / 3, 1.0]], dtype=torch.float64)
    torch.testing.assert_close(r.curve[1], expected)
    torch.testing.assert_close(r.scores, torch.tensor([0.5 * (0.5 + 0.5) / 2 + 0.5 * 1.5 / 2],
                                                      dtype=torch.float64))
    # unweighted: pixel counts
    r = ehr(heat, [0, 0, 2, 2], n_quantiles=3, weight_by_heat=False)
    torch.testing.assert_close(r.curve[1], torch.tensor([[2 / 3, 2 / 3, 1.0]], dtype=torch.float64))


def authors_ehr(heat, box, base=0.1):
    """The authors' algorithm for one map in [0, 1] (on a copy)."""
    heat = heat.copy()
    roi = np.zeros_like(heat, dtype=bool)
    x1, y1, x2, y2 = box
    roi[y1:y2, x1:x2] = True
    poi_mask = heat >= base
    heat[~poi_mask] = 0.0
    poi = heat[poi_mask]
    qs = np.linspace(0, 1, 11)
    ratios = []
    for q in qs:
        t = min(np.quantile(poi, q), heat.max() * 0.99)
        b = heat >= t
        ratios.append(heat[b & roi].sum() / (b.sum() + 1e-8))
    return trapezoid(ratios, qs)


def test_agrees_with_the_authors_algorithm_on_random_maps():
    g = np.random.default_rng(0)
    heat = g.random((6, 12, 10)) ** 3
    heat = (heat - heat.min((1, 2), keepdims=True)) / np.ptp(heat, (1, 2), keepdims=True)
    boxes = np.array([[0, 0, 5, 5], [2, 3, 9, 12], [1, 1, 2, 2], [0, 0, 10, 12],
                      [4, 4, 8, 6], [3, 0, 10, 7]])
    ours = ehr(heat, boxes, batch_size=4).scores.numpy()
    ref = [authors_ehr(h, b) for h, b in zip(heat, boxes)]
    np.testing.assert_allclose(ours, ref, rtol=1e-7, atol=1e-12)  # quantile rounding


def test_scaling_channels_and_input_untouched():
    g = torch.Generator().manual_seed(0)
    a = torch.randn(3, 3, 8, 8, generator=g, dtype=torch.float64)
    x = torch.zeros_like(a)
    boxes = torch.tensor([[0, 0, 4, 4], [2, 2, 8, 8], [1, 3, 5, 7]])
    kept = a.clone()
    m = metrics.get("ehr")
    s = m.evaluate(Unused(), x, [0, 1, 2], a, ground_truth={"boxes": boxes})
    assert torch.equal(a, kept)
    # invariant to a positive affine change of the map, and it uses the channel mean
    s2 = m.evaluate(Unused(), x, [0, 1, 2], 3 * a + 2, ground_truth={"boxes": boxes})
    s3 = m.evaluate(Unused(), x, [0, 1, 2], a.mean(1, keepdim=True).expand_as(a),
                    ground_truth={"boxes": boxes})
    torch.testing.assert_close(s, s2)
    torch.testing.assert_close(s, s3)
    # a constant map has no points of interest after scaling: 0
    assert m.evaluate(Unused(), x, [0, 1, 2], torch.ones_like(a),
                      ground_truth={"boxes": boxes}).eq(0).all()
    with pytest.raises(ValueError, match="boxes"):
        m.evaluate(Unused(), x, [0, 1, 2], a, ground_truth={"boxes": boxes + 5})


def test_selection_by_box_area_and_target_probability():
    from attrlab.metrics.localisation import ehr_selection

    class Fixed(nn.Module):
        def forward(self, x):  # logits: sample i has probability p_i for class 0
            p = torch.tensor([0.9, 0.5, 0.7, 0.95], dtype=x.dtype)
            return torch.stack([torch.log(p), torch.log(1 - p)], 1)

    x = torch.zeros(4, 1, 10, 10)
    boxes = torch.tensor([[0, 0, 5, 5], [0, 0, 2, 2], [0, 0, 6, 6], [0, 0, 3, 11]])
    keep = ehr_selection(Fixed().train(), x, torch.zeros(4, dtype=torch.long), boxes)
    assert keep.tolist() == [True, False, False, True]  # 25 %, p .5, 36 %, 33 % and p .95
