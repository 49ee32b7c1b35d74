"""`attrlab reproduce dga` (paper 04): helpers on hand-made cases, and the whole reproduction
end to end on real data in quick mode."""

import json
import math
import time

import pytest
import torch

from attrlab.experiments.reproduce import dga
from attrlab.experiments.reproduce.dga import (
    add_pixel_noise,
    best_method,
    cell,
    label_summary,
    noise_consistency,
    reproduce,
    settings,
)
from attrlab.methods import get as get_method
from attrlab.models import nib_cnn

pytestmark = pytest.mark.usefixtures("one_thread")


def test_label_summary():
    assert label_summary(torch.tensor([0, 0, 1]), ["a", "b", "c"]) == "only a (2), b (1)"
    assert label_summary(torch.tensor([0, 1, 2, 2]), ["a", "b", "c"]) == \
        "all 3 classes, 1 to 2 images each"


def test_cell_and_best_method():
    assert cell(0.12345) == "0.123"
    assert cell(0.12345, 0.5) == "0.123 (0.500)"
    assert cell(0.2, 0.1, digits=2, bold=True) == "**0.20** (0.10)"
    assert cell(math.nan, 0.1) == "- (0.100)"
    values = {"a": 0.3, "b": 0.1, "c": math.nan, "d": 0.3}
    assert best_method(values, higher_is_better=True) == "a"  # first of the ties
    assert best_method(values, higher_is_better=False) == "b"
    assert best_method({"a": math.nan}, True) is None


def test_add_pixel_noise_is_in_pixel_units_and_seeded():
    x = torch.zeros(64, 2, 16, 16)
    noisy = add_pixel_noise(x, 0.1, std=(0.5, 0.25), seed=3)
    # sigma / std per channel in the normalised space
    assert noisy[:, 0].std().item() == pytest.approx(0.2, rel=0.05)
    assert noisy[:, 1].std().item() == pytest.approx(0.4, rel=0.05)
    torch.testing.assert_close(noisy, add_pixel_noise(x, 0.1, std=(0.5, 0.25), seed=3))
    assert not torch.equal(noisy, add_pixel_noise(x, 0.1, std=(0.5, 0.25), seed=4))
    torch.testing.assert_close(add_pixel_noise(x, 0.0, std=(0.5, 0.25)), x)
    with pytest.raises(ValueError, match="sigma"):
        add_pixel_noise(x, -1.0, std=(1.0, 1.0))


def test_noise_consistency_without_noise_is_identical():
    torch.manual_seed(0)
    model = nib_cnn(num_classes=3, input_size=12, width=4).eval()
    x, y = torch.randn(3, 1, 12, 12), torch.tensor([0, 1, 2])
    methods = {m: get_method(m, model, **dga.method_options(3).get(m, {}))
               for m in dga.FIGURE2_METHODS}
    scores, maps = noise_consistency(model, methods, x, y, x.clone())
    assert set(scores) == set(dga.FIGURE2_METHODS)
    for m, sc in scores.items():
        assert sc["ssim"] == pytest.approx([1.0] * 3)
        assert sc["morf_clean"] == sc["morf_noisy"]
        assert sc["lerf_clean"] == sc["lerf_noisy"]
        assert all(0.0 <= v <= 1.0 for v in sc["morf_clean"] + sc["lerf_clean"])
        torch.testing.assert_close(maps[m][0], maps[m][1])
    # with noise the maps change, so SSIM drops below 1 for at least one method
    scores, _ = noise_consistency(model, methods, x, y, add_pixel_noise(x, 0.5, (1.0,)))
    assert min(v for sc in scores.values() for v in sc["ssim"]) < 1.0


def test_settings_and_options():
    full, quick = settings(1000, quick=False), settings(1000, quick=True)
    assert full.n_steps == 30 and full.q_values == dga.Q_VALUES and full.n_subsets == 100
    assert full.roar_fractions == (0.1, 0.3, 0.5, 0.7, 0.9)
    assert quick.limit == 8 and len(quick.q_values) == 2 and quick.roar_epochs == 1
    assert settings(4, quick=True).limit == 4
    opts = dga.method_options(30)
    assert opts["dga"] == {"n_steps": 30, "q": 0.9}
    assert opts["ig"]["n_steps"] == opts["guided_ig"]["n_steps"] == 30
    with pytest.raises(ValueError, match="limit"):
        settings(0, quick=False)
    # the paper's tables as typed: DGA is the best in each of its rows
    for k, better in (("lerf", True), ("morf", False)):
        for row in dga.PAPER_TABLE1[k].values():
            assert best_method(row, better) == "dga"
    for i in range(9):
        assert best_method({m: v[i] for m, v in dga.PAPER_TABLE2.items()}, True) == "dga"


