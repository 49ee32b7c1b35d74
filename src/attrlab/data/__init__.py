"""Data sets as torch datasets: the embedded default (scikit-learn digits), MNIST from IDX
files, CIFAR-10 from the JPEG zip or the official python layout, any ImageFolder tree,
SST-2 sentences and the Cluttered-MNIST localisation benchmark.

Where real data lives is one setting: ``--data-dir`` on the command line or the environment
variable ``ATTRLAB_DATA_DIR`` (``.ci/run`` points it at ``../shared/data``). Nothing is ever
downloaded.
"""

from .cluttered import BoxedDataset, ClutteredMNIST, cluttered_mnist
from .core import (
                   DATASETS,
                   DatasetInfo,
                   NormalizedDataset,
                   cache_dir,
                   data_dir,
                   dataset_info,
                   load_dataset,
                   require_file,
)
from .images import cifar10, cifar_python, digits, image_folder, mnist, read_idx
from .text import SST2, TEXT_DATASETS, Vocab, load_sst2, tokenize

__all__ = [
    "DATASETS", "DatasetInfo", "NormalizedDataset", "cache_dir", "data_dir", "dataset_info",
    "load_dataset", "require_file", "cifar10", "cifar_python", "digits", "image_folder",
    "mnist", "read_idx", "ClutteredMNIST", "BoxedDataset", "cluttered_mnist", "SST2",
    "TEXT_DATASETS", "Vocab", "load_sst2", "tokenize",
]
