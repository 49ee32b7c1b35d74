"""Data loaders on small files the tests write, and on the real data when it is there."""

import gzip
import struct
import zipfile

import numpy as np
import pytest
import torch
from PIL import Image

from attrlab.data import (
    SST2,
    BoxedDataset,
    ClutteredMNIST,
    Vocab,
    cifar_python,
    data_dir,
    digits,
    image_folder,
    load_dataset,
    load_sst2,
    read_idx,
)
from attrlab.data.images import CIFAR10_CLASSES


def write_idx(path, array, gz=True):
    header = struct.pack(">BBBB", 0, 0, 8, array.ndim) + struct.pack(f">{array.ndim}i", *array.shape)
    raw = header + array.astype(np.uint8).tobytes()
    (gzip.open if gz else open)(path, "wb").write(raw)


def test_digits_is_the_embedded_default():
    tr, te = digits("train"), digits("test")
    assert (len(tr), len(te)) == (1347, 450)
    assert tr.images.shape[1:] == (1, 8, 8) and tr.images.dtype == torch.uint8
    assert set(te.labels.tolist()) == set(range(10))
    x, _ = tr.tensors()
    assert abs(float(x.mean())) < 0.05 and abs(float(x.std()) - 1) < 0.05  # normalised
    # no sample is in both splits
    a = {bytes(i.numpy()) for i in tr.images}
    b = {bytes(i.numpy()) for i in te.images}
    assert len(a & b) < 5  # identical 8x8 digits exist in sklearn's set, but very few


def test_read_idx_gz_and_plain(tmp_path):
    arr = np.arange(2 * 3 * 4).reshape(2, 3, 4) % 256
    write_idx(tmp_path / "a.gz", arr)
    write_idx(tmp_path / "a", arr, gz=False)
    assert (read_idx(tmp_path / "a.gz") == arr).all() and (read_idx(tmp_path / "a") == arr).all()
    (tmp_path / "bad").write_bytes(b"\x00\x00\x08\x01\x00\x00\x00\x05abc")
    with pytest.raises(ValueError, match="header says"):
        read_idx(tmp_path / "bad")


def test_mnist_from_idx_files_and_missing_file_message(tmp_path, monkeypatch):
    monkeypatch.delenv("ATTRLAB_DATA_DIR", raising=False)
    with pytest.raises(FileNotFoundError, match="ATTRLAB_DATA_DIR"):
        load_dataset("mnist", "test")
    d = tmp_path / "mnist"
    d.mkdir()
    write_idx(d / "t10k-images-idx3-ubyte.gz", np.random.default_rng(0).integers(0, 255, (5, 28, 28)))
    with pytest.raises(FileNotFoundError, match=r"MNIST test labels not found: looked for .*t10k-labels"):
        load_dataset("mnist", "test", tmp_path)
    write_idx(d / "t10k-labels-idx1-ubyte", np.array([0, 1, 2, 3, 4]), gz=False)
    ds = load_dataset("mnist", "test", tmp_path)
    assert len(ds) == 5 and ds[2][0].shape == (1, 28, 28) and ds[2][1] == 2


def test_cifar10_zip_layout(tmp_path, monkeypatch):
    monkeypatch.setenv("ATTRLAB_CACHE_DIR", str(tmp_path / "cache"))
    with zipfile.ZipFile(tmp_path / "cifar10-jpeg.zip", "w") as z:
        for k, name in enumerate(CIFAR10_CLASSES):
            img = Image.fromarray(np.full((32, 32, 3), k * 20, np.uint8))
            for i in range(2):
                p = tmp_path / f"{name}{i}.jpg"
                img.save(p)
                z.write(p, f"cifar10-jpeg/test/{name}/{i:04d}.jpg")
    ds = load_dataset("cifar10", "test", tmp_path)
    # class-interleaved: 0..9, 0..9 (ImageFolder alone would give 0, 0, 1, 1, ...)
    assert ds.images.shape == (20, 3, 32, 32) and ds.labels.tolist() == list(range(10)) * 2
    assert abs(int(ds.images[19, 0, 5, 5]) - 180) <= 3  # truck = 9 -> grey 180, JPEG-exact-ish
    # second call reads the decoded cache (the zip is no longer needed)
    (tmp_path / "cifar10-jpeg.zip").rename(tmp_path / "moved.zip")
    (tmp_path / "cifar10-jpeg.zip").write_bytes(b"")  # must not be opened again
    assert torch.equal(load_dataset("cifar10", "test", tmp_path).images, ds.images)


