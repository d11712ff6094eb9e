"""What every dataset is: three splits (train / query / database) behind one small interface.

A loader returns a :class:`HashingDataset`; each split is a :class:`Split` that yields
``(images, labels, indices)`` batches already on the training device, so training and
evaluation code never care whether the pixels live in memory or in image files.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import cached_property
from typing import Iterator

import numpy as np
import torch

from shc.data.sampling import num_batches, shard_indices


class DataRootError(FileNotFoundError, ValueError):
    """A data root is missing or incomplete. The message names the files expected and how to get them."""


class ImageReadError(OSError):
    """An image file could not be read or decoded. The message names the file."""


class Split:
    """One split of a dataset. Subclasses implement :meth:`_batches_for` over the rank's index order."""

    labels: np.ndarray  # (N,) int64 class ids, or (N, C) uint8 multi-hot

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def multi_label(self) -> bool:
        return self.labels.ndim == 2

    def num_batches(self, batch_size: int, *, rank: int = 0, world_size: int = 1, train: bool = False,
                    drop_last: bool = False) -> int:
        """How many batches :meth:`batches` yields with these arguments (for progress bars)."""
        _check_batch_args(batch_size, rank, world_size)
        return num_batches(len(self), batch_size, train=train, world_size=world_size, rank=rank,
                           drop_last=drop_last)

    def batches(self, batch_size: int, *, train: bool, device="cpu", seed: int = 0, epoch: int = 0,
                rank: int = 0, world_size: int = 1, workers: int | None = None, drop_last: bool = False,
                ) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        """Yield ``(images, labels, indices)`` on ``device``.

        images: float32 (B, channels, H, W), normalised; augmented when ``train`` is true.
        labels: int64 class ids (B,) or float32 multi-hot (B, C). indices: int64 positions in this split.
        ``train=True`` shuffles with ``(seed, epoch)`` and augments; ``train=False`` keeps the split's order.
        Each rank gets a disjoint shard (DistributedSampler semantics for training; a contiguous,
        non-padded shard for evaluation, so gathering by the returned indices is exact). The same
        ``(seed, epoch)`` gives every sample the same augmentation whatever the world size or workers.
        ``workers``: loading processes / threads of file splits (None: the split's own setting).
        """
        _check_batch_args(batch_size, rank, world_size)
        if workers is not None and workers < 0:
            raise ValueError(f"workers must be >= 0, got {workers}")
        order = shard_indices(len(self), train=train, seed=seed, epoch=epoch, rank=rank,
                              world_size=world_size, drop_last=drop_last)
        device = torch.device(device)
        if device.type == "cuda" and device.index is None:  # one cached copy whether called "cuda" or "cuda:0"
            device = torch.device("cuda", torch.cuda.current_device())
        return self._batches_for(order, batch_size, train=train, device=device, seed=seed, epoch=epoch,
                                 workers=workers, drop_last=drop_last)

    def _batches_for(self, order: np.ndarray, batch_size: int, *, train: bool, device: torch.device,
                     seed: int, epoch: int, workers: int | None, drop_last: bool):
        raise NotImplementedError

    def content_id(self) -> str:
        """What this split's batches are made of, as a digest: the pixels (or the identity of the files they
        come from), the labels and the transform. Stage fingerprints hold it, so changed data retrains."""
        raise NotImplementedError(f"{type(self).__name__} must say what its content is (content_id)")

    def _labels_tensor(self, labels: np.ndarray) -> torch.Tensor:
        """Labels as the training code wants them: int64 ids or float32 multi-hot."""
        t = torch.from_numpy(np.ascontiguousarray(labels))
        return t.float() if self.multi_label else t.long()


@dataclass
class HashingDataset:
    """A retrieval dataset: a training split, the queries, and the database searched."""

    name: str
    num_classes: int
    multi_label: bool
    channels: int       # what the model sees
    image_size: int     # height = width of the images the model sees
    train: Split
    query: Split
    database: Split
    class_names: list[str] | None = None
    skipped: tuple[str, ...] = ()   # unreadable images left out of the lists (``skip_unreadable``)

    def __post_init__(self):
        for split_name in ("train", "query", "database"):
            labels = getattr(self, split_name).labels
            if not len(labels):  # nothing to train on, or to evaluate: never "train" on it
                raise ValueError(f"{self.name}: the {split_name} split is empty (a per-class count of 0, an empty "
                                 f"list, or all its images left out)")
            if (labels.ndim == 2) != self.multi_label:
                raise ValueError(f"{self.name}: {split_name} labels have shape {labels.shape}, "
                                 f"inconsistent with multi_label={self.multi_label}")
            if labels.ndim == 2 and labels.shape[1] != self.num_classes:
                raise ValueError(f"{self.name}: {split_name} labels have {labels.shape[1]} columns, "
                                 f"expected num_classes={self.num_classes}")
            if labels.ndim == 1 and len(labels) and (labels.min() < 0 or labels.max() >= self.num_classes):
                raise ValueError(f"{self.name}: {split_name} labels outside [0, {self.num_classes})")
        if self.class_names is not None and len(self.class_names) != self.num_classes:
            raise ValueError(f"{self.name}: {len(self.class_names)} class names for {self.num_classes} classes")

    @cached_property
    def content_id(self) -> str:
        """The digest of the three splits' content_id."""
        return digest_of(*(split.content_id() for split in (self.train, self.query, self.database)))

    def __repr__(self) -> str:
        return (f"HashingDataset({self.name!r}, classes={self.num_classes}, multi_label={self.multi_label}, "
                f"{self.channels}x{self.image_size}x{self.image_size}, train={len(self.train)}, "
                f"query={len(self.query)}, database={len(self.database)}"
                + (f", {len(self.skipped)} unreadable images skipped)" if self.skipped else ")"))


def digest_of(*parts) -> str:
    """sha256 of ``parts``: strings, bytes or numpy arrays, each framed by its kind and size (its dtype and shape
    for an array), so that different parts never give the same digest by running into each other."""
    h = hashlib.sha256()
    for part in parts:
        if isinstance(part, np.ndarray):
            array = np.ascontiguousarray(part)
            header, data = f"array {array.dtype.str} {array.shape}", array.data
        else:
            data = part.encode() if isinstance(part, str) else bytes(part)
            header = f"bytes {len(data)}"
        h.update(header.encode() + b"\0")
        h.update(data)
    return h.hexdigest()


def _check_batch_args(batch_size: int, rank: int, world_size: int) -> None:
    if not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    if world_size < 1 or not 0 <= rank < world_size:
        raise ValueError(f"need 0 <= rank < world_size, got rank={rank}, world_size={world_size}")
