"""`attrlab reproduce vp` (paper 05) end to end on real MNIST, in quick mode: the tables and
the figure are written, the numbers are finite and deterministic, a second call resumes from
the record, and the training path runs."""

import json
import math

import pytest

import attrlab.metrics
from attrlab import cli
from attrlab.experiments.reproduce.vp import SHIPPED, reproduce


def _finite(tree):
    if isinstance(tree, dict):
        return all(_finite(v) for v in tree.values())
    if isinstance(tree, (list, tuple)):
        return all(_finite(v) for v in tree)
    return not isinstance(tree, float) or math.isfinite(tree)


def test_quick_reproduction_with_the_shipped_explainers(real_data_dir, tmp_path, capsys,
                                                        monkeypatch):
    assert SHIPPED.is_file() and SHIPPED.stat().st_size < 400_000
    out = tmp_path / "vp"
    code = cli.main(["reproduce", "vp", "--quick", "--out", str(out), "--no-progress",
                     "--data-dir", str(real_data_dir)])
    assert code == 0
    text = (out / "REPORT.md").read_text()
    for title in ("Table 1: consistency", "Table 2: stability", "Table 3: top-k / low-k",
                  "Figure 5: sanity check", "Figure 6: time to explain one image"):
        assert title in text
    assert (out / "figure4_topk_lowk.png").is_file()
    res = json.loads((out / "results.json").read_text())
    assert set(res["consistency"]) == set(res["perturbation"]) == {"0", "1"}
    assert set(res["perturbation"]["0"]) >= {"InputGrad", "L2X", "nVP", "VP"}
    assert set(res["consistency"]["0"]) == {"L2X", "nVP", "VP"}  # InputGrad: no mask size
    assert res["sanity"]["layers"][0] == "original" and len(res["sanity"]["layers"]) == 6
    assert _finite(res)
    # resumes: no metric is built again
    built = []
    real_get = attrlab.metrics.get
    monkeypatch.setattr(attrlab.metrics, "get", lambda *a, **k: built.append(a) or
                        real_get(*a, **k))
    reproduce(out, quick=True, progress=False, data_dir=str(real_data_dir))
    assert built == []
    assert json.loads((out / "results.json").read_text())["perturbation"] == res["perturbation"]
    # deterministic: a fresh folder gives the same numbers
    again = tmp_path / "again"
    reproduce(again, quick=True, progress=False, data_dir=str(real_data_dir),
              only="perturbation")
    res2 = json.loads((again / "results.json").read_text())
    assert res2["perturbation"] == res["perturbation"]


def test_quick_reproduction_trains_its_explainers(real_data_dir, tmp_path):
    out = tmp_path / "train"
    reproduce(out, quick=True, progress=False, data_dir=str(real_data_dir), train=True,
              only="perturbation", export_explainers=str(tmp_path / "e.pt"))
    assert (out / "explainers" / "vp_m2.ckpt").is_file() and (tmp_path / "e.pt").is_file()
    res = json.loads((out / "results.json").read_text())
    assert res["settings"]["train"] and set(res["perturbation"]["0"]) >= {"L2X", "nVP", "VP"}


@pytest.mark.slow
def test_full_reproduction(real_data_dir, tmp_path):
    """The default budget (200 images x 3 seeds; minutes on a CPU)."""
    reproduce(tmp_path / "full", progress=False, data_dir=str(real_data_dir))
    assert _finite(json.loads((tmp_path / "full" / "results.json").read_text()))
