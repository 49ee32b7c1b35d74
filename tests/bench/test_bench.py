"""The bench harness: storage, resume, leaderboard, HTML report, CLI."""

import csv
import json
import re
from html.parser import HTMLParser

import numpy as np
import pytest
import torch

from attrlab import cli
from attrlab.experiments.bench import BenchConfig, run
from attrlab.experiments.report import (
    coincidence_notes,
    format_leaderboard,
    identical_groups,
    leaderboard,
    write_csv,
    write_latex,
    write_report,
)
from attrlab.experiments.store import ResultStore
from attrlab.metrics import base as metric_base


class SumMetric(metric_base.Metric):
    """Score = sum of the attributions; curve = cumulative sums over 3 chunks. Deterministic,
    so runs can be compared exactly."""

    name = "test_sum"
    higher_is_better = False
    calls = 0

    def _evaluate(self, model, inputs, targets, attributions):
        type(self).calls += 1
        return attributions.flatten(1).sum(1)

    def curve(self, model, inputs, targets, attributions):
        a = attributions.flatten(1)
        parts = torch.stack([c.sum(1) for c in a.chunk(3, dim=1)], 1).cumsum(1)
        return torch.tensor([0.0, 0.5, 1.0]), parts


@pytest.fixture(autouse=True)
def sum_metric():
    metric_base._REGISTRY["test_sum"] = SumMetric
    SumMetric.calls = 0
    yield
    metric_base._REGISTRY.pop("test_sum", None)


def config(tmp_path, **kw):
    base = dict(methods=["saliency", "gxi", "ig"], metrics=["test_sum"], limit=10, batch_size=4,
                method_options={"ig": {"n_steps": 4}}, out=str(tmp_path / "run"),
                report_samples=2)
    return BenchConfig(**{**base, **kw})


def test_run_stores_one_row_per_method_metric_sample(tmp_path):
    path = run(config(tmp_path), progress=False)
    with ResultStore(path) as store:
        rows = store.scores()
        assert len(rows) == 3 * 10
        assert {r[0] for r in rows} == {"saliency", "gxi", "ig"}
        curves = store.curves("test_sum")
        assert len(curves["gxi"][1]) == 10 and curves["gxi"][0] == [0.0, 0.5, 1.0]
        # the stored GxI score is the sum of G x I (on the NIB model: the logit of the label)
        from attrlab.data import digits
        from attrlab.models import load_checkpoint
        model, _ = load_checkpoint("digits_nib_cnn")
        x, y = digits("test").tensors(torch.arange(10))
        logits = model(x)[torch.arange(10), y].detach()
        got = torch.tensor([r[3] for r in rows if r[0] == "gxi"])
        torch.testing.assert_close(got, logits, rtol=1e-4, atol=1e-4)


def test_interrupted_run_resumes_without_recomputing(tmp_path, monkeypatch):
    full = run(config(tmp_path, out=str(tmp_path / "full")), progress=False)
    SumMetric.calls = 0
    original = SumMetric._evaluate

    def flaky(self, *a):
        if SumMetric.calls == 4:
            raise KeyboardInterrupt
        return original(self, *a)

    monkeypatch.setattr(SumMetric, "_evaluate", flaky)
    with pytest.raises(KeyboardInterrupt):
        run(config(tmp_path), progress=False)
    assert SumMetric.calls == 4
    monkeypatch.setattr(SumMetric, "_evaluate", original)
    SumMetric.calls = 0
    run(config(tmp_path), progress=False)
    assert SumMetric.calls == 9 - 4  # 3 methods x 3 batches, 4 were stored before
    with ResultStore(full) as a, ResultStore(tmp_path / "run" / "results.sqlite") as b:
        assert a.scores() == b.scores()


def test_changed_configuration_adds_units_and_the_report_reads_the_current_plan(tmp_path):
    """Results are keyed by content: other settings are new units next to the old ones, the
    store reports the current plan only, and going back recomputes nothing; --fresh empties."""
    path = run(config(tmp_path), progress=False)
    with ResultStore(path) as store:
        first = store.scores()
    SumMetric.calls = 0
    run(config(tmp_path, limit=5), progress=False)
    assert SumMetric.calls == 3  # batch [0..3] is the same unit as before; only [4] is new
    with ResultStore(path) as store:
        rows = store.scores()
        assert len(rows) == 3 * 5 and {r[2] for r in rows} == set(range(5))
        assert len(store.scores(all_units=True)) == 3 * 10 + 3 * 1
    SumMetric.calls = 0
    run(config(tmp_path, method_options={"ig": {"n_steps": 5}}), progress=False)
    assert SumMetric.calls == 3  # only IG's three batches: its options changed
    with ResultStore(path) as store:
        ig5 = {r[2]: r[3] for r in store.scores() if r[0] == "ig"}
        ig4 = {r[2]: r[3] for r in first if r[0] == "ig"}
        assert ig5.keys() == ig4.keys() and ig5 != ig4
        assert [r for r in store.scores() if r[0] != "ig"] == [r for r in first if r[0] != "ig"]
    SumMetric.calls = 0
    run(config(tmp_path), progress=False)
    assert SumMetric.calls == 0
    with ResultStore(path) as store:
        assert store.scores() == first
    path = run(config(tmp_path, limit=5), progress=False, fresh=True)
    with ResultStore(path) as store:
        assert len(store.scores(all_units=True)) == 15