def test_cifar_python_layout(tmp_path):
    import pickle

    root = tmp_path / "cifar-10-batches-py"
    root.mkdir()
    rng = np.random.default_rng(0)
    for name in ["data_batch_%d" % i for i in range(1, 6)] + ["test_batch"]:
        with open(root / name, "wb") as f:
            pickle.dump({"data": rng.integers(0, 255, (3, 3072), dtype=np.uint8),
                         "labels": [1, 2, 3]}, f)
    with open(root / "batches.meta", "wb") as f:
        pickle.dump({"label_names": list(CIFAR10_CLASSES)}, f)
    ds = cifar_python(tmp_path, "test")
    assert ds.images.shape == (3, 3, 32, 32) and ds.labels.tolist() == [1, 2, 3]
    assert ds.info.classes == CIFAR10_CLASSES
    assert len(cifar_python(tmp_path, "train")) == 15
    # CIFAR-100 layout
    root100 = tmp_path / "cifar-100-python"
    root100.mkdir()
    for name in ("train", "test"):
        with open(root100 / name, "wb") as f:
            pickle.dump({"data": rng.integers(0, 255, (4, 3072), dtype=np.uint8),
                         "fine_labels": [0, 99, 5, 7]}, f)
    with open(root100 / "meta", "wb") as f:
        pickle.dump({"fine_label_names": [f"c{i}" for i in range(100)]}, f)
    assert cifar_python(tmp_path, "test", num_classes=100).labels.tolist() == [0, 99, 5, 7]


class Evil:
    def __reduce__(self):
        return (print, ("pwned",))


def test_cifar_python_refuses_code_in_pickles(tmp_path):
    import pickle

    root = tmp_path / "cifar-10-batches-py"
    root.mkdir()
    with open(root / "test_batch", "wb") as f:
        pickle.dump({"data": Evil(), "labels": []}, f)
    with pytest.raises(pickle.UnpicklingError, match="refusing to load builtins.print"):
        cifar_python(tmp_path, "test")


def test_image_folder(tmp_path):
    for cls in ("cat", "dog"):
        (tmp_path / cls).mkdir()
        for i in range(3):
            Image.fromarray(np.full((20, 24, 3), 100 if cls == "cat" else 200, np.uint8)).save(
                tmp_path / cls / f"{i}.png")
    ds = image_folder(tmp_path, size=16)
    assert ds.images.shape == (6, 3, 16, 16) and ds.info.classes == ("cat", "dog")
    assert ds.labels.tolist() == [0, 1, 0, 1, 0, 1] and int(ds.images[3].float().mean()) == 200
    with pytest.raises(FileNotFoundError, match="image folder not found"):
        image_folder(tmp_path / "nope", size=16)


def test_sst2_files_vocab_and_batches(tmp_path):
    d = tmp_path / "sst2"
    d.mkdir()
    for split in ("train", "dev", "test"):
        (d / f"stsa.binary.{split}").write_text("1 a good movie\n0 a bad , bad film\n")
    data = load_sst2(tmp_path)
    vocab = data["train"].vocab
    assert vocab.itos[:3] == ["<pad>", "<unk>", "a"] and vocab.stoi["bad"] == 3
    ids, labels, lengths = SST2.collate([data["dev"][0], data["dev"][1]])
    assert ids.shape == (2, 5) and labels.tolist() == [1, 0] and lengths.tolist() == [3, 5]
    assert ids[0, 3:].tolist() == [0, 0]  # padding
    assert vocab.encode(["unseen"]).tolist() == [1]
    (d / "stsa.binary.dev").write_text("2 what\n")
    with pytest.raises(ValueError, match="0/1 label"):
        load_sst2(tmp_path)
    assert Vocab.build([["x", "y", "y"]], min_freq=2).itos == ["<pad>", "<unk>", "y"]


