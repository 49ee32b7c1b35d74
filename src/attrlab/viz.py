"""Pictures of attribution maps: one row per input, the input then one heatmap per method.

Colour maps follow the sign convention of each method (``Attribution.signed``):

* signed maps use the diverging :data:`DIVERGING` colour map with symmetric limits
  ``+-L`` per map, so a zero attribution is white, positive red and negative blue;
* non-negative maps use the sequential :data:`SEQUENTIAL` colour map from 0 to ``L``.

``L`` is per map (per input and method) and by default the 98th percentile of |a|
(``clip=2``, Captum's ``outlier_perc=2``), so the few largest values saturate instead of
washing out the rest; ``clip=0`` uses max |a|. The pictures compare *where* a method puts its
mass, not magnitudes across methods; ``L`` is written under each heatmap and one colour bar
per sign type gives the scale in units of ``L``.

Only the object-oriented matplotlib API with the Agg canvas is used, so nothing touches
``pyplot``'s global figure registry and no window is ever opened.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from torch import Tensor

DIVERGING = "RdBu_r"
SEQUENTIAL = "inferno"
#: Size of one grid cell (inches) and the resolution of written PNGs: a grid of R rows and
#: C columns is exactly ``C * CELL_INCHES * DPI`` by ``R * CELL_INCHES * DPI`` pixels.
CELL_INCHES = 1.3
DPI = 100
#: Largest opacity of a heatmap drawn over the greyscale input with ``overlay=True`` (it
#: grows with |a| from 0 at zero).
OVERLAY_ALPHA = 0.85


def denormalize(x: Tensor, mean: Sequence[float], std: Sequence[float]) -> Tensor:
    """Undo ``(x - mean) / std`` per channel for display; the result is clamped to [0, 1].

    ``x`` is (C, H, W) or (N, C, H, W); ``mean``/``std`` have one entry per channel (or one
    entry for all channels).
    """
    x = torch.as_tensor(x).detach().float().cpu()
    if x.dim() not in (3, 4):
        raise ValueError(f"denormalize expects (C, H, W) or (N, C, H, W), got {tuple(x.shape)}")
    shape = (-1, 1, 1)
    m = torch.as_tensor(mean, dtype=x.dtype).reshape(shape)
    s = torch.as_tensor(std, dtype=x.dtype).reshape(shape)
    channels = x.shape[-3]
    for name, t in (("mean", m), ("std", s)):
        if t.shape[0] not in (1, channels):
            raise ValueError(f"{name} has {t.shape[0]} entries but the images have "
                             f"{channels} channels")
    return (x * s + m).clamp(0.0, 1.0)


def to_heatmap(attr: Tensor) -> np.ndarray:
    """A (C, H, W) attribution map -> (H, W) heatmap: the sum over channels."""
    a = torch.as_tensor(attr).detach().float().cpu()
    if a.dim() == 2:
        return a.numpy()
    if a.dim() != 3:
        raise ValueError(f"to_heatmap expects a (C, H, W) map, got shape {tuple(a.shape)}")
    return a.sum(0).numpy()


def color_limits(heat: np.ndarray, signed: bool, clip: float = 0.0) -> tuple[float, float]:
    """(vmin, vmax) for one heatmap: +-L if signed, else (0, L); never empty.

    L is the ``100 - clip`` percentile of |a| (Captum's ``outlier_perc``: ``clip=2`` lets the
    2 % largest values saturate so that a few extreme pixels do not leave the rest of an IG
    or DeepLIFT map blank); ``clip=0`` gives max |a|. An all-zero map gets L = 1.
    """
    finite = heat[np.isfinite(heat)]
    mags = np.abs(finite) if signed else np.clip(finite, 0, None)
    lim = 0.0
    if mags.size:
        lim = float(np.percentile(mags, 100.0 - clip)) if clip > 0 else float(mags.max())
        if lim <= 0:  # a sparse map whose percentile is zero: fall back to the maximum
            lim = float(mags.max())
    lim = lim if lim > 0 else 1.0
    return (-lim, lim) if signed else (0.0, lim)


def infer_signed(heat: np.ndarray | Tensor) -> bool:
    """Whether a map needs the diverging colour map: it has a negative entry."""
    return bool((torch.as_tensor(heat) < 0).any())


def _image_array(img: Tensor) -> tuple[np.ndarray, str | None]:
    """(C, H, W) in [0, 1] -> an array for imshow and its colour map (gray for 1 channel)."""
    img = torch.as_tensor(img).detach().float().cpu().clamp(0, 1)
    if img.dim() != 3 or img.shape[0] not in (1, 3):
        raise ValueError(f"images must be (C, H, W) with 1 or 3 channels, got {tuple(img.shape)}")
    if img.shape[0] == 1:
        return img[0].numpy(), "gray"
    return img.permute(1, 2, 0).numpy(), None


def _limit_label(lim: float, signed: bool, clip: float) -> str:
    """The value L at the ends of the colour bar for this map."""
    return f"L = {lim:.2g}"


def _heat_rgba(norm: np.ndarray, signed: bool, alpha: float | None) -> np.ndarray:
    """Colours of a map already scaled to [-1, 1] (signed) or [0, 1]; with ``alpha`` the
    opacity grows with |value| (zero is transparent), so an overlay shows the input where the
    map is near zero whatever the palette's zero colour is."""
    from matplotlib import colormaps

    cmap = colormaps[DIVERGING if signed else SEQUENTIAL]
    rgba = cmap((np.clip(norm, -1, 1) + 1) / 2 if signed else np.clip(norm, 0, 1))
    if alpha is not None:
        rgba[..., 3] = alpha * np.clip(np.abs(norm), 0, 1) ** 0.7
    return rgba


