"""Every user mistake on the command line is one ``error:`` line with exit status 2, never a
traceback, and nothing wrong is silently accepted (issue 18)."""

import pytest

from attrlab import cli


def run(argv, capsys) -> tuple[int, str]:
    try:
        code = cli.main(argv)
    except SystemExit as exit_:  # argparse's own errors
        code = exit_.code
    err = capsys.readouterr().err
    return code, err


@pytest.mark.parametrize("argv, words", [
    (["train", "--model", "nib_cnn", "--dataset", "digits", "--out", "x.pt", "--threads", "0"],
     "--threads: must be a positive int, got 0"),
    (["train", "--model", "nib_cnn", "--dataset", "digits", "--out", "x.pt", "--batch-size",
      "0"], "--batch-size: must be a positive int, got 0"),
    (["train", "--model", "nib_cnn", "--dataset", "digits", "--out", "x.pt", "--epochs", "-1"],
     "--epochs: must be a positive int, got -1"),
    (["roar", "--epochs", "-1"], "--epochs: must be a positive int, got -1"),
    (["bench", "--batch-size", "0"], "--batch-size: must be a positive int, got 0"),
    (["train", "--model", "nib_cnn", "--dataset", "digits", "--out", "x.pt", "--device",
      "nonsense"], "--device: 'nonsense' is not a torch device"),
    (["bench", "--device", "nonsense"], "--device: 'nonsense' is not a torch device"),
    (["reproduce", "dga", "--device", "nonsense"], "--device: 'nonsense' is not a torch device"),
])
def test_bad_values_are_refused_by_the_parser(argv, words, capsys):
    code, err = run(argv, capsys)
    assert code == 2 and words in err and "Traceback" not in err


def test_unavailable_device_is_one_line(capsys, monkeypatch):
    import torch
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    code, err = run(["bench", "--device", "cuda", "--limit", "2"], capsys)
    assert code == 2 and "--device: 'cuda' is not available on this machine" in err


def test_bench_method_and_metric_lists(tmp_path, capsys):
    out = str(tmp_path / "b")
    code, err = run(["bench", "--methods", "", "--out", out], capsys)
    assert code == 2 and err.startswith("attrlab: error:") and "methods is empty" in err
    code, err = run(["bench", "--methods", "saliency", "--metric-arg", "faithfulnes.n=3",
                     "--out", out, "--limit", "2"], capsys)
    assert code == 2 and "metric_options for metrics not in the run: ['faithfulnes']" in err
    cfg = tmp_path / "c.toml"
    cfg.write_text('methods = "ig"\n')
    code, err = run(["bench", "--config", str(cfg), "--out", out], capsys)
    assert code == 2 and "methods must be a list of names" in err


def test_out_that_is_a_file_or_not_writable_is_one_line(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    code, err = run(["bench", "--methods", "saliency", "--limit", "2", "--out",
                     str(blocker / "sub")], capsys)
    assert code == 2 and err.startswith("attrlab: error:") and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1


def test_truncated_store_names_the_file_and_fresh(tmp_path, capsys):
    out = tmp_path / "b"
    out.mkdir()
    (out / "results.sqlite").write_bytes(b"SQLite format 3\x00" + b"\x00" * 40)
    code, err = run(["bench", "--methods", "saliency", "--limit", "2", "--out", str(out)],
                    capsys)
    assert code == 2 and str(out / "results.sqlite") in err and "--fresh" in err


def test_reproduce_with_a_missing_zoo_dir_is_an_error(tmp_path, capsys):
    code, err = run(["reproduce", "attribution-mask", "--option", "zoo_dir=/nonexistent",
                     "--out", str(tmp_path / "r")], capsys)
    assert code == 2 and "zoo_dir /nonexistent is not a folder" in err
