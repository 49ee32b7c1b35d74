"""Image data sets: scikit-learn digits (embedded default), MNIST, CIFAR-10/100, ImageFolder."""

from __future__ import annotations

import gzip
import os
import pickle
import zipfile
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from .core import (
    DATASETS,
    DatasetInfo,
    NormalizedDataset,
    cache_dir,
    data_dir,
    require_file,
)

CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse",
                   "ship", "truck")
# Paper 01, section 4: per-channel mean and std used for CIFAR.
CIFAR_MEAN, CIFAR_STD = (0.507, 0.487, 0.441), (0.267, 0.256, 0.276)

DIGITS = DatasetInfo("digits", 10, 1, 8, (0.305,), (0.376,), tuple(map(str, range(10))))
MNIST = DatasetInfo("mnist", 10, 1, 28, (0.1307,), (0.3081,), tuple(map(str, range(10))))
CIFAR10 = DatasetInfo("cifar10", 10, 3, 32, CIFAR_MEAN, CIFAR_STD, CIFAR10_CLASSES)


def digits(split: str = "test", _data_dir=None, test_fraction: float = 0.25) -> NormalizedDataset:
    """scikit-learn's 1,797 real 8x8 hand-written digits (installed with scikit-learn, so the
    embedded default needs no data directory). A fixed stratified split (seed 0): 75 % train.
    The split is cached in the cache directory (keyed by the scikit-learn version), so later
    calls do not import scikit-learn."""
    imgs, labels = _digits_split(split, test_fraction)
    return NormalizedDataset(torch.from_numpy(imgs), torch.from_numpy(labels), DIGITS)


def _digits_split(split: str, test_fraction: float) -> tuple[np.ndarray, np.ndarray]:
    """uint8 (N, 1, 8, 8) images and int64 labels of one split of the digits."""
    from importlib.metadata import version

    path = cache_dir() / f"digits-sklearn{version('scikit-learn')}-{test_fraction:g}.npz"
    if path.exists():
        with np.load(path) as z:
            return z[f"{split}_images"], z[f"{split}_labels"]
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    d = load_digits()
    idx = np.arange(len(d.target))
    train_idx, test_idx = train_test_split(idx, test_size=test_fraction, random_state=0,
                                           stratify=d.target)
    out = {}
    for name, sel in (("train", train_idx), ("test", test_idx)):
        out[f"{name}_images"] = np.rint(d.images[sel] / 16.0 * 255.0).astype(np.uint8)[:, None]
        out[f"{name}_labels"] = d.target[sel].astype(np.int64)
    tmp = path.with_name(f"{path.stem}.{os.getpid()}.tmp.npz")
    np.savez(tmp, **out)
    os.replace(tmp, path)
    return out[f"{split}_images"], out[f"{split}_labels"]


def read_idx(path: Path) -> np.ndarray:
    """Read an IDX file (optionally gzip'd): the MNIST on-disk format."""
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "rb") as f:
        raw = f.read()
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise ValueError(f"{path} is not an unsigned-byte IDX file")
    ndim = raw[3]
    dims = np.frombuffer(raw, dtype=">i4", count=ndim, offset=4)
    data = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
    if data.size != int(np.prod(dims)):
        raise ValueError(f"{path}: header says {tuple(dims)} but holds {data.size} bytes")
    return data.reshape(tuple(int(d) for d in dims))


def _find(folder: Path, stem: str, what: str) -> Path:
    for name in (stem + ".gz", stem):
        if (folder / name).exists():
            return folder / name
    return require_file(folder / (stem + ".gz"), what)


def mnist(split: str = "test", data_dir_=None) -> NormalizedDataset:
    """MNIST from the four standard IDX files (gzip'd or not) in ``<data dir>/mnist``."""
    folder = data_dir(data_dir_) / "mnist"
    prefix = "train" if split == "train" else "t10k"
    imgs = read_idx(_find(folder, f"{prefix}-images-idx3-ubyte", f"MNIST {split} images"))
    labels = read_idx(_find(folder, f"{prefix}-labels-idx1-ubyte", f"MNIST {split} labels"))
    return NormalizedDataset(torch.from_numpy(imgs.copy())[:, None],
                             torch.from_numpy(labels.astype(np.int64)), MNIST)


def interleave_classes(labels: Tensor) -> Tensor:
    """Order that deals the samples out class by class: the first sample of every class (in
    class order), then every class's second, and so on (a class that runs out is skipped).

    ImageFolder lists samples sorted by class, so its first N samples would all be one class;
    in this order the first N of a balanced set hold N/K of each of the K classes."""
    rank = torch.empty_like(labels)
    for c in labels.unique():
        where = (labels == c).nonzero().flatten()
        rank[where] = torch.arange(len(where))
    return torch.argsort(rank * (int(labels.max()) + 1) + labels, stable=True)


def _folder_to_tensors(folder: Path, size: int | None = None) -> tuple[Tensor, Tensor, list[str]]:
    """Decode an ImageFolder tree (torchvision) into uint8 (N, C, H, W) and labels, in the
    class-interleaved order of :func:`interleave_classes`."""
    from torchvision.datasets import ImageFolder
    from torchvision.transforms import functional as TF

    ds = ImageFolder(str(folder))
    if len(ds) == 0:
        raise FileNotFoundError(f"no images found under {folder}")
    imgs, labels = [], []
    for path, label in ds.samples:
        img = ds.loader(path)
        if size is not None:
            img = TF.resize(img, [size, size])
        imgs.append(TF.pil_to_tensor(img))
        labels.append(label)
    order = interleave_classes(torch.tensor(labels))
    return torch.stack(imgs)[order], torch.tensor(labels)[order], ds.classes