# `reproduce dga --quick` (limit 4, ResNet8, ROAR) as measured before the layering restructure
QUICK_TABLE1 = {
    "morf": {"dga": 0.111394, "fullgrad": 0.390201, "gbp": 0.581692, "guided_ig": 0.151264,
             "gxi": 0.125297, "ig": 0.134453},
    "lerf": {"dga": 0.441425, "fullgrad": 0.705895, "gbp": 0.431651, "guided_ig": 0.414815,
             "gxi": 0.228661, "ig": 0.382925}}
QUICK_TABLE2 = {"gxi": {"10": 0.220061, "50": 0.058787}, "gbp": {"10": -0.083823, "50": 0.137699},
                "ig": {"10": -0.004031, "50": 0.121489},
                "fullgrad": {"10": 0.098544, "50": 0.160668},
                "guided_ig": {"10": -0.00339, "50": 0.064609},
                "dga": {"10": 0.30654, "50": 0.197653}}
QUICK_FIGURE5 = {"baseline": {"0": 12.5}, "gxi": {"10": 12.5, "90": 12.5},
                 "gbp": {"10": 9.375, "90": 9.375}, "ig": {"10": 9.375, "90": 12.5},
                 "fullgrad": {"10": 9.375, "90": 6.25}, "guided_ig": {"10": 6.25, "90": 12.5},
                 "dga": {"10": 9.375, "90": 12.5}, "random": {"10": 12.5, "90": 9.375}}
QUICK_FIGURE2_SSIM = {"fullgrad": [0.912448, 0.944097], "ig": [0.753789, 0.852365],
                      "dga": [0.378964, 0.430078]}


def test_reproduce_dga_quick(real_data_dir, tmp_path):
    out = tmp_path / "r"
    kwargs = {"quick": True, "limit": 4, "models": ("cifar10_resnet8",), "roar": True,
              "data_dir": str(real_data_dir), "progress": False}
    t0 = time.perf_counter()
    report = reproduce(out, **kwargs)
    first = time.perf_counter() - t0
    assert report == out / "REPORT.md"
    text = report.read_text()
    for heading in ("Table 1", "Table 2", "Figure 5", "Figure 2"):
        assert f"### {heading}" in text
    res = json.loads((out / "results.json").read_text())
    methods = set(dga.METHODS)
    t1 = res["table1"]["cifar10_resnet8"]
    for k in ("morf", "lerf"):
        assert set(t1[k]) == methods
        assert all(0.0 <= mean <= 1.0 for mean, _ in t1[k].values())
    t2 = res["table2"]["cifar10_resnet8"]
    assert set(t2) == methods
    for per_q in t2.values():
        assert set(per_q) == {"10", "50"}
        assert all(-1.0 <= mean <= 1.0 for mean, _ in per_q.values())
    f5 = res["figure5"]
    assert set(f5) == methods | {"random", "baseline"}
    assert all(set(v) == {"10", "90"} for m, v in f5.items() if m != "baseline")
    assert all(0.0 <= a <= 100.0 for v in f5.values() for a in v.values())
    f2 = res["figure2"]["cifar10_resnet8"]
    assert set(f2["scores"]) == set(dga.FIGURE2_METHODS)
    assert all(len(v) == 2 for sc in f2["scores"].values() for v in sc.values())
    # pinned: the numbers this quick run gave before the restructure (and still gives). Float
    # rounding differs between CPUs (vector widths), so the pins hold to 1e-5; Guided IG picks
    # the fraction of features with the smallest gradient at every step, and a near-tie that
    # rounds the other way moves its curves by up to ~1e-3 (seen: 6e-4 on another Xeon).
    def pinned(m):
        return {"abs": 2e-3} if m == "guided_ig" else {"abs": 1e-5}
    for k, row in QUICK_TABLE1.items():
        for m, v in row.items():
            assert t1[k][m][0] == pytest.approx(v, **pinned(m)), (k, m)
    for m, row in QUICK_TABLE2.items():
        for q, v in row.items():
            assert t2[m][q][0] == pytest.approx(v, **pinned(m)), (m, q)
    assert f5 == QUICK_FIGURE5
    for m, v in QUICK_FIGURE2_SSIM.items():
        assert f2["scores"][m]["ssim"] == pytest.approx(v, **pinned(m)), m
    for png in res["plots"].values():
        assert (out / png).is_file()
    for sub in ("table1_cifar10_resnet8", "table2_cifar10_resnet8"):
        assert (out / sub / "results.sqlite").is_file()
    assert [c["parts"] for c in res["calls"]] == [list(dga.PARTS)]
    assert res["calls"][0]["device"] == "cpu" and "Made by these calls" in text
    # resumed: nothing recomputed, same numbers; the call is recorded
    t0 = time.perf_counter()
    reproduce(out, **kwargs)
    again = json.loads((out / "results.json").read_text())
    assert len(again.pop("calls")) == 2
    res.pop("calls")
    assert again == res
    assert time.perf_counter() - t0 < first / 3


