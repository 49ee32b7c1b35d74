"""The attribution grid: size, colour maps (diverging centred at zero for signed maps,
sequential from zero otherwise) and the display helpers."""

import numpy as np
import pytest
import torch
from PIL import Image

from attrlab import viz

CELL_PX = round(viz.CELL_INCHES * viz.DPI)


def _grid(tmp_path, maps, signed, n=1, overlay=False, clip=2.0):
    images = torch.linspace(0, 1, n * 64).view(n, 1, 8, 8)
    titles = [f"pred {i} / true {i}" for i in range(n)]
    path = viz.plot_grid(images, maps, signed, titles, tmp_path / "grid.png", overlay=overlay,
                         clip=clip)
    fig = viz.make_grid_figure(images, maps, signed, titles, overlay=overlay, clip=clip)
    fig.canvas.draw()
    return path, fig


def _patch(png: np.ndarray, ax, fx: float, fy: float, r: int = 3) -> np.ndarray:
    """Mean RGB of a small patch at fraction (fx, fy) of an axes (from its top-left)."""
    bb = ax.get_window_extent()
    x = int(bb.x0 + fx * bb.width)
    y = png.shape[0] - int(bb.y1 - fy * bb.height)
    return png[y - r:y + r, x - r:x + r, :3].reshape(-1, 3).mean(0)


def test_png_size_is_proportional_to_rows_and_columns(tmp_path):
    maps = {"a": torch.randn(3, 1, 8, 8), "b": torch.rand(3, 1, 8, 8)}
    path = viz.plot_grid(torch.rand(3, 1, 8, 8), maps, {"a": True, "b": False},
                         ["x"] * 3, tmp_path / "sub" / "g.png")
    assert path == tmp_path / "sub" / "g.png" and path.is_file()
    with Image.open(path) as im:
        assert im.format == "PNG"
        assert im.size == (3 * CELL_PX, 3 * CELL_PX)
    path = viz.plot_grid(torch.rand(2, 3, 8, 8), {"a": torch.randn(2, 3, 8, 8)}, {"a": True},
                         ["x", "y"], tmp_path / "g2.png")
    with Image.open(path) as im:
        assert im.size == (2 * CELL_PX, 2 * CELL_PX)


def test_signed_map_uses_diverging_colormap_centred_at_zero(tmp_path):
    half = torch.ones(1, 1, 8, 8)
    half[..., 4:] = -1.0  # left +1, right -1
    maps = {"zero": torch.zeros(1, 1, 8, 8), "pm": half}
    path, fig = _grid(tmp_path, maps, {"zero": True, "pm": True})
    png = np.asarray(Image.open(path).convert("RGB")).astype(float)
    axes = fig.axes  # input, zero, pm
    white = _patch(png, axes[1], 0.5, 0.5)
    assert white.min() > 235 and white.max() - white.min() < 12, white  # neutral, not black
    red, blue = _patch(png, axes[2], 0.25, 0.5), _patch(png, axes[2], 0.75, 0.5)
    assert red[0] > red[2] + 50, red
    assert blue[2] > blue[0] + 50, blue
    # without clipping small positive values stay close to white: limits are +-max|a|
    weak = torch.full((1, 1, 8, 8), 0.01)
    weak[..., 0, 0] = -1.0
    path, fig = _grid(tmp_path, {"w": weak}, {"w": True}, clip=0)
    png = np.asarray(Image.open(path).convert("RGB")).astype(float)
    assert _patch(png, fig.axes[1], 0.6, 0.6).min() > 225
    # with the default clip (2 %) the one outlier saturates and the rest is clearly red
    path, fig = _grid(tmp_path, {"w": weak}, {"w": True})
    png = np.asarray(Image.open(path).convert("RGB")).astype(float)
    red = _patch(png, fig.axes[1], 0.6, 0.6)
    assert red[0] > red[2] + 50 and red.min() < 120, red  # saturated dark red, not white


def test_color_limits_clip_a_percentile_and_infer_sign():
    heat = np.arange(100.0)  # 0..99
    assert viz.color_limits(heat, False, clip=0) == (0.0, 99.0)
    lo, hi = viz.color_limits(heat, False, clip=2)
    assert lo == 0 and hi == pytest.approx(np.percentile(heat, 98))
    assert viz.color_limits(-heat, True, clip=10)[1] == pytest.approx(np.percentile(heat, 90))
    assert viz.color_limits(np.zeros(4), True) == (-1.0, 1.0)
    sparse = np.zeros(100)
    sparse[0] = 3.0  # the 98th percentile is 0: fall back to the maximum
    assert viz.color_limits(sparse, False, clip=2) == (0.0, 3.0)
    assert viz.infer_signed(torch.tensor([1.0, -0.1])) and not viz.infer_signed(np.ones(3))
    with pytest.raises(ValueError, match="clip"):
        viz.make_grid_figure(torch.rand(1, 1, 8, 8), {"a": torch.rand(1, 1, 8, 8)}, clip=100)


def test_one_colour_bar_per_sign_type(tmp_path):
    maps = {"s": torch.randn(2, 1, 8, 8), "u": torch.rand(2, 1, 8, 8), "v": torch.rand(2, 1, 8, 8)}
    fig = viz.make_grid_figure(torch.rand(2, 1, 8, 8), maps, None)  # signs inferred
    assert len(fig.axes) == 2 * 4 + 2
    labels = sorted(ax.get_ylabel().split(",")[0] for ax in fig.axes[8:])
    assert labels == ["non-negative", "signed"]
    fig = viz.make_grid_figure(torch.rand(2, 1, 8, 8), {"u": maps["u"]}, {"u": False})
    assert len(fig.axes) == 2 * 2 + 1
    fig = viz.make_grid_figure(torch.rand(2, 1, 8, 8), maps, None, colorbar=False)
    assert len(fig.axes) == 2 * 4


