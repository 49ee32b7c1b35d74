"""Training loop: augmentation, deterministic resume, checkpoint format and safe loading."""

import pytest
import torch
import torch.nn.functional as F

from attrlab import cli
from attrlab.data import digits
from attrlab.experiments import train
from attrlab.models import load_checkpoint, nib_cnn, shipped


def test_augment_batch_is_crop_of_padded_image_with_flip():
    gen = torch.Generator().manual_seed(0)
    imgs = torch.randint(0, 255, (16, 3, 8, 8), dtype=torch.uint8)
    out = train.augment_batch(imgs, gen, pad=2)
    assert out.shape == imgs.shape and out.dtype == torch.uint8
    padded = F.pad(imgs, (2, 2, 2, 2))
    flipped_any = False
    for i in range(16):
        found = False
        for oy in range(5):
            for ox in range(5):
                crop = padded[i, :, oy:oy + 8, ox:ox + 8]
                if torch.equal(out[i], crop):
                    found = True
                elif torch.equal(out[i], crop.flip(-1)):
                    found = flipped_any = True
        assert found, f"sample {i} is not a (flipped) crop"
    assert flipped_any


def small(split):
    d = digits(split)
    d.images, d.labels = d.images[:200], d.labels[:200]
    return d


RECIPE = train.Recipe(optimizer="adam", lr=1e-2, weight_decay=0.0, epochs=3, batch_size=20,
                      schedule="cosine", augment=False)


def test_fit_writes_loadable_checkpoint(tmp_path):
    torch.manual_seed(0)
    meta = train.fit(nib_cnn(width=4), small("train"), small("test"), RECIPE, tmp_path / "m.pt",
                     seed=0, progress=False)
    model, meta2 = load_checkpoint(tmp_path / "m.pt")
    assert meta2 == meta and meta["arch"]["name"] == "nib_cnn" and meta["dataset"] == "digits"
    assert meta["test_accuracy"] == train.accuracy(model, small("test")) > 0.3
    assert not (tmp_path / "m.pt.partial").exists()
    blob = torch.load(tmp_path / "m.pt", weights_only=True)  # safe loading works
    assert set(blob) == {"state_dict", "meta"}


def test_resume_after_interruption_gives_identical_weights(tmp_path, monkeypatch):
    torch.manual_seed(0)
    train.fit(nib_cnn(width=4), small("train"), small("test"), RECIPE, tmp_path / "full.pt",
              seed=1, progress=False)
    calls = {"n": 0}
    real_accuracy = train.accuracy

    def interrupt_after_two_epochs(model, data, batch_size=500):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return real_accuracy(model, data, batch_size)

    monkeypatch.setattr(train, "accuracy", interrupt_after_two_epochs)
    torch.manual_seed(0)
    with pytest.raises(KeyboardInterrupt):
        train.fit(nib_cnn(width=4), small("train"), small("test"), RECIPE, tmp_path / "r.pt",
                  seed=1, progress=False)
    assert (tmp_path / "r.pt.partial").exists() and not (tmp_path / "r.pt").exists()
    monkeypatch.setattr(train, "accuracy", real_accuracy)
    torch.manual_seed(123)  # resume restores the RNG state itself
    train.fit(nib_cnn(width=4), small("train"), small("test"), RECIPE, tmp_path / "r.pt",
              seed=1, progress=False)
    a, _ = load_checkpoint(tmp_path / "full.pt")
    b, _ = load_checkpoint(tmp_path / "r.pt")
    for (k, v), w in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(v, w), k


def test_half_precision_storage(tmp_path):
    torch.manual_seed(0)
    meta = train.fit(nib_cnn(width=4), small("train"), small("test"),
                     train.Recipe(**{**RECIPE.__dict__, "epochs": 1}), tmp_path / "h.pt",
                     half=True, progress=False)
    blob = torch.load(tmp_path / "h.pt", weights_only=True)
    assert meta["stored_as"] == "float16"
    assert all(v.dtype == torch.float16 for v in blob["state_dict"].values() if v.is_floating_point())
    model, _ = load_checkpoint(tmp_path / "h.pt")
    assert next(model.parameters()).dtype == torch.float32
    assert meta["test_accuracy"] == train.accuracy(model, small("test"))


def test_recipe_with_epochs_scales_milestones():
    r = train.PRESETS["paper01"].with_epochs(35)
    assert r.epochs == 35 and r.milestones == (30,)


class Custom:
    """A pickled class: loading it would need code execution, so weights_only refuses."""


def test_unsafe_or_foreign_files_are_refused(tmp_path):
    (tmp_path / "x.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="weights_only=True"):
        load_checkpoint(tmp_path / "x.pt")
    torch.save({"weights": torch.zeros(2)}, tmp_path / "y.pt")
    with pytest.raises(ValueError, match="no state_dict/meta"):
        load_checkpoint(tmp_path / "y.pt")
    torch.save({"state_dict": {}, "meta": Custom()}, tmp_path / "z.pt")
    with pytest.raises(ValueError, match="weights_only"):
        load_checkpoint(tmp_path / "z.pt")
    with pytest.raises(FileNotFoundError, match="neither a file nor a shipped"):
        load_checkpoint("no_such_model")


@pytest.mark.parametrize("name", shipped())
def test_shipped_checkpoints_load_and_match_their_metadata(name, request):
    model, meta = load_checkpoint(name)
    image = meta.get("input_kind", "images") == "images"
    for key in ("arch", "dataset", "test_accuracy", "command") + (("mean", "std") if image
                                                                  else ("vocab",)):
        assert key in meta
    assert meta["command"].startswith("attrlab train")
    if not image:
        from attrlab.data import SST2, Vocab, load_sst2
        test = load_sst2(request.getfixturevalue("real_data_dir"))["test"]
        test = SST2(test.samples, Vocab.from_itos(meta["vocab"]))
        assert train.text_accuracy(model, test) == pytest.approx(meta["test_accuracy"], abs=1e-3)
    elif meta["dataset"] == "digits":
        assert train.accuracy(model, digits("test")) == pytest.approx(meta["test_accuracy"])
    else:
        data_dir = request.getfixturevalue("real_data_dir")
        from attrlab.data import load_dataset
        test = load_dataset(meta["dataset"], "test", data_dir)
        # trained on a GPU for CIFAR-10: allow 10 of 10,000 argmax flips between back ends
        assert train.accuracy(model, test) == pytest.approx(meta["test_accuracy"], abs=1e-3)


def test_cli_train_and_errors(tmp_path, capsys):
    rc = cli.main(["train", "--model", "nib_cnn", "--model-arg", "width=4", "--dataset", "digits",
                   "--preset", "digits", "--epochs", "1", "--out", str(tmp_path / "c.pt"),
                   "--no-progress"])
    assert rc == 0 and (tmp_path / "c.pt").exists()
    meta = load_checkpoint(tmp_path / "c.pt")[1]
    assert meta["arch"]["width"] == 4 and "--epochs 1" in meta["command"]
    capsys.readouterr()
    assert cli.main(["train", "--model", "nib_cnn", "--dataset", "digits", "--preset", "fast",
                     "--out", str(tmp_path / "d.pt")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("attrlab: error: unknown preset 'fast'")
    assert cli.main(["train", "--model", "nib_cnn", "--model-arg", "width", "--dataset", "digits",
                     "--out", str(tmp_path / "d.pt")]) == 2
    assert "KEY=VALUE" in capsys.readouterr().err
