"""The experiment store, sharded bench runs, merge and resume."""

import sqlite3

import pytest
import torch

from attrlab import cli
from attrlab.experiments.bench import BenchConfig, run
from attrlab.experiments.planner import Result, Unit
from attrlab.experiments.store import ResultStore, merge
from attrlab.metrics import base as metric_base
from attrlab.metrics.faithfulness.pixel_perturbation import MoRF


def unit(samples=(0, 1), name="a"):
    return Unit("test", {"name": "m"}, {"dataset": "d"}, samples, {"name": name, "options": {}},
                {"name": "k", "options": {}}, 0)


def test_put_is_atomic_and_done(tmp_path):
    u = unit()
    with ResultStore(tmp_path / "s.sqlite") as s:
        assert not s.done(u)
        with pytest.raises(ValueError, match="2 scores for 3 samples"):
            s.put(unit((0, 1, 2)), Result(unit((0, 1, 2)).key, (0, 1, 2), (1.0, 2.0)))
        with pytest.raises(ValueError, match="curves"):
            s.put(u, Result(u.key, (0, 1), (1.0, 2.0), ((0.0, 1.0), ((1.0, 2.0),))))
        assert s.done_keys() == set()  # nothing of the failed units was written
        assert s.db.execute("SELECT COUNT(*) FROM units").fetchone()[0] == 0
        s.put(u, Result(u.key, (0, 1), (1.0, 2.0), ((0.0, 1.0), ((1.0, 2.0), (3.0, 4.0)))))
        assert s.done(u) and s.done(u.key) and s.scores() == [("a", "k", 0, 1.0), ("a", "k", 1, 2.0)]
        assert s.curves("k") == {"a": ([0.0, 1.0], [[1.0, 2.0], [3.0, 4.0]])}
        assert s.units(all_units=True) == [u]


def test_artefacts_round_trip(tmp_path):
    with ResultStore(tmp_path / "s.sqlite") as s:
        t = {"maps": torch.randn(3, 4), "n": torch.tensor(2)}
        key = s.put_artefact({"what": "maps", "method": "ig"}, t)
        got = s.artefact(key)
        torch.testing.assert_close(got["maps"], t["maps"])
        assert s.artefact({"what": "maps", "method": "ig"})["n"] == 2
        s.put_artefact("cfg", {"a": [1, 2]}, kind="json")
        assert s.artefact("cfg") == {"a": [1, 2]} and s.artefact("nope", 5) == 5
        assert s.has_artefact("cfg") and not s.has_artefact("nope")
        with pytest.raises(ValueError, match="kind"):
            s.put_artefact("x", 1, kind="pickle")


def test_merge_unites_and_names_conflicting_units(tmp_path):
    u, v = unit((0, 1)), unit((2, 3))
    for name, units in (("a", [u]), ("b", [u, v])):
        with ResultStore(tmp_path / f"{name}.sqlite") as s:
            for w in units:
                s.put(w, Result(w.key, w.samples, (1.0, 2.0)))
    out = merge([tmp_path / "a.sqlite", tmp_path / "b.sqlite"], tmp_path / "m.sqlite")
    with ResultStore(out) as s:
        assert s.done_keys() == {u.key, v.key} and len(s.scores()) == 4
    with ResultStore(tmp_path / "c.sqlite") as s:
        s.put(u, Result(u.key, u.samples, (1.0, 2.5)))
    with pytest.raises(ValueError, match=f"score of unit {u.key[:12]} \\(test: a x k, samples 0..1"):
        merge([tmp_path / "a.sqlite", tmp_path / "c.sqlite"], tmp_path / "m2.sqlite")
    assert not (tmp_path / "m2.sqlite").exists()
    with pytest.raises(ValueError, match="exists"):
        merge([tmp_path / "a.sqlite"], out)
    with pytest.raises(FileNotFoundError):
        merge([tmp_path / "zz.sqlite"], tmp_path / "m3.sqlite")


def test_old_layout_is_refused(tmp_path):
    db = sqlite3.connect(tmp_path / "old.sqlite")
    db.execute("CREATE TABLE scores (method TEXT, metric TEXT, sample INTEGER, score REAL)")
    db.close()
    with pytest.raises(ValueError, match="older attrlab"):
        ResultStore(tmp_path / "old.sqlite")


def small(tmp_path, out, **kw):
    """A default-like run: a deterministic, a random (SmoothGrad) and a fitted-baseline
    (DeepSHAP) method, the default fast metrics (with curves), four batches."""
    base = dict(methods=["saliency", "smoothgrad", "deepshap"], limit=8, batch_size=2,
                method_options={"smoothgrad": {"nt_samples": 3}}, out=str(tmp_path / out),
                report_samples=0)
    return BenchConfig(**{**base, **kw})


def dump(path):
    with ResultStore(path) as s:
        keys = s.plan_keys()
        return (keys, s.scores(), {k: s.curves(k) for k in s.curve_metrics()},
                {k: s.unit_scores(k) for k in keys})