def test_nonnegative_map_uses_sequential_colormap_from_zero(tmp_path):
    ramp = torch.zeros(1, 1, 8, 8)
    ramp[..., 4:] = 2.0  # left 0, right max
    maps = {"zero": torch.zeros(1, 1, 8, 8), "ramp": ramp}
    path, fig = _grid(tmp_path, maps, {"zero": False, "ramp": False})
    png = np.asarray(Image.open(path).convert("RGB")).astype(float)
    assert _patch(png, fig.axes[1], 0.5, 0.5).max() < 30  # 0 is the dark end, not white
    low, high = _patch(png, fig.axes[2], 0.25, 0.5), _patch(png, fig.axes[2], 0.75, 0.5)
    assert low.max() < 30
    assert high[0] > 200 and high[1] > 200 and high[2] < 200, high  # bright yellow end
    # the same zero map as a signed map is white: the flag picks the colour map
    path, fig = _grid(tmp_path, {"zero": torch.zeros(1, 1, 8, 8)}, {"zero": True})
    png = np.asarray(Image.open(path).convert("RGB")).astype(float)
    assert _patch(png, fig.axes[1], 0.5, 0.5).min() > 235


def test_overlay_shows_the_input_through_the_heatmap(tmp_path):
    images = torch.zeros(1, 1, 8, 8)
    images[..., 4:] = 1.0  # left black, right white
    maps = {"z": torch.zeros(1, 1, 8, 8)}
    path = viz.plot_grid(images, maps, {"z": True}, ["t"], tmp_path / "o.png", overlay=True)
    fig = viz.make_grid_figure(images, maps, {"z": True}, ["t"], overlay=True)
    fig.canvas.draw()
    png = np.asarray(Image.open(path).convert("RGB")).astype(float)
    dark, light = _patch(png, fig.axes[1], 0.25, 0.5), _patch(png, fig.axes[1], 0.75, 0.5)
    assert light.mean() > dark.mean() + 60
    # a strong positive signed map over the white half is red, not lost in white
    strong = torch.ones(1, 1, 8, 8)
    path = viz.plot_grid(images, {"p": strong}, {"p": True}, ["t"], tmp_path / "p.png",
                         overlay=True)
    png = np.asarray(Image.open(path).convert("RGB")).astype(float)
    px = _patch(png, fig.axes[1], 0.75, 0.5)
    assert px[0] > px[2] + 50 and px[0] > px[1] + 50, px


def test_to_heatmap_denormalize_and_shape_checks():
    a = torch.arange(24.0).view(3, 2, 4)
    assert np.allclose(viz.to_heatmap(a), a.sum(0).numpy())
    assert viz.to_heatmap(a).shape == (2, 4)
    x = torch.tensor([[[-10.0, 0.0, 10.0]]])  # (1, 1, 3)
    d = viz.denormalize(x, (0.5,), (0.1,))
    assert torch.allclose(d, torch.tensor([[[0.0, 0.5, 1.0]]]))
    d = viz.denormalize(torch.zeros(2, 3, 2, 2), (0.1, 0.2, 0.3), (1, 1, 1))
    assert torch.allclose(d[:, :, 0, 0], torch.tensor([[0.1, 0.2, 0.3]] * 2))
    with pytest.raises(ValueError):
        viz.denormalize(torch.zeros(2, 3, 2, 2), (0.1, 0.2), (1, 1))
    with pytest.raises(ValueError, match="map 'a'"):
        viz.make_grid_figure(torch.rand(2, 1, 8, 8), {"a": torch.rand(3, 1, 8, 8)},
                             {"a": True})


def test_grey_inputs_are_shown_in_gray_and_rgb_in_colour(tmp_path):
    grey = torch.zeros(1, 1, 8, 8)
    grey[..., 4:] = 0.5
    maps = {"m": torch.rand(1, 1, 8, 8)}
    path, fig = _grid(tmp_path, maps, {"m": False})
    path = viz.plot_grid(grey, maps, {"m": False}, ["t"], tmp_path / "grey.png")
    png = np.asarray(Image.open(path).convert("RGB")).astype(float)
    left, right = _patch(png, fig.axes[0], 0.25, 0.5), _patch(png, fig.axes[0], 0.75, 0.5)
    assert left.max() < 10
    assert np.all(np.abs(right - 128) < 10), right
    red = torch.zeros(1, 3, 8, 8)
    red[:, 0] = 1.0
    path = viz.plot_grid(red, {"m": torch.rand(1, 3, 8, 8)}, {"m": False}, ["t"],
                         tmp_path / "rgb.png")
    png = np.asarray(Image.open(path).convert("RGB")).astype(float)
    px = _patch(png, fig.axes[0], 0.5, 0.5)
    assert px[0] > 240 and px[1] < 15 and px[2] < 15, px


def test_token_html_colours_paper02_bins_and_escapes():
    from attrlab.viz import token_html, token_levels

    scores = torch.tensor([0.0, 1.0, 2.0, 3.0])  # levels 0, 1/3, 2/3, 1
    assert token_levels(scores).tolist() == pytest.approx([0, 1 / 3, 2 / 3, 1])
    html = token_html({"ig": (["a", "<b>", "c", "d"], scores)}, title="s")
    assert '<span title="0.00">a</span>' in html
    assert 'title="0.33" style="background:#f6a04d">&lt;b&gt;' in html
    assert 'title="0.67" style="background:#e4572e">c' in html
    assert token_levels(torch.ones(3)).tolist() == [0, 0, 0]
    with pytest.raises(ValueError, match="3 tokens but 2 scores"):
        token_html({"x": (["a", "b", "c"], torch.ones(2))})