@pytest.mark.parametrize("bad", ["0,0.5", "1.5", "half", ""])
def test_bad_q_values_fail_before_any_work(tmp_path, bad):
    with pytest.raises(ValueError, match="q_values"):
        reproduce(tmp_path / "r", q_values=bad, progress=False)
    assert not (tmp_path / "r").exists()


def test_table2_equals_a_bench_run_per_q(real_data_dir, tmp_path):
    """The shared-forward Table 2 gives the scores of one attrlab bench run per q."""
    from attrlab.experiments.bench import run
    from attrlab.experiments.store import ResultStore

    s = settings(4, quick=True)
    res = dga.table2("cifar10_resnet8", s, tmp_path / "t2", "cpu", str(real_data_dir), False)
    for q in s.q_values:
        opts = {"sensitivity_n": {"fraction": q, "n_subsets": s.n_subsets,
                                  **dga.TABLE2_METRIC}}
        cfg = dga._bench_config("cifar10_resnet8", s, opts, tmp_path / f"b{q}", "cpu",
                                str(real_data_dir))
        with ResultStore(run(cfg, progress=False)) as store:
            bench_scores = {(m, i): v for m, _, i, v in store.scores()}
        with ResultStore(tmp_path / "t2" / "results.sqlite") as store:
            ours = {(m, i): v for m, k, i, v in store.scores()
                    if k == dga.table2_metric_name(q)}
        assert ours.keys() == bench_scores.keys()
        assert len(ours) == len(dga.METHODS) * 4
        for k, v in ours.items():
            assert v == pytest.approx(bench_scores[k], abs=1e-6)
        for m in dga.METHODS:
            assert res[m][f"{round(100 * q)}"][0] == pytest.approx(
                sum(v for (mm, _), v in ours.items() if mm == m) / 4)


