"""Stage 3: train the hashing network towards the hash centers; encode and evaluate the retrieval splits."""
from __future__ import annotations

import numpy as np
import torch

from shc.losses import center_loss
from shc.train.dist import Dist
from shc.train.loop import LoopOptions, forward, train_epochs
from shc.progress import show_progress

MULTILABEL_CENTER_RULES = ("csq", "first")


def tie_break_center(bits: int, seed: int) -> torch.Tensor:
    """The fixed random ±1 center that settles zero bits of CSQ's multi-label rule (seeded)."""
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 2, (bits,), generator=g).float() * 2 - 1


def multilabel_targets(labels: torch.Tensor, centers: torch.Tensor, rule: str = "csq",
                       tie_center: torch.Tensor | None = None) -> torch.Tensor:
    """B×q ±1 targets for multi-hot ``labels`` (B×C) and ``centers`` (C×q).

    csq: sign of the sum of the image's label centers, zero bits taken from ``tie_center``.
    first: the first positive label's center (the public code's rule).
    """
    if rule not in MULTILABEL_CENTER_RULES:
        raise ValueError(f"multi-label center rule must be one of {MULTILABEL_CENTER_RULES}, got {rule!r}")
    positives = (labels > 0).to(centers.dtype)
    if rule == "first":
        return centers[positives.argmax(1)]
    summed = positives @ centers
    if tie_center is None:
        raise ValueError("the csq rule needs tie_center (see tie_break_center)")
    return torch.where(summed == 0, tie_center.to(summed), summed.sign())


def hashing_loss(centers: torch.Tensor, *, lambd: float, multi_label: bool, rule: str = "csq", seed: int = 0):
    """loss_fn(u, labels) for the epoch loop: the center loss against each image's center."""
    centers = centers.float()
    if not multi_label:
        return lambda u, labels: center_loss(u, centers, labels, lambd)
    tie = tie_break_center(centers.shape[1], seed).to(centers.device)
    return lambda u, labels: center_loss(u, multilabel_targets(labels, centers, rule, tie), None, lambd)


def train_hashnet(model, dataset, method, opts: LoopOptions, **loop_kwargs) -> list[dict]:
    """Stage 3 for any training method (shc.methods): its loss, its per-epoch hook and its state."""
    return train_epochs(model, dataset.train, method.loss, opts, method=method, **loop_kwargs)


def sign_codes(u: torch.Tensor) -> torch.Tensor:
    """±1 int8 codes, sign(0) = +1."""
    return torch.where(u >= 0, 1, -1).to(torch.int8)


@torch.no_grad()
def encode_shard(model, split, *, batch_size: int, device, dist: Dist = Dist(), desc: str = "encode",
                 progress: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """This rank's shard of ``split``: its ±1 int8 codes and their positions in the split."""
    model.eval()
    rows, idx = [], []
    batches = split.batches(batch_size, train=False, device=device, rank=dist.rank, world_size=dist.world_size)
    total = split.num_batches(batch_size, rank=dist.rank, world_size=dist.world_size)
    for images, _, indices in show_progress(batches, total=total, desc=desc, enabled=progress and dist.is_main):
        rows.append(sign_codes(forward(model, images)).cpu())
        idx.append(indices.cpu())
    bits = model.bits
    codes = torch.cat(rows).numpy() if rows else np.empty((0, bits), np.int8)
    indices = torch.cat(idx).numpy() if idx else np.empty(0, np.int64)
    return codes, indices


def encode_split(model, split, *, batch_size: int, device, dist: Dist = Dist(), desc: str = "encode",
                 progress: bool = True) -> np.ndarray:
    """N×q int8 ±1 codes of ``split`` in split order. Each rank encodes its shard; ``dist`` reassembles."""
    codes, indices = encode_shard(model, split, batch_size=batch_size, device=device, dist=dist, desc=desc,
                                  progress=progress)
    return dist.gather_rows(codes, indices, len(split))
