"""Paper 04 (DGA): the Markdown sections of the reproduction's ``REPORT.md`` (Tables 1-2,
Figures 2 and 5, the calls that made the numbers), ours beside the paper's."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from .common import best_method, cell, fmt, markdown_table, mean_sem, pct
from .dga_paper import (
    FIGURE2_METHODS,
    LABELS,
    METHODS,
    METRIC_LABELS,
    PAPER_FIGURE5_TEXT,
    PAPER_MODEL,
    PAPER_TABLE1,
    PAPER_TABLE2,
    Q_VALUES,
    TABLE2_MODELS,
)

if TYPE_CHECKING:
    from .dga import Settings


def _table1_section(t1: dict[str, dict[str, Any]], plots: dict[str, str]) -> str:
    head = ["model (paper's)", "metric"] + [LABELS[m] for m in METHODS]
    rows, wins = [], []
    for ckpt, res in t1.items():
        paper_model = PAPER_MODEL.get(ckpt)
        for k, better in (("lerf", True), ("morf", False)):
            means = {m: res[k].get(m, (math.nan, math.nan))[0] for m in METHODS}
            paper = PAPER_TABLE1[k].get(paper_model or "", {})
            best = best_method(means, better)
            wins.append(f"{ckpt} {METRIC_LABELS[k]}: {LABELS[best] if best else '-'}")
            arrow = "higher" if better else "lower"
            rows.append([f"{ckpt} ({paper_model or 'none'})",
                         f"{METRIC_LABELS[k]} ({arrow} better)"]
                        + [cell(means[m], paper.get(m), bold=m == best) for m in METHODS])
    text = ("### Table 1: pixel perturbation, MoRF and LeRF AUC (section 4.1)\n\n"
            "Mean AUC over the test images; ours (paper's in brackets, ImageNet), our best per "
            "row in bold. The paper finds DGA best in every row. Best here: "
            + "; ".join(wins) + ".\n\n" + markdown_table(head, rows))
    if plots:
        text += "\n\n" + "\n".join(f"![{name}]({png})" for name, png in plots.items())
    return text


def _table2_section(t2: dict[str, dict[str, dict[str, tuple[float, float]]]],
                    s: Settings, plots: dict[str, str]) -> str:
    cols = [pct(q) for q in s.q_values]
    parts = [("### Table 2: Sensitivity-n, 14x14 patch masks (section 4.2)\n\n"
             f"Mean Pearson correlation over the test images of the attribution sum of the "
             f"removed patches and the drop of the target logit, {s.n_subsets} random masks "
             f"per image removing q % of the 14x14 patches (set to zero); ours (paper's "
             "ResNet-18 in brackets), our best per column in bold. The paper finds DGA best "
             "at every q.")]
    if not t2:
        parts.append(f"Not run: Table 2 is reported for {', '.join(TABLE2_MODELS)} (the "
                     "paper's ResNet-18) only, which is not among the models.")
    for ckpt, res in t2.items():
        best = {c: best_method({m: res[m].get(c, (math.nan,))[0] for m in METHODS}, True)
                for c in cols}
        rows = []
        for m in METHODS:
            paper = dict(zip(map(pct, Q_VALUES), PAPER_TABLE2[m]))
            rows.append([LABELS[m]] + [cell(res[m].get(c, (math.nan,))[0], paper.get(c),
                                            bold=best[c] == m) for c in cols])
        parts.append(f"{ckpt}:\n\n" + markdown_table(["method"] + [f"q={c}%" for c in cols],
                                                      rows))
        if ckpt in plots:
            parts.append(f"![Table 2, {ckpt}]({plots[ckpt]})")
    return "\n\n".join(parts)


def _figure5_section(f5: dict[str, dict[str, float]], s: Settings, png: str) -> str:
    cols = [pct(f) for f in s.roar_fractions]
    methods = [m for m in f5 if m != "baseline"]
    best = {c: best_method({m: f5[m].get(c, math.nan) for m in methods if m != "random"},
                           higher_is_better=False) for c in cols}
    rows = [[LABELS.get(m, m)] + [cell(f5[m].get(c), digits=1, bold=best[c] == m)
                                  for c in cols] for m in methods]
    base = f5.get("baseline", {}).get("0")
    noise = ""
    if base is not None and s.roar_test > 0:
        p = base / 100
        se = 100 * math.sqrt(p * (1 - p) / s.roar_test)
        noise = (f" Noise: with {s.roar_test} test images the test sampling alone gives an "
                 f"accuracy near the baseline a binomial standard error of about {se:.1f} "
                 f"points, so differences below about {2 * se:.0f} points are within noise; "
                 "the spread over training seeds (one seed here) comes on top.")
    wins = "; ".join(f"{c} %: {LABELS.get(best[c], '-')}" for c in cols)
    return ("### Figure 5: ROAR on the ResNet8 (section 4.3)\n\n"
            f"Test accuracy (%) of a ResNet8 retrained from scratch on CIFAR-10 images whose "
            f"top-k % pixels (channel-summed attribution of the shipped ResNet8, true label) "
            f"are replaced by the image's channel mean, tested on the same removal; lower is "
            f"better, the lowest per column (random excluded) in bold: {wins}. Reduced "
            f"budget: first {s.roar_train} training and {s.roar_test} test images "
            f"(the loader deals the classes out in turn), {s.roar_epochs} epoch(s), Adam lr "
            f"3e-4, batch 128, one seed; no removal: {fmt(base)} %. Our retrained model is "
            f"the ResNet8, not the paper's 6-conv + "
            f"3-linear CNN.{noise} " + PAPER_FIGURE5_TEXT + "\n\n"
            + markdown_table(["method"] + [f"{c}%" for c in cols], rows)
            + f"\n\n![Figure 5]({png})")


def _figure2_section(f2: dict[str, dict[str, Any]], s: Settings,
                     pngs: dict[str, str]) -> str:
    parts = [("### Figure 2: maps under Gaussian input noise (section 3.1)\n\n"
             f"First {s.fig2_images} test images x and x + eps, eps ~ N(0, sigma^2) per pixel "
             f"and channel with sigma = {s.noise_sigma} in [0, 1] pixel units (the paper does "
             "not give its sigma); the maps explain the true label in both. SSIM between the "
             "two maps (channel sum, max-abs normalised, 7x7 window; 1 = identical) and the "
             "MoRF / LeRF AUC of each map on its own input, means over the images. The paper "
             "shows FG's map changing under the noise while IG's and DGA's stay consistent, "
             "and FG's pixel perturbation scores getting worse.")]
    head = ["method", "SSIM (clean vs noisy)", "MoRF clean", "MoRF noisy", "LeRF clean",
            "LeRF noisy"]
    for ckpt, res in f2.items():
        rows = []
        for m in FIGURE2_METHODS:
            sc = res["scores"][m]
            m_ssim, se = mean_sem(sc["ssim"])
            rows.append([LABELS[m], f"{fmt(m_ssim, 3)} ± {fmt(se, 3)}"]
                        + [fmt(mean_sem(sc[k])[0], 3) for k in
                           ("morf_clean", "morf_noisy", "lerf_clean", "lerf_noisy")])
        same = sum(p == q for p, q in zip(res["pred_clean"], res["pred_noisy"]))
        parts.append(f"{ckpt} (prediction unchanged by the noise on {same} of "
                     f"{len(res['pred_clean'])} images):\n\n" + markdown_table(head, rows)
                     + f"\n\n![Figure 2, {ckpt}]({pngs[ckpt]})")
    return "\n\n".join(parts)


def _calls_text(calls: Sequence[Mapping[str, Any]]) -> str:
    """The report's line on which calls made the numbers (``results.json``'s ``calls``)."""
    if not calls:
        return "Made by calls that recorded no details."
    items = []
    for c in calls:
        what = ", ".join(p if p != "table2" or not c.get("q_values") else
                         "table2 (q = " + "/".join(map(pct, c["q_values"]))
                         + " %)" for p in c["parts"])
        items.append(f"{what} on {c['device']} ({c['finished']}, torch {c['torch']})")
    return "Made by these calls, in order (a later one replaces what it recomputes): " + \
        "; ".join(items) + "."