def test_leaderboard_marks_best_by_direction(tmp_path):
    with ResultStore(tmp_path / "s.sqlite") as store:
        store.set_info("higher_is_better", {"up": True, "down": False})
        samples = list(range(8))
        a = [1.0, 3.0, 2.0, 4.0, 2.5, 3.5, 1.5, 3.0]
        b = [v - 1.0 - 0.1 * i for i, v in enumerate(a)]  # always lower than a
        store.add("a", "up", samples, a)
        store.add("b", "up", samples, b)
        store.add("a", "down", samples, a)
        store.add("b", "down", samples, b)
        methods, metrics, cells = leaderboard(store)
        assert cells[("a", "up")].best and not cells[("b", "up")].best
        assert cells[("b", "down")].best and not cells[("a", "down")].best
        assert cells[("a", "up")].p == pytest.approx(2 / 2 ** 8)  # exact Wilcoxon, n = 8
        assert cells[("a", "up")].mean == pytest.approx(np.mean(a))
        assert cells[("a", "up")].se == pytest.approx(np.std(a, ddof=1) / np.sqrt(8))
        text = format_leaderboard(store)
        assert f"{cells[('a', 'up')].text()} *" in text and "down (↓)" in text


def test_best_needs_a_significant_paired_difference_and_ties_share_it(tmp_path):
    with ResultStore(tmp_path / "s.sqlite") as store:
        store.set_info("higher_is_better", {"k": True})
        samples = list(range(10))
        a = [0.5, 0.7, 0.2, 0.9, 0.4, 0.6, 0.3, 0.8, 0.1, 0.55]
        noise = [0.05, -0.04, 0.03, -0.06, 0.02, -0.01, 0.04, -0.05, 0.03, -0.02]
        store.add("a", "k", samples, a)
        store.add("a_copy", "k", samples, a)           # identical scores: shares any mark
        store.add("c", "k", samples, [x + e for x, e in zip(a, noise)])  # within noise
        methods, metrics, cells = leaderboard(store)
        assert not any(c.best for c in cells.values())  # a leads c by 0.001: no mark
        assert cells[("a", "k")].p > 0.05
        store.add("d", "k", samples, [x - 0.5 for x in a])
        assert identical_groups(store) == [["a", "a_copy"]]
        notes = coincidence_notes(store)
        assert len(notes) == 1 and notes[0].startswith("a, a_copy have identical")
    with ResultStore(tmp_path / "t.sqlite") as store:
        store.set_info("higher_is_better", {"k": True})
        store.add("a", "k", samples, a)
        store.add("a_copy", "k", samples, a)
        store.add("d", "k", samples, [x - 0.5 for x in a])
        methods, _, cells = leaderboard(store)
        assert cells[("a", "k")].best and cells[("a_copy", "k")].best
        assert not cells[("d", "k")].best and methods[-1] == "d"  # rows by mean rank


def test_exports_csv_and_latex(tmp_path):
    with ResultStore(tmp_path / "s.sqlite") as store:
        store.set_info("higher_is_better", {"m_k": False})
        store.add("g_x", "m_k", [0, 1, 2], [0.25, 0.5, 0.75])
        board, scores = write_csv(store, tmp_path)
        tex = write_latex(store, tmp_path).read_text()
    rows = list(csv.DictReader(board.open()))
    assert rows[0]["method"] == "g_x" and float(rows[0]["mean"]) == 0.5
    assert rows[0]["higher_is_better"] == "False" and rows[0]["n"] == "3"
    assert len(list(csv.DictReader(scores.open()))) == 3
    assert r"g\_x & 0.5 $\pm$" in tex and r"m\_k $\downarrow$" in tex
    assert tex.count(r"\begin{tabular}") == 1 and r"\end{tabular}" in tex


