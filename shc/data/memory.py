"""Datasets that fit in memory: uint8 tensors moved once to the device, augmented there in batches.

No per-sample PIL or Python work: a batch is one gather (random crop with zero padding and a
horizontal flip folded into the gather's index grid), one cast and one fused scale/shift.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from shc.data.base import Split, digest_of
from shc.data.sampling import batch_slices, crop_flip_params, sample_bits


class InMemorySplit(Split):
    """A split held as a uint8 ``(N, H, W, C)`` array (``(N, H, W)`` is taken as one channel).

    mean/std: per-channel normalisation in [0, 1] units. pad: zero padding of the random crop
    (0 turns cropping off). flip: random horizontal flips when training. source_index: the rows of the dataset's
    source arrays this split holds, in order (a run writes them to codes/, so that codes made outside shc can encode
    the same items in the same order); None when there is no such source.
    """

    def __init__(self, images: np.ndarray, labels: np.ndarray, *, mean, std, pad: int = 4, flip: bool = True,
                 source_index: np.ndarray | None = None):
        images = np.asarray(images)
        if images.ndim == 3:
            images = images[..., None]
        if images.ndim != 4 or images.dtype != np.uint8:
            raise ValueError(f"images must be uint8 (N, H, W[, C]), got {images.dtype} {images.shape}")
        if len(images) != len(labels):
            raise ValueError(f"{len(images)} images but {len(labels)} labels")
        channels = images.shape[-1]
        mean, std = np.broadcast_to(np.asarray(mean, np.float64), (channels,)), \
            np.broadcast_to(np.asarray(std, np.float64), (channels,))
        if (std <= 0).any():
            raise ValueError(f"std must be positive, got {std}")
        if pad < 0:
            raise ValueError(f"pad must be >= 0, got {pad}")
        self.images = np.ascontiguousarray(images)
        self.labels = np.asarray(labels)
        self.pad, self.flip = int(pad), bool(flip)
        self.source_index = None if source_index is None else np.asarray(source_index, dtype=np.int64)
        if self.source_index is not None and self.source_index.shape != (len(images),):
            raise ValueError(f"source_index must hold one row number per image, got shape {self.source_index.shape}")
        # x_normalised = (x / 255 - mean) / std = x * scale + shift
        self._scale = torch.tensor(1.0 / (255.0 * std), dtype=torch.float32).view(1, -1, 1, 1)
        self._shift = torch.tensor(-mean / std, dtype=torch.float32).view(1, -1, 1, 1)
        self._on_device: dict[torch.device, tuple[torch.Tensor, ...]] = {}

    def content_id(self) -> str:
        """The pixels themselves (hashing them costs ~0.1 s for Fashion-MNIST), labels and normalisation."""
        return digest_of(self.images, self.labels, self._scale.numpy(), self._shift.numpy(),
                         f"pad {self.pad} flip {self.flip}")

    def _tensors(self, device: torch.device):
        """Images, labels and normalisation constants on ``device`` (copied there once)."""
        if device not in self._on_device:
            self._on_device[device] = (torch.from_numpy(self.images).to(device),
                                       self._labels_tensor(self.labels).to(device),
                                       self._scale.to(device), self._shift.to(device))
        return self._on_device[device]

    def _batches_for(self, order, batch_size, *, train, device, seed, epoch, workers, drop_last):
        images, labels, scale, shift = self._tensors(device)
        order_cpu = torch.from_numpy(order)
        order_dev = order_cpu.to(device)
        augment = train and (self.pad > 0 or self.flip)
        if augment:
            span = 2 * self.pad + 1
            dy, dx, flip = crop_flip_params(sample_bits(seed, epoch, order), span, span)
            dy, dx = torch.from_numpy(dy).to(device), torch.from_numpy(dx).to(device)
            flip = torch.from_numpy(flip & self.flip).to(device)
        for sl in batch_slices(len(order), batch_size, drop_last):
            x = images[order_dev[sl]]
            if augment:
                x = crop_flip(x, dy[sl], dx[sl], flip[sl], self.pad)
            yield normalize(x, scale, shift), labels[order_dev[sl]], order_cpu[sl]


def normalize(images: torch.Tensor, scale: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """uint8 ``(B, H, W, C)`` -> float32 ``(B, C, H, W)`` ``x * scale + shift``: one cast, one fused pass."""
    return images.permute(0, 3, 1, 2).contiguous().float().mul_(scale).add_(shift)


def crop_flip(images: torch.Tensor, dy: torch.Tensor, dx: torch.Tensor, flip: torch.Tensor, pad: int):
    """Batched random crop of ``(B, H, W, C)`` images padded by ``pad`` zeros, then optional flip.

    Sample b is ``padded[b, dy[b]:dy[b]+H, dx[b]:dx[b]+W]``, mirrored left-right where ``flip[b]``:
    one ``index_select`` of pixels at flat positions (faster than 3-D advanced indexing on CPU).
    """
    b, h, w, c = images.shape
    padded = F.pad(images, (0, 0, pad, pad, pad, pad)) if pad else images
    hp, wp = padded.shape[1:3]
    rows = dy[:, None] + torch.arange(h, device=images.device)                    # (B, H)
    cols = dx[:, None] + torch.arange(w, device=images.device)                    # (B, W)
    cols = torch.where(flip[:, None], cols.flip(1), cols)  # a flip reads the window's columns backwards
    first_row = torch.arange(b, device=images.device)[:, None, None] * hp
    pixel = ((first_row + rows[:, :, None]) * wp + cols[:, None, :]).view(-1)    # (B*H*W,)
    return padded.reshape(-1, c).index_select(0, pixel).view(b, h, w, c)
