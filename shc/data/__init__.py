"""Datasets, retrieval protocols and the fast input pipeline.

    >>> from shc.data import load_dataset
    >>> ds = load_dataset("fashion-mnist", seed=0)
    >>> for images, labels, idx in ds.train.batches(256, train=True, device="cuda", epoch=0): ...

See docs/data.md for the datasets, their on-disk formats and protocols.
"""
from shc.data.base import DataRootError, HashingDataset, ImageReadError, Split
from shc.data.files import FileSplit
from shc.data.memory import InMemorySplit
from shc.data.registry import ALIASES, DATA_ROOT_ENV, DATASETS, canonical_name, load_dataset, register_dataset

# importing the loaders registers them
from shc.data import cifar, fashion_mnist, file_datasets, synthetic  # noqa: E402,F401  isort:skip

__all__ = ["DATASETS", "ALIASES", "DATA_ROOT_ENV", "load_dataset", "register_dataset", "canonical_name",
           "HashingDataset", "Split", "InMemorySplit", "FileSplit", "DataRootError", "ImageReadError"]
