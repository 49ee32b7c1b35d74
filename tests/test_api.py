"""``attrlab.explain``: one call from a model and images (tensors, arrays, files) to maps and a
figure."""

from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

import attrlab
from attrlab import methods
from attrlab.experiments.api import prepare_inputs


def _cnn(channels=3, k=4):
    with torch.random.fork_rng():
        torch.manual_seed(0)
        return nn.Sequential(nn.Conv2d(channels, 4, 3, padding=1), nn.ReLU(),
                             nn.Conv2d(4, 4, 3, padding=1), nn.ReLU(),
                             nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(16, k))


def test_single_image_tensor_and_numpy_are_a_batch_of_one():
    net = _cnn()
    x = torch.randn(3, 8, 8, generator=torch.Generator().manual_seed(0))
    r = attrlab.explain(net, x, methods=["saliency", "gradcam"], figure=False)
    assert r.maps["saliency"].shape == (1, 3, 8, 8) and r.layers == {"gradcam": "3"}
    want = methods.get("saliency", net).attribute(x[None], target=r.preds)
    torch.testing.assert_close(r.maps["saliency"], want)
    r2 = attrlab.explain(net, x.numpy(), methods=["saliency"], figure=False)
    torch.testing.assert_close(r2.maps["saliency"], want)
    assert r.images.min() >= 0 and r.images.max() <= 1  # min-max scaled for display


def test_targets_classes_and_errors():
    net = _cnn()
    x = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(1))
    r = attrlab.explain(net, x, methods="saliency", target=2, classes=list("abcd"))
    assert r.targets.tolist() == [2, 2] and r.name(2) == "c" and r.figure is not None
    with pytest.raises(ValueError, match="4 outputs"):
        attrlab.explain(net, x, methods="saliency", classes=["a"], figure=False)
    with pytest.raises(ValueError, match="out of range"):
        attrlab.explain(net, x, methods="saliency", target=7, figure=False)
    with pytest.raises(ValueError, match=r"\(C, H, W\) or \(N, C, H, W\)"):
        attrlab.explain(net, torch.randn(8, 8), methods="saliency", figure=False)
    with pytest.raises(ValueError, match="unknown method 'nope'"):
        attrlab.explain(net, x, methods=["nope"], figure=False)
    assert len(attrlab.experiments.api.imagenet_classes()) == 1000


def test_image_files_are_resized_then_centre_cropped(tmp_path):
    # 40 x 20 image: left quarter black, the rest white, a red centre column
    arr = np.full((20, 40, 3), 255, np.uint8)
    arr[:, :10] = 0
    arr[:, 19:21] = (255, 0, 0)
    Image.fromarray(arr).save(tmp_path / "wide.png")
    x, images, mean, std = prepare_inputs(str(tmp_path / "wide.png"), 3, size=10, resize=10)
    assert x.shape == (1, 3, 10, 10) and mean == (0.485, 0.456, 0.406)
    # resized to 20 x 10 (shorter side 10), centre 10 columns kept: columns 5..14 of the
    # resized image, i.e. no black (the black quarter is columns 0..4) and a red centre
    img = images[0]
    assert img[:, :, 0].min() > 0.5  # no black left edge: it was cropped away
    assert img[1, 5, 4:6].max() < 0.6 and img[0, 5, 4:6].min() > 0.9  # red in the middle
    torch.testing.assert_close(x[0], (img - torch.tensor(mean).view(3, 1, 1))
                               / torch.tensor(std).view(3, 1, 1))
    net = _cnn()
    r = attrlab.explain(net, [tmp_path / "wide.png", Image.fromarray(arr), arr],
                        methods="saliency", size=10, figure=False)
    assert r.inputs.shape == (3, 3, 10, 10)
    torch.testing.assert_close(r.inputs[0], r.inputs[1])
    torch.testing.assert_close(r.inputs[0], r.inputs[2])


class _HF(nn.Module):
    def __init__(self):
        super().__init__()
        self.net = _cnn()

    def forward(self, x):
        return SimpleNamespace(logits=self.net(x))


def test_hugging_face_outputs_and_the_model_is_left_as_it_was(tmp_path):
    hf = _HF().train()
    x = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(2))
    r = attrlab.explain(hf, x, methods=["saliency", "gradcam"])
    assert hf.training and all(p.requires_grad for p in hf.parameters())
    assert all(not m._forward_hooks for m in hf.modules())
    want = methods.get("saliency", hf.net).attribute(x, target=r.preds)
    torch.testing.assert_close(r.maps["saliency"], want)
    assert r.layers["gradcam"] == "net.3"
    # every method reads .logits, also called directly
    torch.testing.assert_close(methods.get("saliency", hf).attribute(x, r.preds), want)
    path = r.save(tmp_path / "f.png")
    with Image.open(path) as im:
        assert im.format == "PNG" and im.size[0] > im.size[1]


def test_timm_models_are_built_without_pretrained_weights(monkeypatch, tmp_path):
    import sys
    import types

    from attrlab.models.loading import load_model

    calls = []

    def create_model(name, pretrained=True, **kw):
        calls.append((name, pretrained, kw))
        net = _cnn(k=kw.get("num_classes", 5))
        net.pretrained_cfg = {"mean": (0.5, 0.5, 0.5), "std": (0.25, 0.25, 0.25),
                              "input_size": (3, 32, 32), "crop_pct": 0.8}
        return net

    monkeypatch.setitem(sys.modules, "timm", types.SimpleNamespace(create_model=create_model))
    model, meta = load_model(None, "timm:tiny_net", random_init=True)
    assert calls == [("tiny_net", False, {})]
    assert meta["mean"] == [0.5] * 3 and meta["input_size"] == 32 and meta["resize"] == 40
    torch.save(model.state_dict(), tmp_path / "w.pt")
    again, _ = load_model(None, "timm:tiny_net", str(tmp_path / "w.pt"))
    for a, b in zip(model.state_dict().values(), again.state_dict().values()):
        torch.testing.assert_close(a, b)
    with pytest.raises(ValueError, match="--random-init"):
        load_model(None, "timm:tiny_net")
