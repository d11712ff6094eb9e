"""Pure index math for the data pipeline: protocol splits, shuffling, sharding, per-sample randomness.

Everything here is numpy-only and deterministic, so it is tested in milliseconds and every
loader (in-memory or file-backed) shares exactly the same order and augmentation draws.
"""
from __future__ import annotations

import numpy as np

_MASK64 = (1 << 64) - 1


def per_class_split(labels: np.ndarray, sizes: tuple[int, ...], seed: int) -> list[np.ndarray]:
    """Seeded per-class protocol split of single-label ``labels``.

    Returns ``len(sizes) + 1`` sorted index arrays: part k takes ``sizes[k]`` random samples of
    every class, the last part takes the rest. Raises ValueError if a class is too small.
    """
    labels = np.asarray(labels)
    if labels.ndim != 1:
        raise ValueError(f"per_class_split needs single-label (N,) labels, got shape {labels.shape}")
    if not all(isinstance(s, (int, np.integer)) and not isinstance(s, bool) and s >= 0 for s in sizes):
        raise ValueError(f"split sizes (per-class counts) must be integers >= 0, got {tuple(sizes)}")
    rng = np.random.default_rng(_seed_key(seed))
    parts: list[list[np.ndarray]] = [[] for _ in range(len(sizes) + 1)]
    bounds = np.cumsum((0,) + tuple(sizes))
    for c in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == c))
        if len(members) < bounds[-1]:
            raise ValueError(f"class {c} has {len(members)} samples, the protocol needs {bounds[-1]} "
                             f"({' + '.join(map(str, sizes))}) per class")
        for k in range(len(sizes)):
            parts[k].append(members[bounds[k]:bounds[k + 1]])
        parts[-1].append(members[bounds[-1]:])
    return [np.sort(np.concatenate(p)) if p else np.zeros(0, np.int64) for p in parts]


def shard_indices(n: int, *, train: bool, seed: int = 0, epoch: int = 0, rank: int = 0, world_size: int = 1,
                  drop_last: bool = False) -> np.ndarray:
    """The positions of a split that one rank visits, in order.

    train: a permutation seeded by ``(seed, epoch)``, split across ranks like torch's
    DistributedSampler (padded by wrapping around so every rank gets the same count, or truncated
    when ``drop_last``). Evaluation: ``0..n-1`` in contiguous, non-padded, non-overlapping chunks.
    """
    if not train:
        return np.arange(n * rank // world_size, n * (rank + 1) // world_size, dtype=np.int64)
    order = np.random.default_rng([_seed_key(seed), _seed_key(epoch)]).permutation(n).astype(np.int64)
    if world_size == 1:
        return order
    per_rank = n // world_size if drop_last else -(-n // world_size)
    total = per_rank * world_size
    if total > n:  # pad by wrapping, repeating as often as needed (n may be < world_size)
        order = np.resize(order, total)
    return order[rank:total:world_size]


def num_batches(n: int, batch_size: int, *, train: bool, world_size: int = 1, rank: int = 0,
                drop_last: bool = False) -> int:
    """How many batches one rank gets from a split of ``n`` samples."""
    if train:
        count = (n // world_size if drop_last else -(-n // world_size)) if n else 0
    else:
        count = n * (rank + 1) // world_size - n * rank // world_size
    return count // batch_size if drop_last else -(-count // batch_size)


def batch_slices(count: int, batch_size: int, drop_last: bool):
    """``slice`` objects cutting ``count`` items into batches."""
    stop = count - count % batch_size if drop_last else count
    for start in range(0, stop, batch_size):
        yield slice(start, min(start + batch_size, count))


def sample_bits(seed: int, epoch: int, indices: np.ndarray) -> np.ndarray:
    """64 random bits per sample from a counter-based hash of ``(seed, epoch, index)``.

    Augmentation draws come from these, so a sample is augmented the same way in a given epoch
    no matter which rank, worker or batch it lands in.
    """
    key = _splitmix64(_splitmix64(np.array([_seed_key(seed)], np.uint64)) + np.uint64(_seed_key(epoch)))
    return _splitmix64(key + np.asarray(indices, dtype=np.uint64))


def _splitmix64(x: np.ndarray) -> np.ndarray:
    with np.errstate(over="ignore"):
        x = x + np.uint64(0x9E3779B97F4A7C15)
        x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return x ^ (x >> np.uint64(31))


def _seed_key(value: int) -> int:
    """Any Python int (negative seeds included) as a 64-bit unsigned key."""
    return int(value) & _MASK64


def crop_flip_params(bits: np.ndarray, range_y, range_x) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Crop offsets ``dy in [0, range_y)``, ``dx in [0, range_x)`` and a horizontal-flip flag from
    :func:`sample_bits` (disjoint bit fields, so the three draws are independent)."""
    bits = np.asarray(bits, dtype=np.uint64)
    dy = (bits & np.uint64(0x1FFFFF)) % np.asarray(range_y, dtype=np.uint64)
    dx = ((bits >> np.uint64(21)) & np.uint64(0x1FFFFF)) % np.asarray(range_x, dtype=np.uint64)
    flip = ((bits >> np.uint64(42)) & np.uint64(1)).astype(bool)
    return dy.astype(np.int64), dx.astype(np.int64), flip
