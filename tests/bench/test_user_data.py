"""attrlab bench on a user's data: ImageFolder trees, .npz files, any torch Dataset from
Python, and warnings when model and data disagree."""

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn
from torch.utils.data import TensorDataset

import attrlab
from attrlab import cli
from attrlab.data import digits
from attrlab.data.files import user_dataset
from attrlab.experiments.store import ResultStore

DIGITS_META = {"in_channels": 1, "input_size": 8, "mean": [0.305], "std": [0.376]}


def _digit_pngs(root, n=3):
    test = digits("test")
    for i in range(n * 2):
        label = int(test.labels[i])
        folder = root / f"class_{label}"
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(test.images[i, 0].numpy(), mode="L").save(folder / f"{i}.png")
    return test


def test_image_folder_and_npz_are_read_for_the_model(tmp_path):
    _digit_pngs(tmp_path / "tree")
    ds = user_dataset(tmp_path / "tree", DIGITS_META)
    x, y = ds.tensors()
    assert x.shape[1:] == (1, 8, 8) and ds.info.classes == tuple(sorted(ds.info.classes))
    assert abs(float(x.mean())) < 1.5  # normalised with the model's mean/std
    test = digits("test")
    np.savez(tmp_path / "u8.npz", inputs=test.images[:5, 0].numpy(), labels=test.labels[:5])
    a, la = user_dataset(tmp_path / "u8.npz", DIGITS_META).tensors()
    b, lb = test.tensors(torch.arange(5))
    torch.testing.assert_close(a, b)
    torch.testing.assert_close(la, lb)
    np.savez(tmp_path / "f.npz", x=b.numpy(), y=lb.numpy())
    c, _ = user_dataset(tmp_path / "f.npz", DIGITS_META).tensors()
    torch.testing.assert_close(c, b)  # float inputs are taken as they are
    with pytest.raises(ValueError, match="'inputs'"):
        np.savez(tmp_path / "bad.npz", a=b.numpy())
        user_dataset(tmp_path / "bad.npz", DIGITS_META)


def test_cli_bench_on_an_npz_warns_on_unnormalised_inputs(tmp_path, capsys):
    test = digits("test")
    raw = test.images[:6].float().numpy()  # 0..255, not normalised
    np.savez(tmp_path / "raw.npz", inputs=raw, labels=test.labels[:6].numpy())
    rc = cli.main(["bench", "--dataset", str(tmp_path / "raw.npz"), "--methods", "saliency",
                   "--metrics", "morf", "--out", str(tmp_path / "o"), "--report-samples", "0",
                   "--no-progress"])
    err = capsys.readouterr().err
    assert rc == 0 and "do not look normalised" in err
    with ResultStore(tmp_path / "o" / "results.sqlite") as store:
        assert any("do not look normalised" in n for n in store.info("notes"))
        assert len(store.scores()) == 6


class Tiny(nn.Module):
    def __init__(self, k=3):
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.fc = nn.Linear(4, k)

    def forward(self, x):
        return self.fc(torch.relu(self.conv(x)).mean((2, 3)))


def test_python_entry_point_with_any_model_and_dataset(tmp_path):
    g = torch.Generator().manual_seed(0)
    data = TensorDataset(torch.randn(10, 1, 8, 8, generator=g), torch.arange(10) % 3)
    with torch.random.fork_rng():
        torch.manual_seed(0)
        net = Tiny(4)  # 4 outputs, 3 classes: warned
    with pytest.warns(UserWarning, match="4 outputs but the data 3 classes"):
        path = attrlab.bench.run(model=net, data=data, methods=["saliency", "gradcam"],
                                 metrics=["morf"], out=str(tmp_path / "py"), batch_size=4,
                                 report_samples=2, report=True, progress=False)
    with ResultStore(path) as store:
        rows = store.scores()
        assert {r[0] for r in rows} == {"saliency", "gradcam"} and len(rows) == 20
        assert store.info("model_name") == "python:Tiny"
    html = (tmp_path / "py" / "report.html").read_text()
    assert "python:Tiny" in html and "layer=&#39;conv&#39; (chosen)" in html
    with pytest.raises(ValueError, match="3 classes but the model only 2"):
        attrlab.bench.run(model=Tiny(2), data=data, methods=["saliency"], metrics=["morf"],
                          out=str(tmp_path / "bad"), progress=False)


class HF(nn.Module):
    """A Hugging Face-style classifier: returns an object with .logits."""

    def __init__(self):
        super().__init__()
        self.body = Tiny(3)

    def forward(self, x):
        from types import SimpleNamespace

        return SimpleNamespace(logits=self.body(x))


def test_hugging_face_style_model_in_the_harness(tmp_path):
    g = torch.Generator().manual_seed(1)
    data = TensorDataset(torch.randn(6, 1, 8, 8, generator=g), torch.arange(6) % 3)
    with torch.random.fork_rng():
        torch.manual_seed(0)
        hf = HF()
    path = attrlab.bench.run(model=hf, data=data, methods=["saliency"], metrics=["morf"],
                             out=str(tmp_path / "hf"), progress=False)
    with ResultStore(path) as store:
        assert len(store.scores()) == 6