def _wrap(title: str, limit: int = 18) -> str:
    """Break a row or column title into lines of at most ``limit`` characters."""
    import textwrap

    lines = [ln for part in title.replace(" / ", "\n").split("\n")
             for ln in (textwrap.wrap(part, limit) or [""])] if len(title) > limit else [title]
    return "\n".join(lines[:4])


def make_grid_figure(images: Tensor, maps: Mapping[str, Tensor],
                     signed: Mapping[str, bool] | None = None,
                     titles_rows: Sequence[str] | None = None, overlay: bool = False,
                     title: str | None = None, dpi: int = DPI, clip: float = 2.0,
                     colorbar: bool = True, cell_inches: float = CELL_INCHES) -> Figure:
    """Build (without saving) the figure of :func:`plot_grid`; its axes are ``fig.axes`` in
    row-major order (row i: the input, then the methods in ``maps`` order), followed by the
    colour bars."""
    images = torch.as_tensor(images)
    if images.dim() != 4:
        raise ValueError(f"images must be (N, C, H, W), got shape {tuple(images.shape)}")
    if clip < 0 or clip >= 100:
        raise ValueError(f"clip is a percentage in [0, 100), got {clip}")
    n = images.shape[0]
    signed = dict(signed or {})
    for name, m in maps.items():
        m = torch.as_tensor(m)
        if m.dim() != 4 or m.shape[0] != n or m.shape[-2:] != images.shape[-2:]:
            raise ValueError(f"map {name!r} has shape {tuple(m.shape)}; expected (N, C, H, W) "
                             f"matching the images {tuple(images.shape)}")
        if name not in signed:
            signed[name] = infer_signed(m)
    if titles_rows is not None and len(titles_rows) != n:
        raise ValueError(f"{len(titles_rows)} row titles for {n} images")

    ncols = 1 + len(maps)
    fig = Figure(figsize=(ncols * cell_inches, n * cell_inches), dpi=dpi, layout="constrained")
    FigureCanvasAgg(fig)
    axes = np.asarray(fig.subplots(n, ncols, squeeze=False))
    small = max(5.0, min(9.0, 5.5 * cell_inches / 1.3))
    for i in range(n):
        arr, cmap = _image_array(images[i])
        ax = axes[i, 0]
        ax.imshow(arr, cmap=cmap, vmin=0, vmax=1, interpolation="nearest")
        if titles_rows is not None:
            ax.set_ylabel(_wrap(titles_rows[i], 22),
                          fontsize=small + 1)
        grey = arr if arr.ndim == 2 else arr.mean(-1)
        for j, (name, m) in enumerate(maps.items(), start=1):
            ax = axes[i, j]
            heat = to_heatmap(torch.as_tensor(m)[i])
            _, vmax = color_limits(heat, signed[name], clip)
            norm = heat / vmax
            if overlay:  # the input in muted grey, the map opaque where it is large
                ax.imshow(0.15 + 0.7 * grey, cmap="gray", vmin=0, vmax=1,
                          interpolation="nearest")
            ax.imshow(_heat_rgba(norm, signed[name], OVERLAY_ALPHA if overlay else None),
                      interpolation="nearest")
            ax.set_xlabel(_limit_label(vmax, signed[name], clip), fontsize=small, labelpad=1)
    for j, name in enumerate(["input", *maps]):
        axes[0, j].set_title(name, fontsize=small + 2)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    if colorbar and maps:
        from matplotlib import colormaps
        from matplotlib.cm import ScalarMappable
        from matplotlib.colors import Normalize

        kinds = [k for k in (True, False) if k in {signed[m] for m in maps}]
        for k in kinds:
            sm = ScalarMappable(Normalize(-1 if k else 0, 1),
                                colormaps[DIVERGING if k else SEQUENTIAL])
            cb = fig.colorbar(sm, ax=list(axes.flat), location="right", fraction=0.04,
                              shrink=0.6 if n > 2 else 0.9, aspect=20, pad=0.01)
            cb.set_ticks([-1, 0, 1] if k else [0, 1])
            cb.set_ticklabels(["−L", "0", "+L"] if k else ["0", "L"])
            cb.ax.tick_params(labelsize=small)
            cb.set_label("signed" if k else "non-negative", fontsize=small)
        fig.supxlabel(f"colour limit L per map: the {100 - clip:g}th percentile of |a| (larger "
                      "values saturate)" if clip > 0 else "colour limit L per map: max |a|",
                      fontsize=small)
    if title:
        fig.suptitle(title, fontsize=small + 2)
    return fig