def cifar10(split: str = "test", data_dir_=None) -> NormalizedDataset:
    """CIFAR-10 from ``<data dir>/cifar10-jpeg.zip`` (extracted once into the cache directory,
    read with torchvision's ImageFolder, decoded once to a tensor cache); falls back to the
    official python layout ``<data dir>/cifar-10-batches-py`` if the zip is absent. The zip
    is sorted by class and loses the official order, so samples come class-interleaved
    (:func:`interleave_classes`): the first 1,000 test images are 100 of each class."""
    root = data_dir(data_dir_)
    zpath = root / "cifar10-jpeg.zip"
    if not zpath.exists() and (root / "cifar-10-batches-py").exists():
        return cifar_python(root, split, num_classes=10)
    require_file(zpath, "CIFAR-10 (cifar10-jpeg.zip)")
    # v2: class-interleaved order (v1 caches, sorted by class, are not read)
    cached = cache_dir() / f"cifar10-jpeg-{split}-v2.pt"
    if cached.exists():
        blob = torch.load(cached, weights_only=True)
        return NormalizedDataset(blob["images"], blob["labels"], CIFAR10)
    target = cache_dir() / "cifar10-jpeg"
    if not (target / split).is_dir():
        with zipfile.ZipFile(zpath) as z:
            members = [n for n in z.namelist() if n.startswith(f"cifar10-jpeg/{split}/")]
            z.extractall(cache_dir(), members)
    imgs, labels, classes = _folder_to_tensors(target / split)
    if tuple(classes) != CIFAR10_CLASSES:
        raise ValueError(f"unexpected CIFAR-10 class folders {classes}")
    tmp = cached.with_suffix(".tmp")
    torch.save({"images": imgs, "labels": labels}, tmp)
    os.replace(tmp, cached)
    return NormalizedDataset(imgs, labels, CIFAR10)


class _ArrayUnpickler(pickle.Unpickler):
    """Unpickler that only rebuilds numpy arrays and plain containers: the CIFAR python
    batches are pickles, and a pickle may otherwise run arbitrary code."""

    _ALLOWED = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
                ("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode")}

    def find_class(self, module: str, name: str):
        if (module, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name} from a data file")
        return super().find_class(module, name)


def _load_batch(path: Path) -> dict:
    with open(require_file(path, f"CIFAR batch {path.name}"), "rb") as f:
        return _ArrayUnpickler(f, encoding="latin1").load()


def cifar_python(root: str | os.PathLike, split: str = "test",
                 num_classes: int = 10) -> NormalizedDataset:
    """CIFAR-10/100 in the official python layout (``cifar-10-batches-py`` or
    ``cifar-100-python`` under ``root``). The pickled batches are read with an unpickler that
    accepts nothing but numpy arrays and plain containers. Never downloads."""
    if num_classes == 10:
        folder = require_file(Path(root) / "cifar-10-batches-py", "CIFAR-10 python layout")
        files = [f"data_batch_{i}" for i in range(1, 6)] if split == "train" else ["test_batch"]
        meta, names_key, labels_key = "batches.meta", "label_names", "labels"
    elif num_classes == 100:
        folder = require_file(Path(root) / "cifar-100-python", "CIFAR-100 python layout")
        files = ["train"] if split == "train" else ["test"]
        meta, names_key, labels_key = "meta", "fine_label_names", "fine_labels"
    else:
        raise ValueError(f"num_classes must be 10 or 100, got {num_classes}")
    batches = [_load_batch(folder / f) for f in files]
    data = np.concatenate([np.asarray(b["data"], dtype=np.uint8) for b in batches])
    labels = np.concatenate([np.asarray(b[labels_key], dtype=np.int64) for b in batches])
    classes = tuple(_load_batch(folder / meta)[names_key])
    imgs = torch.from_numpy(data.reshape(-1, 3, 32, 32).copy())
    info = DatasetInfo(f"cifar{num_classes}", num_classes, 3, 32, CIFAR_MEAN, CIFAR_STD, classes)
    return NormalizedDataset(imgs, torch.from_numpy(labels), info)


def image_folder(root: str | os.PathLike, size: int, mean: tuple[float, ...] = CIFAR_MEAN,
                 std: tuple[float, ...] = CIFAR_STD) -> NormalizedDataset:
    """Any ``<root>/<class>/<image>`` tree (torchvision ImageFolder), resized to size x size."""
    folder = require_file(Path(root), "image folder")
    imgs, labels, classes = _folder_to_tensors(folder, size)
    info = DatasetInfo(Path(root).name, len(classes), imgs.shape[1], size, tuple(mean),
                       tuple(std), tuple(classes))
    return NormalizedDataset(imgs, labels, info)


DATASETS.update({
    "digits": (DIGITS, digits),
    "mnist": (MNIST, mnist),
    "cifar10": (CIFAR10, cifar10),
})