def test_sharded_runs_merge_to_the_unsharded_run(tmp_path, capsys):
    whole = run(small(tmp_path, "whole"), progress=False)
    a = run(small(tmp_path, "s0"), progress=False, shard="0/2")
    b = run(small(tmp_path, "s1"), progress=False, shard=(1, 2))
    with ResultStore(a) as s:
        assert s.progress() == (3 * 5 * 2, 3 * 5 * 4) and s.info("shard") == "0/2"
        assert {r[2] for r in s.scores()} == {0, 1, 4, 5}
    assert cli.main(["merge", str(a.parent), str(b), "--out", str(tmp_path / "m")]) == 0
    text = capsys.readouterr().out
    assert "60 of 60 units" in text and "smoothgrad" in text
    assert (tmp_path / "m" / "report.html").exists()
    got, want = dump(tmp_path / "m" / "results.sqlite"), dump(whole)
    assert got == want and len(want[1]) == 3 * 5 * 8 and set(want[2]) == {
        "deletion", "insertion", "lerf", "lerf_change", "morf"}
    # merging a store with itself is fine (identical rows); merging into an existing folder not
    assert cli.main(["merge", str(a), str(a), "--out", str(tmp_path / "m2")]) == 0
    assert cli.main(["merge", str(a), "--out", str(tmp_path / "m")]) == 2
    assert "exists" in capsys.readouterr().err
    # the CLI shard option
    assert cli.main(["bench", "--methods", "saliency", "--metrics", "morf", "--limit", "4",
                     "--batch-size", "2", "--shard", "1/2", "--out", str(tmp_path / "c"),
                     "--report-samples", "0", "--no-progress"]) == 0
    assert "1 of 2 units" in capsys.readouterr().out
    assert cli.main(["bench", "--shard", "2/2", "--out", str(tmp_path / "c2")]) == 2
    assert "0 <= I < N" in capsys.readouterr().err


def test_killed_run_resumes_to_the_same_result(tmp_path, monkeypatch):
    """A metric that raises after some units: the stored units stay, the resumed run computes
    only the rest and gives the uninterrupted run's numbers (a random method included)."""
    cfg = dict(metrics=["morf", "lerf"])
    whole = run(small(tmp_path, "whole", **cfg), progress=False)
    original, calls = MoRF._curve, []

    def dying(self, *a, **k):
        calls.append(1)
        if len(calls) == 5:
            raise RuntimeError("killed")
        return original(self, *a, **k)

    monkeypatch.setattr(MoRF, "_curve", dying)
    with pytest.raises(RuntimeError, match="killed"):
        run(small(tmp_path, "run", **cfg), progress=False)
    with ResultStore(tmp_path / "run" / "results.sqlite") as s:
        stored = len(s.done_keys())
        assert 0 < stored < 3 * 2 * 4
    monkeypatch.setattr(MoRF, "_curve", original)
    calls.clear()
    counted = []
    monkeypatch.setattr(MoRF, "_curve",
                        lambda self, *a, **k: counted.append(1) or original(self, *a, **k))
    run(small(tmp_path, "run", **cfg), progress=False)
    assert dump(tmp_path / "run" / "results.sqlite") == dump(whole)
    assert len(counted) < 3 * 4  # done morf units were not recomputed


class Reattribute(metric_base.Metric):
    """A metric that calls the method again (like the sanity checks): score = sum of a fresh
    map (of a random method too)."""

    name = "test_reattr_a"
    needs_method = True
    fail_at = None
    calls = 0

    def _evaluate(self, model, inputs, targets, attributions, method):
        type(self).calls += 1
        if type(self).calls == type(self).fail_at:
            raise KeyboardInterrupt
        return method.attribute(inputs, targets).flatten(1).sum(1)


class ReattributeB(Reattribute):
    name = "test_reattr_b"


def test_resume_inside_a_chain_of_method_calling_metrics(tmp_path):
    metric_base._REGISTRY.update(test_reattr_a=Reattribute, test_reattr_b=ReattributeB)
    try:
        cfg = dict(methods=["smoothgrad", "saliency"], metrics=["test_reattr_a", "test_reattr_b"],
                   limit=4)
        whole = run(small(tmp_path, "whole", **cfg), progress=False)
        ReattributeB.calls, ReattributeB.fail_at = 0, 1  # dies at its first unit
        with pytest.raises(KeyboardInterrupt):
            run(small(tmp_path, "run", **cfg), progress=False)
        with ResultStore(tmp_path / "run" / "results.sqlite") as s:
            assert len(s.done_keys()) == 1  # smoothgrad x test_reattr_a of batch [0, 1]
        ReattributeB.fail_at = None
        run(small(tmp_path, "run", **cfg), progress=False)
        assert dump(tmp_path / "run" / "results.sqlite") == dump(whole)
        with ResultStore(whole) as s:
            rows = {(m, k): v for m, k, i, v in s.scores() if i == 0}
        assert rows[("saliency", "test_reattr_a")] == rows[("saliency", "test_reattr_b")]
    finally:
        metric_base._REGISTRY.pop("test_reattr_a", None)
        metric_base._REGISTRY.pop("test_reattr_b", None)