def test_reproduce_in_parts_accumulates(real_data_dir, tmp_path, monkeypatch):
    out = tmp_path / "r"
    kw = {"quick": True, "limit": 4, "models": ("cifar10_resnet8",),
          "data_dir": str(real_data_dir), "progress": False}
    reproduce(out, only="table2", q_values="0.1", **kw)
    res = json.loads((out / "results.json").read_text())
    assert set(res["table2"]["cifar10_resnet8"]["dga"]) == {"10"}
    assert res["table1"] == {} and res["figure2"] == {} and "figure5" not in res
    assert not (out / "table1_cifar10_resnet8").exists()
    text = (out / "REPORT.md").read_text()
    assert "Table 1: pixel perturbation\n\nNot run yet" in text
    assert "Not run (`roar=False` or not in `only`)" in text
    # a second call adds q = 50 % and Table 1, keeping q = 10 % without recomputing it
    calls = []
    real_table2 = dga.table2
    monkeypatch.setattr(dga, "table2", lambda *a, **k: calls.append(a[1].q_values)
                        or real_table2(*a, **k))
    reproduce(out, only=("table1", "table2"), q_values=[0.5], **kw)
    assert calls == [(0.5,)]
    res2 = json.loads((out / "results.json").read_text())
    assert set(res2["table2"]["cifar10_resnet8"]["dga"]) == {"10", "50"}
    assert res2["table2"]["cifar10_resnet8"]["dga"]["10"] == \
        res["table2"]["cifar10_resnet8"]["dga"]["10"]
    assert res2["settings"]["q_values"] == [0.1, 0.5]
    assert set(res2["table1"]["cifar10_resnet8"]) == {"morf", "lerf"}
    assert "| method | q=10% | q=50% |" in (out / "REPORT.md").read_text()
    assert [(c["parts"], c["q_values"]) for c in res2["calls"]] == [
        (["table2"], [0.1]), (["table1", "table2"], [0.5])]
    assert "table1, table2 (q = 50 %) on cpu" in (out / "REPORT.md").read_text()
    # the record lives in the folder's store: a torn results.json export changes nothing
    assert (out / "record.sqlite").exists()
    (out / "results.json").write_text('{"settings": ')
    assert dga.load_record(out, dga.settings(4, True), True)["table2"] == res2["table2"]
    # a folder from before the record store, whose record predates the calls list, gets one
    # entry for what it holds
    old = dict(res2)
    del old["calls"]
    (out / "record.sqlite").unlink()
    (out / "results.json").write_text(json.dumps(old))
    reproduce(out, only="figure2", **kw)
    calls = json.loads((out / "results.json").read_text())["calls"]
    assert [(c["parts"], c["device"]) for c in calls] == [
        (["table1", "table2"], "a device not recorded"), (["figure2"], "cpu")]
    # other settings in the same folder are refused before any work
    with pytest.raises(ValueError, match="other settings"):
        reproduce(out, **{**kw, "limit": 3})
    # a torn results.json in a folder without a record store is named, not a bare JSON error
    (out / "record.sqlite").unlink()
    (out / "results.json").write_text('{"settings": ')
    with pytest.raises(ValueError, match="results.json is not valid JSON"):
        reproduce(out, **kw)


@pytest.mark.parametrize("bad", ["table3", "", ("table1", "roar")])
def test_bad_only_fails_before_any_work(tmp_path, bad):
    with pytest.raises(ValueError, match="only"):
        reproduce(tmp_path / "r", only=bad, progress=False)
    assert not (tmp_path / "r").exists()


def test_parse_parts():
    assert dga.parse_parts(None) == dga.PARTS
    assert dga.parse_parts(None, roar=False) == ("table1", "table2", "figure2")
    assert dga.parse_parts("figure5, table2") == ("table2", "figure5")
    assert dga.parse_parts(["figure5"], roar=False) == ()


def test_figure2_is_a_store_artefact_named_by_content(real_data_dir, tmp_path, monkeypatch):
    """Figure 2's numbers and maps live in the folder's store under a content key: the same
    settings reuse them (nothing recomputed), other settings compute anew."""
    from dataclasses import replace

    from attrlab.experiments.store import ResultStore

    s = settings(2, quick=True)
    out = tmp_path / "f2"
    res, png = dga.figure2("cifar10_resnet8", s, out, "cpu", str(real_data_dir))
    assert png.is_file() and not (out / "figure2.json").exists()
    with ResultStore(out / "results.sqlite") as store:
        assert store.artefact(f"figure2:{res['key']}") == json.loads(json.dumps(res))
        maps = store.artefact(f"figure2-maps:{res['key']}")
    assert set(maps) == {"x_noisy"} | {f"{m}_{k}" for m in dga.FIGURE2_METHODS
                                        for k in ("clean", "noisy")}
    calls = []
    real = dga.noise_consistency
    monkeypatch.setattr(dga, "noise_consistency",
                        lambda *a, **k: calls.append(1) or real(*a, **k))
    again, _ = dga.figure2("cifar10_resnet8", s, out, "cpu", str(real_data_dir))
    assert calls == [] and again == json.loads(json.dumps(res))
    other, _ = dga.figure2("cifar10_resnet8", replace(s, noise_sigma=0.1), out, "cpu",
                           str(real_data_dir))
    assert calls == [1] and other["key"] != res["key"]
    assert other["scores"]["ig"]["ssim"] != res["scores"]["ig"]["ssim"]
