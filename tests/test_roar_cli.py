"""``attrlab roar`` end to end on the embedded default, with a tiny budget, and its resume."""

from attrlab import cli
from attrlab.experiments.roar import stored_rows


def test_roar_command_runs_resumes_and_reports(tmp_path, capsys):
    argv = ["roar", "--methods", "gxsi", "--fractions", "0.5", "--epochs", "1",
            "--subset", "120", "--out", str(tmp_path), "--no-progress"]
    assert cli.main(argv) == 0
    out = capsys.readouterr().out
    assert "budget: 120 train / 120 test images, 1 epochs, 1 seed(s)" in out
    rows = stored_rows(tmp_path)
    assert {(r["method"], r["fraction"]) for r in rows} == {
        ("baseline", 0.0), ("gxsi", 0.5), ("random", 0.5)}
    assert all(0.0 <= r["accuracy"] <= 1.0 for r in rows)
    # a second call finds every row and recomputes nothing
    assert cli.main(argv) == 0
    assert capsys.readouterr().out == out
    assert stored_rows(tmp_path) == rows
    assert cli.main(argv[:-3] + ["--fractions", "x", "--out", str(tmp_path)]) == 2
    assert "comma-separated numbers" in capsys.readouterr().err
