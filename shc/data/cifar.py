"""CIFAR-100 from torchvision's ``cifar-100-python/`` pickles (``train``, ``test``, ``meta``).

SHC's ``cifar-100-new-seg`` split is unpublished; the default follows a public reproduction:
of the 60,000 images, 100 per class train (10,000), 50 per class are queries (5,000), the rest
(45,000) the database. Seeded and configurable.
"""
from __future__ import annotations

import os
import pickle

import numpy as np

from shc.data.base import DataRootError, HashingDataset
from shc.data.memory import InMemorySplit
from shc.data.registry import data_root_candidates, missing_root_error, register_dataset
from shc.data.sampling import per_class_split

FOLDER = "cifar-100-python"
MEAN = (0.5071, 0.4865, 0.4409)  # of the CIFAR-100 training pixels, in [0, 1]
STD = (0.2673, 0.2564, 0.2762)


def read_pickle(path: str) -> dict:
    """A CIFAR pickle as a dict with str keys (the originals were written by Python 2)."""
    try:
        with open(path, "rb") as f:
            content = pickle.load(f, encoding="latin1")
    except (OSError, pickle.UnpicklingError, EOFError, ValueError) as e:
        raise DataRootError(f"cannot read CIFAR pickle {path}: {e}") from None
    if not isinstance(content, dict):
        raise DataRootError(f"{path}: expected a dict, got {type(content).__name__}")
    return {k.decode() if isinstance(k, bytes) else k: v for k, v in content.items()}


def find_folder(root: str) -> str | None:
    for folder in (os.path.join(root, FOLDER), root):
        if all(os.path.isfile(os.path.join(folder, f)) for f in ("train", "test", "meta")):
            return folder
    return None


@register_dataset("cifar100", "cifar-100", "cifar-100-new-seg", "cifar100-new-seg")
def cifar100(data_root: str | None = None, seed: int = 0, *, train_per_class: int = 100,
             query_per_class: int = 50, pad: int = 4, flip: bool = True) -> HashingDataset:
    """CIFAR-100, 3x32x32, 100 fine classes. ``pad``/``flip``: training augmentation."""
    tried = data_root_candidates("cifar100", data_root)
    folder = next((f for f in map(find_folder, tried) if f), None)
    if folder is None:
        raise missing_root_error(
            "cifar100", tried, f"DIR/{FOLDER}/{{train,test,meta}} (torchvision's pickles)",
            "Get them with torchvision.datasets.CIFAR100(DIR, download=True) on a machine with internet "
            "(or the tarball cifar-100-python.tar.gz from https://www.cs.toronto.edu/~kriz/cifar.html), "
            "then copy DIR here.")
    parts = [read_pickle(os.path.join(folder, name)) for name in ("train", "test")]
    try:
        images = np.concatenate([np.asarray(p["data"], np.uint8).reshape(-1, 3, 32, 32) for p in parts])
        labels = np.concatenate([np.asarray(p["fine_labels"], np.int64) for p in parts])
        class_names = list(read_pickle(os.path.join(folder, "meta"))["fine_label_names"])
    except (KeyError, ValueError) as e:
        raise DataRootError(f"cifar100: malformed pickles in {folder}: {type(e).__name__}: {e}") from None
    if len(images) != len(labels) or labels.min() < 0 or labels.max() >= len(class_names):
        raise DataRootError(f"cifar100: {len(images)} images, {len(labels)} labels, "
                            f"{len(class_names)} class names in {folder} do not agree")
    images = images.transpose(0, 2, 3, 1)  # (N, H, W, C), the in-memory layout
    query, train, database = per_class_split(labels, (query_per_class, train_per_class), seed)

    def split(idx):
        return InMemorySplit(images[idx], labels[idx], mean=MEAN, std=STD, pad=pad, flip=flip, source_index=idx)

    return HashingDataset("cifar100", num_classes=len(class_names), multi_label=False, channels=3, image_size=32,
                          train=split(train), query=split(query), database=split(database),
                          class_names=class_names)