def test_cluttered_mnist_boxes_and_determinism():
    rng = np.random.default_rng(0)
    digits_ = torch.zeros(10, 28, 28, dtype=torch.uint8)
    for i in range(10):
        digits_[i, 6:22, 9:19] = torch.from_numpy(rng.integers(100, 255, (16, 10)).astype(np.uint8))
    ds = ClutteredMNIST(digits_, torch.arange(10), size=64, n_fragments=5, seed=3)
    canvas, label, (x0, y0, x1, y1) = ds.raw(4)
    assert label == 4 and (x1 - x0, y1 - y0) == (10, 16)  # tight box of the digit strokes
    inside = np.zeros_like(canvas, bool)
    inside[y0:y1, x0:x1] = True
    assert (canvas[inside] >= 100).all()  # the digit is there
    assert canvas[~inside].any()  # clutter exists outside the box
    again = ClutteredMNIST(digits_, torch.arange(10), size=64, n_fragments=5, seed=3)
    assert np.array_equal(again.raw(4)[0], canvas)
    other = ClutteredMNIST(digits_, torch.arange(10), size=64, n_fragments=5, seed=4)
    assert not np.array_equal(other.raw(4)[0], canvas)
    x, y, box = ds[4]
    assert x.shape == (1, 64, 64) and box.tolist() == [x0, y0, x1, y1]
    whole = ds.materialise()  # the in-memory copy equals the samples drawn one by one
    xs, ys = whole.tensors(torch.tensor([4, 7]))
    torch.testing.assert_close(xs[0], x)
    assert ys.tolist() == [4, 7] and torch.equal(whole.ground_truth([4, 7])["boxes"],
                                                 ds.ground_truth([4, 7])["boxes"])
    with pytest.raises(ValueError, match=r"boxes must be \(N, 4\)"):
        BoxedDataset(whole.images, whole.labels, whole.boxes[:3], whole.info)


# ------------------------------------------------------------------- real data (CI has it)

def test_real_mnist(real_data_dir):
    te = load_dataset("mnist", "test", real_data_dir)
    assert te.labels.bincount().tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
    assert len(load_dataset("mnist", "train", real_data_dir)) == 60000
    cm = ClutteredMNIST(te.images[:50], te.labels[:50])
    assert cm[0][0].shape == (1, 64, 64)
    reg = load_dataset("cluttered_mnist", "test", real_data_dir)  # the registered data set
    assert reg.images.shape == (10000, 1, 64, 64) and reg.info.name == "cluttered_mnist"
    assert torch.equal(reg.labels, te.labels) and reg.ground_truth([0])["boxes"].shape == (1, 4)


def test_real_cifar10_test_split(real_data_dir):
    te = load_dataset("cifar10", "test", real_data_dir)
    assert te.images.shape == (10000, 3, 32, 32)
    assert te.labels.bincount().tolist() == [1000] * 10
    assert te.labels[:1000].bincount().tolist() == [100] * 10  # first N: class-balanced


def test_interleave_classes_unbalanced():
    from attrlab.data.images import interleave_classes

    labels = torch.tensor([0, 0, 0, 1, 2, 2])
    order = interleave_classes(labels)
    assert labels[order].tolist() == [0, 1, 2, 0, 2, 0]
    assert sorted(order.tolist()) == list(range(6))
    # within a class the original order is kept
    assert [i for i in order.tolist() if labels[i] == 0] == [0, 1, 2]


def test_real_sst2(real_data_dir):
    data = load_sst2(real_data_dir)
    assert {k: len(v) for k, v in data.items()} == {"train": 6920, "dev": 872, "test": 1821}
    assert len(data["train"].vocab) > 10000


def test_data_dir_setting(tmp_path, monkeypatch):
    monkeypatch.setenv("ATTRLAB_DATA_DIR", str(tmp_path))
    assert data_dir() == tmp_path and data_dir(tmp_path / "..") == tmp_path / ".."
    with pytest.raises(FileNotFoundError, match="does not exist"):
        data_dir(tmp_path / "missing")


def test_digits_cache_gives_the_split_scikit_learn_gives(tmp_path, monkeypatch):
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    monkeypatch.setenv("ATTRLAB_CACHE_DIR", str(tmp_path))
    first = digits("train")  # computed with scikit-learn, then cached
    assert len(list(tmp_path.glob("digits-sklearn*.npz"))) == 1
    again, test = digits("train"), digits("test")  # from the cache
    assert torch.equal(first.images, again.images) and torch.equal(first.labels, again.labels)
    d = load_digits()
    _, te = train_test_split(range(len(d.target)), test_size=0.25, random_state=0,
                             stratify=d.target)
    assert test.labels.tolist() == d.target[te].tolist() and test.images.shape == (450, 1, 8, 8)
    assert test.images.dtype == torch.uint8 and test.labels.dtype == torch.int64
