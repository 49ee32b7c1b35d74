"""The command line as a new user meets it: instant --help/--version (torch not imported),
attrlab methods NAME, attrlab metrics [NAME], did-you-mean on unknown names."""

import subprocess
import sys

import pytest

from attrlab.cli import COMMANDS, main


def test_help_and_version_do_not_import_torch():
    code = ("import sys; from attrlab.cli import main\n"
            "for argv in ([], ['--help'], ['--version']):\n"
            "    try: main(argv)\n"
            "    except SystemExit: pass\n"
            "assert 'torch' not in sys.modules, 'torch imported'\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=False, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "attrlab 0.1.0" in out.stdout and "``" not in out.stdout  # no RST markup
    for name in COMMANDS:
        assert name in out.stdout


def test_methods_and_metrics_describe_one(capsys):
    assert main(["methods", "IG"]) == 0  # case-insensitive
    out = capsys.readouterr().out
    assert out.startswith("ig: Sundararajan et al. 2017") and "n_steps = 50" in out
    assert main(["methods", "gradcam"]) == 0
    out = capsys.readouterr().out
    assert "layer = None  (constructor)" in out and "reshape_transform" in out
    assert main(["metrics"]) == 0
    out = capsys.readouterr().out
    assert "morf" in out and "↓ faithfulness" in out
    assert main(["metrics", "morf"]) == 0
    out = capsys.readouterr().out
    assert "lower is better" in out and "baseline" in out


@pytest.mark.parametrize("argv,needle", [
    (["methods", "gradcamm"], "did you mean 'gradcam'?"),
    (["metrics", "Morff"], "did you mean 'morf'?"),
    (["benchh"], "did you mean 'bench'?"),
    (["explain", "--methods", "salency"], "did you mean 'saliency'?"),
])
def test_unknown_names_suggest_the_closest(argv, needle, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("attrlab: error:") and needle in err and err.count("\n") == 1