def plot_grid(images: Tensor, maps: Mapping[str, Tensor], signed: Mapping[str, bool] | None,
              titles_rows: Sequence[str] | None, path: str | os.PathLike,
              overlay: bool = False, title: str | None = None, dpi: int = DPI,
              clip: float = 2.0, colorbar: bool = True,
              cell_inches: float = CELL_INCHES) -> Path:
    """Write a PNG grid: one row per image, the input then one heatmap per method.

    ``images`` are (N, C, H, W) display-ready in [0, 1] (grey images shown in gray);
    ``maps`` maps a method name (the column title) to its (N, C, H, W) attributions, summed
    over channels for display; ``signed[name]`` picks the diverging (True) or sequential
    (False) colour map (``None`` or a missing name: signed when the map has a negative
    entry); ``titles_rows`` label the rows (e.g. ``"pred 3 / true 3"``); ``overlay=True``
    draws each heatmap over the muted greyscale input, opaque where |a| is large and
    transparent near zero. ``clip`` is the percentage of the largest |a| that saturates (see
    :func:`color_limits`); ``colorbar`` adds one colour bar per sign type (the ends are the
    limit L written under each map). The PNG is ``(1 + len(maps)) * cell_inches * dpi`` wide
    and ``N * cell_inches * dpi`` high. Returns the path written.
    """
    fig = make_grid_figure(images, maps, signed, titles_rows, overlay=overlay, title=title,
                           dpi=dpi, clip=clip, colorbar=colorbar, cell_inches=cell_inches)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi, format="png")
    return path


# -- tokens ----------------------------------------------------------------------------------

#: Paper 02's Table 1 colours: normalised attribution in [1/3, 2/3) orange, [2/3, 1] red.
TOKEN_BINS = ((2 / 3, "#e4572e", "red"), (1 / 3, "#f6a04d", "orange"))


def token_levels(scores: Tensor) -> Tensor:
    """Attribution per token normalised to [0, 1] by the sentence's min and max (paper 02,
    Table 1: "attribution value ranges from 0 to 1"); a constant sentence is all 0."""
    s = scores.detach().double().flatten()
    span = s.max() - s.min()
    return (s - s.min()) / span if span > 0 else torch.zeros_like(s)


def token_html(rows: Mapping[str, tuple[Sequence[str], Tensor]], title: str = "") -> str:
    """A self-contained HTML page: one line per method (``rows[name] = (tokens, scores)``,
    one score per token, padding already dropped), each token highlighted as paper 02's
    Table 1 does: normalised score (:func:`token_levels`) in [1/3, 2/3) orange, [2/3, 1]
    red; the score is the token's tooltip."""
    from html import escape

    lines = []
    for name, (tokens, scores) in rows.items():
        if len(tokens) != scores.numel():
            raise ValueError(f"{name}: {len(tokens)} tokens but {scores.numel()} scores")
        spans = []
        for tok, level in zip(tokens, token_levels(scores).tolist()):
            colour = next((c for lo, c, _ in TOKEN_BINS if level >= lo), None)
            style = f' style="background:{colour}"' if colour else ""
            spans.append(f'<span title="{level:.2f}"{style}>{escape(tok)}</span>')
        lines.append(f"<tr><th>{escape(name)}</th><td>{' '.join(spans)}</td></tr>")
    legend = " ".join(f'<span style="background:{c}">{lo:.2f}-{hi:.2f} {label}</span>'
                      for (lo, c, label), hi in zip(TOKEN_BINS, (1.0, 2 / 3)))
    return ("<!doctype html><html><head><meta charset='utf-8'><title>"
            f"{escape(title or 'token attributions')}</title><style>body{{font:14px sans-serif;"
            "margin:1.5em}th{text-align:right;padding-right:1em;vertical-align:top}"
            "td{line-height:1.8}span{padding:1px 2px;border-radius:3px}</style></head><body>"
            f"<h3>{escape(title)}</h3><table>{''.join(lines)}</table><p>normalised "
            f"attribution per sentence (min-max): {legend}</p></body></html>")
