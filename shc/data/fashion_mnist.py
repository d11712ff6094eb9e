"""Fashion-MNIST from its gzipped (or plain) IDX files: the Debian package's directory or torchvision's layout.

Protocol (DeepHash-pytorch's CIFAR-10 protocol, seeded): of the 70,000 images, 100 per class are
queries, 500 per class train, the remaining 64,000 form the database.
"""
from __future__ import annotations

import gzip
import os

import numpy as np

from shc.data.base import DataRootError, HashingDataset
from shc.data.memory import InMemorySplit
from shc.data.registry import data_root_candidates, missing_root_error, register_dataset
from shc.data.sampling import per_class_split

DEBIAN_ROOT = "/usr/share/datasets/fashion-mnist"
FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
CLASS_NAMES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
               "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]
MEAN, STD = 0.2860, 0.3530  # of the Fashion-MNIST training pixels, in [0, 1]

_IDX_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def read_idx(path: str) -> np.ndarray:
    """Read an IDX file (gzipped when the name ends in .gz); ValueError naming the file if malformed."""
    opener = gzip.open if path.endswith(".gz") else open
    try:
        with opener(path, "rb") as f:
            data = f.read()
    except (OSError, EOFError) as e:
        raise ValueError(f"cannot read IDX file {path}: {e}") from None
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] not in _IDX_DTYPES:
        raise ValueError(f"{path} is not an IDX file (bad magic number)")
    ndim = data[3]
    dims = tuple(int(d) for d in np.frombuffer(data, ">u4", ndim, offset=4))
    dtype = np.dtype(_IDX_DTYPES[data[2]])
    offset = 4 + 4 * ndim
    if len(data) - offset != int(np.prod(dims)) * dtype.itemsize:
        raise ValueError(f"{path}: header says {dims} ({dtype}), but the file holds {len(data) - offset} bytes")
    return np.frombuffer(data, dtype, offset=offset).reshape(dims).astype(dtype.newbyteorder("="), copy=False)


def find_files(root: str) -> dict[str, str] | None:
    """The four IDX files under ``root``, ``root/FashionMNIST/raw`` or ``root/raw`` (plain or .gz)."""
    for folder in (root, os.path.join(root, "FashionMNIST", "raw"), os.path.join(root, "raw")):
        found = {}
        for name in FILES:
            for candidate in (os.path.join(folder, name + ".gz"), os.path.join(folder, name)):
                if os.path.isfile(candidate):
                    found[name] = candidate
                    break
        if len(found) == len(FILES):
            return found
    return None


@register_dataset("fashion-mnist", "fashionmnist", "fmnist")
def fashion_mnist(data_root: str | None = None, seed: int = 0, *, query_per_class: int = 100,
                  train_per_class: int = 500, pad: int = 3, flip: bool = True) -> HashingDataset:
    """Fashion-MNIST, 1x28x28, 10 classes. ``pad``/``flip``: training augmentation (crop padding, flips)."""
    tried = data_root_candidates("fashion-mnist", data_root, defaults=(DEBIAN_ROOT,))
    files = next((f for f in map(find_files, tried) if f), None)
    if files is None:
        raise missing_root_error(
            "fashion-mnist", tried,
            f"the IDX files {', '.join(n + '[.gz]' for n in FILES)} in the directory itself or in "
            f"DIR/FashionMNIST/raw/ (torchvision's layout)",
            f"Get them with `apt-get install dataset-fashion-mnist` (installs {DEBIAN_ROOT}) or "
            f"torchvision.datasets.FashionMNIST(DIR, download=True).")
    images = np.concatenate([read_idx(files["train-images-idx3-ubyte"]), read_idx(files["t10k-images-idx3-ubyte"])])
    labels = np.concatenate([read_idx(files["train-labels-idx1-ubyte"]),
                             read_idx(files["t10k-labels-idx1-ubyte"])]).astype(np.int64)
    if images.ndim != 3 or images.shape[1:] != (28, 28) or len(images) != len(labels):
        raise DataRootError(f"fashion-mnist: unexpected file contents in {os.path.dirname(files[FILES[0]])}: "
                            f"images {images.shape}, labels {labels.shape}")
    if labels.min() < 0 or labels.max() >= len(CLASS_NAMES):
        raise DataRootError(f"fashion-mnist: labels outside 0..9 in {files['train-labels-idx1-ubyte']}")
    query, train, database = per_class_split(labels, (query_per_class, train_per_class), seed)

    def split(idx):
        return InMemorySplit(images[idx], labels[idx], mean=MEAN, std=STD, pad=pad, flip=flip, source_index=idx)

    return HashingDataset("fashion-mnist", num_classes=10, multi_label=False, channels=1, image_size=28,
                          train=split(train), query=split(query), database=split(database),
                          class_names=list(CLASS_NAMES))
