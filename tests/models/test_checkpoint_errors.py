"""A checkpoint that is not what attrlab wrote gives a ValueError naming the file and the
problem, never a raw IndexError/KeyError/RuntimeError/AttributeError (issue 18)."""

import pytest
import torch

from attrlab.models import build, load_checkpoint

ARCH = {"name": "nib_cnn", "num_classes": 3, "in_channels": 1, "input_size": 8}


def _write(path, blob):
    torch.save(blob, path)
    return path


@pytest.fixture
def good():
    model = build(ARCH)
    return {"state_dict": model.state_dict(), "meta": {"arch": ARCH}}


@pytest.mark.parametrize("case, words", [
    ("empty", "is not an attrlab checkpoint readable"),
    ("no_arch", "metadata has no 'arch'"),
    ("shapes", "do not fit the model built from its arch"),
    ("missing", "do not fit the model built from its arch.*missing"),
    ("unexpected", "do not fit the model built from its arch.*unexpected"),
    ("not_tensor", "entry 'extra' of the state_dict is a str, not a tensor"),
])
def test_broken_checkpoints(tmp_path, good, case, words):
    path = tmp_path / "m.pt"
    sd = dict(good["state_dict"])
    if case == "empty":
        path.write_bytes(b"")
    elif case == "no_arch":
        _write(path, {"state_dict": sd, "meta": {}})
    elif case == "shapes":
        k = next(iter(sd))
        sd[k] = torch.zeros(1)
        _write(path, {"state_dict": sd, "meta": {"arch": ARCH}})
    elif case == "missing":
        sd.pop(next(iter(sd)))
        _write(path, {"state_dict": sd, "meta": {"arch": ARCH}})
    elif case == "unexpected":
        sd["extra.weight"] = torch.zeros(1)
        _write(path, {"state_dict": sd, "meta": {"arch": ARCH}})
    else:
        sd["extra"] = "text"
        _write(path, {"state_dict": sd, "meta": {"arch": ARCH}})
    with pytest.raises(ValueError, match=words) as info:
        load_checkpoint(path)
    assert str(path) in str(info.value)


def test_good_checkpoint_still_loads(tmp_path, good):
    model, meta = load_checkpoint(_write(tmp_path / "m.pt", good))
    assert meta["arch"] == ARCH and not model.training
