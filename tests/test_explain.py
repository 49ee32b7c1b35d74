"""``attrlab explain``: files written, options, a torchvision model, one-line errors, --help."""

import numpy as np
import pytest
import torch
from PIL import Image

from attrlab import methods, viz
from attrlab.cli import main
from attrlab.cli.common import parse_method_args
from attrlab.experiments.explain import NPZ_FIXED, load_samples
from attrlab.experiments.fitting import reference_data
from attrlab.methods.options import check_options
from attrlab.experiments.api import DEFAULT_METHODS
from attrlab.models.loading import IMAGENET_MEAN, IMAGENET_STD, load_model

CELL_PX = round(viz.CELL_INCHES * viz.DPI)
DIGITS_MEAN, DIGITS_STD = 0.305, 0.376


def _grid_size(path):
    with Image.open(path) as im:
        w, h = im.size
    assert w % CELL_PX == 0 and h % CELL_PX == 0, (w, h)
    return w // CELL_PX, h // CELL_PX  # columns, rows


def test_no_arguments_explains_digits_with_the_default_methods(tmp_path, capsys):
    assert main(["explain", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    png, npz = tmp_path / "explain.png", tmp_path / "attributions.npz"
    assert str(png) in out and str(npz) in out
    assert "gradcam layer: features.9 (default" in out  # the last conv block's output
    data = np.load(npz)
    names = list(DEFAULT_METHODS)
    assert set(data.files) == set(NPZ_FIXED) | set(names)
    x = data["inputs"]
    assert x.shape == (6, 1, 8, 8)
    model, _ = load_model()
    expected, labels, _ = load_samples("digits", n=6)
    assert np.allclose(x, expected.numpy())
    assert (data["labels"] == labels.numpy()).all()
    assert (data["targets"] == data["labels"]).all()  # dataset samples: the true class
    assert (data["preds"] == model(expected).argmax(1).numpy()).all()
    for name in names:
        assert data[name].shape == x.shape, name
        assert np.isfinite(data[name]).all(), name
        assert np.abs(data[name]).max() > 0, name
    assert _grid_size(png) == (1 + len(names), 6)


def _write_grey(path, arr):
    Image.fromarray(np.asarray(arr, dtype=np.uint8), mode="L").save(path)


def test_images_methods_and_method_args(tmp_path, capsys):
    a = np.zeros((8, 8), np.uint8)
    a[:, 3:5] = 255  # a vertical bar, roughly a "1"
    b = np.zeros((8, 8), np.uint8)
    b[1:7, 1:7] = 255
    b[2:6, 2:6] = 0  # a ring, roughly a "0"
    _write_grey(tmp_path / "a.png", a)
    _write_grey(tmp_path / "b.png", b)
    out = tmp_path / "out"
    rc = main(["explain", "--images", str(tmp_path / "a.png"), str(tmp_path / "b.png"),
               "--methods", "saliency,gxsi,ig", "--method-arg", "ig.n_steps=4",
               "--method-arg", "saliency.abs=false", "--out", str(out), "--no-progress"])
    assert rc == 0, capsys.readouterr().err
    data = np.load(out / "attributions.npz")
    assert set(data.files) == set(NPZ_FIXED) | {"saliency", "gxsi", "ig"}
    expected = (np.stack([a, b])[:, None] / 255.0 - DIGITS_MEAN) / DIGITS_STD
    assert np.allclose(data["inputs"], expected, atol=1e-5)
    assert (data["labels"] == -1).all()
    assert (data["targets"] == data["preds"]).all()  # image files: the predicted class
    assert data["saliency"].min() < 0  # saliency.abs=false reached the constructor
    # ig.n_steps=4 reached the method: the same as calling it directly with 4 steps
    model, _ = load_model()
    x = torch.from_numpy(data["inputs"])
    ig4 = methods.get("ig", model, n_steps=4).attribute(x, target=torch.from_numpy(data["preds"]))
    assert np.allclose(data["ig"], ig4.numpy(), atol=1e-5)
    assert _grid_size(out / "explain.png") == (4, 2)


def test_dataset_indices_and_target(tmp_path):
    rc = main(["explain", "--indices", "3,1", "--target", "7", "--methods", "gxi",
               "--out", str(tmp_path), "--no-progress"])
    assert rc == 0
    data = np.load(tmp_path / "attributions.npz")
    x, labels, _ = load_samples("digits", [3, 1])
    assert np.allclose(data["inputs"], x.numpy())
    assert (data["labels"] == labels.numpy()).all()
    assert (data["targets"] == 7).all()
    assert _grid_size(tmp_path / "explain.png") == (2, 2)


def test_torchvision_resnet18_from_a_state_dict(tmp_path, capsys):
    torchvision = pytest.importorskip("torchvision")
    torch.manual_seed(0)
    weights = tmp_path / "r18.pt"
    torch.save(torchvision.models.resnet18(num_classes=10).state_dict(), weights)
    rgb = np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    Image.fromarray(rgb, mode="RGB").save(tmp_path / "x.png")
    out = tmp_path / "out"
    rc = main(["explain", "--model", "torchvision:resnet18", "--num-classes", "10",
               "--input-size", "32", "--weights", str(weights), "--images",
               str(tmp_path / "x.png"), "--methods", "gradcam,saliency", "--out", str(out),
               "--no-progress"])
    assert rc == 0, capsys.readouterr().err
    data = np.load(out / "attributions.npz")
    mean = np.array(IMAGENET_MEAN).reshape(1, 3, 1, 1)
    std = np.array(IMAGENET_STD).reshape(1, 3, 1, 1)
    expected = (rgb.transpose(2, 0, 1)[None] / 255.0 - mean) / std
    assert np.allclose(data["inputs"], expected, atol=1e-5)
    assert 0 <= int(data["preds"][0]) < 10
    for name in ("gradcam", "saliency"):
        assert data[name].shape == (1, 3, 32, 32)
        assert np.isfinite(data[name]).all()
    assert _grid_size(out / "explain.png") == (3, 1)


def test_random_init_hub_cache_and_user_models(tmp_path, capsys, monkeypatch):
    torchvision = pytest.importorskip("torchvision")
    photo = np.random.default_rng(1).integers(0, 256, (30, 50, 3), dtype=np.uint8)
    Image.fromarray(photo, mode="RGB").save(tmp_path / "wide.png")
    common = ["--images", str(tmp_path / "wide.png"), "--input-size", "16", "--methods",
              "saliency,gradcam", "--no-progress"]
    rc = main(["explain", "--model", "torchvision:resnet18", "--random-init", "--out",
               str(tmp_path / "r"), *common])
    out = capsys.readouterr().out
    assert rc == 0 and "gradcam layer: layer4 (default" in out
    data = np.load(tmp_path / "r" / "attributions.npz")
    assert data["inputs"].shape == (1, 3, 16, 16)  # resized (shorter side) + centre crop
    # torchvision weights found in the torch hub cache by name (no download)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "hub"))
    weights = torchvision.models.ResNet18_Weights.IMAGENET1K_V1
    cache = tmp_path / "hub" / "hub" / "checkpoints"
    cache.mkdir(parents=True)
    torch.save(torchvision.models.resnet18().state_dict(), cache / weights.url.split("/")[-1])
    rc = main(["explain", "--model", "torchvision:resnet18", "--weights", "DEFAULT", "--out",
               str(tmp_path / "h"), *common])
    assert rc == 0, capsys.readouterr().err
    model, meta = load_model(None, "torchvision:resnet18", "IMAGENET1K_V1")
    assert meta["classes"][281] == "tabby" and meta["resize"] == 256
    # any model from module:function
    (tmp_path / "mynet.py").write_text(
        "import torch.nn as nn\n"
        "def make():\n"
        "    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1),\n"
        "                        nn.Flatten(), nn.Linear(4, 2))\n"
        "    return net, {'classes': ['cat', 'dog'], 'input_size': 16}\n")
    rc = main(["explain", "--model", f"{tmp_path / 'mynet.py'}:make", "--out",
               str(tmp_path / "u"), *common[:2], "--methods", "gradcam", "--no-progress"])
    out = capsys.readouterr().out
    assert rc == 0 and "gradcam layer: 1 (default" in out


@pytest.fixture
def garbage_png(tmp_path):
    path = tmp_path / "x.png"
    path.write_bytes(b"this is not an image\x00\x01\x02" * 10)
    return path


@pytest.fixture
def empty_weights(tmp_path):
    path = tmp_path / "empty.pt"
    torch.save({}, path)
    return path


ERRORS = {
    "unknown method": (["--methods", "saliency,nosuch"], "nosuch"),
    "method-arg without =": (["--method-arg", "ig.n_steps"], "METHOD.KEY=VALUE"),
    "method-arg without method": (["--method-arg", "n_steps=4"], "METHOD.KEY=VALUE"),
    "method-arg unknown method": (["--method-arg", "nosuch.k=1"], "nosuch"),
    "method-arg unknown key": (["--method-arg", "ig.n_stepz=4"], "n_stepz"),
    "unreadable image": (["--images", "{garbage}"], "cannot read image"),
    "missing image": (["--images", "{tmp}/absent.png"], "absent.png"),
    "missing checkpoint": (["--checkpoint", "{tmp}/nope.pt"], "nope.pt"),
    "index out of range": (["--indices", "0,100000"], "100000"),
    "bad indices": (["--indices", "a,b"], "--indices"),
    "target out of range": (["--target", "10", "--methods", "gxi"], "--target"),
    "images and dataset": (["--images", "{garbage}", "--dataset", "digits"], "either"),
    "torchvision without weights": (["--model", "torchvision:resnet18"], "--random-init"),
    "weights not in the hub cache": (["--model", "torchvision:resnet18", "--weights",
                                      "IMAGENET1K_V1"], "never downloads"),
    "unknown weights name": (["--model", "torchvision:resnet18", "--weights", "NOPE"],
                             "IMAGENET1K_V1"),
    "bad model spec": (["--model", "resnet18"], "module:function"),
    "missing user module": (["--model", "no_such_module_xyz:make"], "no_such_module_xyz"),
    "unknown torchvision model": (["--model", "torchvision:nosuchnet", "--weights", "w"],
                                  "nosuchnet"),
    "weights that do not fit": (["--model", "torchvision:resnet18", "--weights", "{weights}",
                                 "--images", "{garbage}"], "do not fit"),
    "unknown dataset": (["--dataset", "nosuchset"], "nosuchset"),
    "unknown gradcam layer": (["--method-arg", "gradcam.layer=features.99"], "features.99"),
    "unknown smoothgrad base": (["--methods", "smoothgrad", "--method-arg",
                                 "smoothgrad.base=nosuch"], "nosuch"),
    "option of a method not run": (["--method-arg", "smoothgrad.nt_samples=2"], "--methods"),
    "n not positive": (["--n", "0"], "--n"),
}


@pytest.mark.parametrize("case", list(ERRORS))
def test_errors_are_one_line(case, tmp_path, capsys, garbage_png, empty_weights):
    args, needle = ERRORS[case]
    args = [a.format(garbage=garbage_png, tmp=tmp_path, weights=empty_weights) for a in args]
    out = tmp_path / "out"
    rc = main(["explain", *args, "--out", str(out)])  # with the progress bar on
    err = capsys.readouterr().err
    assert rc == 2
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("attrlab: error:")
    assert needle in lines[0]
    assert not (out / "explain.png").exists()


def test_help_mentions_every_option(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["explain", "--help"])
    assert exc.value.code == 0
    text = capsys.readouterr().out
    for opt in ("--checkpoint", "--model", "--weights", "--num-classes", "--input-size",
                "--methods", "--method-arg", "--images", "--dataset", "--indices", "--n ",
                "--target", "--out", "--data-dir", "--overlay", "--no-progress",
                "digits_nib_cnn", "attrlab-explain", "torchvision:", "deepshap"):
        assert opt in text, opt


def test_check_options_by_declaration():
    assert check_options("ig", {"n_steps": 8, "baselines": 0.5}) == {"n_steps": 8,
                                                                    "baselines": 0.5}
    assert check_options("gradcam", {"layer": 7}) == {"layer": "7"}  # a name, not an int
    assert check_options("ig", {"internal_batch_size": "none"}) == {"internal_batch_size": None}
    # smoothgrad passes keys it does not declare to its base method
    assert check_options("smoothgrad", {"abs": False, "nt_samples": 3}) == {
        "abs": False, "nt_samples": 3}
    assert check_options("smoothgrad", {"base": "ig", "baselines": 0}) == {
        "base": "ig", "baselines": 0}
    with pytest.raises(ValueError, match="base method saliency"):
        check_options("smoothgrad", {"n_steps": 4})
    with pytest.raises(ValueError, match="no_such"):
        check_options("gxi", {"no_such": 1})
    with pytest.raises(ValueError, match="baselines must be a number"):
        check_options("ig", {"baselines": "zeros"})
    assert parse_method_args(["ig.n_steps=4", "gradcam.layer=features.7", "ig.method=riemann_left"]) == {
        "ig": {"n_steps": 4, "method": "riemann_left"}, "gradcam": {"layer": "features.7"}}


def test_deepshap_default_baselines():
    x, _, _ = load_samples("digits", [0, 1])
    model, meta = load_model()

    def fitted(data):
        return methods.get("deepshap", model).fit(data).state_dict()["baselines"]

    data, what = reference_data(x, meta, "digits")
    b = fitted(data)
    assert b.shape == (16, 1, 8, 8) and "train" in what
    from attrlab.data import load_dataset

    train_x, _ = load_dataset("digits", "train").tensors()
    assert all(any(torch.equal(row, t) for t in train_x) for row in b)
    data, what = reference_data(x, meta, None)
    b = fitted(data)
    assert b.shape == (16, 1, 8, 8) and "noise" in what
    pixels = b * DIGITS_STD + DIGITS_MEAN
    assert pixels.min() >= -1e-5 and pixels.max() <= 1 + 1e-5 and pixels.std() > 0.2


def test_random_methods_repeat_and_leave_the_global_rng_alone(tmp_path):
    from attrlab.experiments.explain import explain

    model, meta = load_model()
    x, labels, _ = load_samples("digits", [0, 1])
    opts = {"smoothgrad": {"nt_samples": 4}}
    torch.manual_seed(123)
    before = torch.rand(3)
    torch.manual_seed(123)
    a = explain(model, x, labels, ["smoothgrad"], opts, tmp_path / "a", meta, progress=False)
    assert torch.equal(torch.rand(3), before)  # the caller's RNG state is untouched
    b = explain(model, x, labels, ["smoothgrad"], opts, tmp_path / "b", meta, progress=False)
    c = explain(model, x, labels, ["smoothgrad"], opts, tmp_path / "c", meta, progress=False,
                seed=1)
    assert torch.equal(a["smoothgrad"], b["smoothgrad"])
    assert not torch.equal(a["smoothgrad"], c["smoothgrad"])