class Checker(HTMLParser):
    VOID = {"meta", "img", "br", "hr", "link", "input"}

    def __init__(self):
        super().__init__()
        self.stack, self.srcs, self.errors = [], [], []

    def handle_starttag(self, tag, attrs):
        if tag == "img":
            self.srcs.append(dict(attrs)["src"])
        if tag not in self.VOID:
            self.stack.append(tag)

    def handle_endtag(self, tag):
        if not self.stack or self.stack.pop() != tag:
            self.errors.append(tag)


def test_report_is_valid_html_referencing_existing_files(tmp_path):
    path = run(config(tmp_path), progress=False)
    html_path = write_report(path)
    text = html_path.read_text()
    checker = Checker()
    checker.feed(text)
    assert not checker.errors and checker.stack == []
    assert text.startswith("<!DOCTYPE html>")
    # self-contained: every image is inlined, the PNGs are written next to it as well
    assert len(checker.srcs) == 2 and all(s.startswith("data:image/png;base64,")
                                          for s in checker.srcs)
    for name in ("samples.png", "curve_test_sum.png", "leaderboard.csv", "scores.csv",
                 "leaderboard.tex"):
        assert (html_path.parent / name).stat().st_size > 50, name
    assert not re.search(r"(src|href)=\"https?:", text)  # opens offline
    for m in ("saliency", "gxi", "ig"):
        assert f"<td>{m}</td>" in text
    assert "test_sum" in text and "{" not in text.split("<h2>Run</h2>")[1].split("<script")[0]
    assert "time / sample" in text and " ms</td>" in text  # attribution time per method


def test_cli_bench_config_file_and_errors(tmp_path, capsys):
    cfg = tmp_path / "bench.toml"
    cfg.write_text('methods = ["saliency"]\nmetrics = ["test_sum"]\nlimit = 3\n'
                   f'out = "{tmp_path / "cli"}"\nreport_samples = 1\n'
                   '[method_options.saliency]\nabs = false\n')
    assert cli.main(["bench", "--config", str(cfg), "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "saliency" in out and "wrote" in out and (tmp_path / "cli" / "report.html").exists()
    stored = json.loads(json.dumps(BenchConfig.from_file(cfg).method_options))
    assert stored == {"saliency": {"abs": False}}
    # re-report only
    assert cli.main(["bench", "--config", str(cfg), "--report-only"]) == 0
    capsys.readouterr()
    for argv, words in [
        (["bench", "--methods", "nope", "--out", str(tmp_path / "e1")], "unknown method 'nope'"),
        (["bench", "--metrics", "nope", "--out", str(tmp_path / "e2")], "unknown metric 'nope'"),
        (["bench", "--method-arg", "ig", "--out", str(tmp_path / "e3")], "NAME.KEY=VALUE"),
        (["bench", "--config", str(tmp_path / "missing.toml")], "not found"),
        (["bench", "--report-only", "--out", str(tmp_path / "empty")], "no results"),
    ]:
        assert cli.main(argv) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("attrlab: error:") and words in err[0], err
    bad = tmp_path / "bad.toml"
    bad.write_text("methodz = 1\n")
    assert cli.main(["bench", "--config", str(bad)]) == 2
    assert "unknown keys ['methodz']" in capsys.readouterr().err


def test_resume_with_another_batch_size_or_device_reuses_nothing_it_should_not(tmp_path):
    """A unit is named by the samples of its batch (so by the batch size) and by the device
    type (CUDA draws other noise than the CPU and rounds differently): a resume with another
    batch size gives what a fresh run with it gives (SmoothGrad noise not mixed), and the
    same settings on another device are other units."""
    import dataclasses

    from attrlab.experiments.bench import plan, resolve

    kw = dict(methods=["smoothgrad"], method_options={"smoothgrad": {"nt_samples": 3}})
    run(config(tmp_path, batch_size=4, **kw), progress=False)
    resumed = run(config(tmp_path, batch_size=3, **kw), progress=False)
    fresh = run(config(tmp_path, batch_size=3, out=str(tmp_path / "fresh"), **kw),
                progress=False)
    with ResultStore(resumed) as a, ResultStore(fresh) as b:
        assert a.scores() == b.scores() and len(a.scores()) == 10
    cfg = config(tmp_path, **kw)
    setup = resolve(cfg)

    def keys(device):
        return {u.key for g in plan(dataclasses.replace(cfg, device=device), setup).groups
                for u in g.units}

    assert keys("cuda") != keys("cpu") and keys("cuda") == keys("cuda:0")
