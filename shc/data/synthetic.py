"""A seeded synthetic dataset with a class hierarchy, for tests and smoke runs only (never for results).

Every super-class owns a smooth random pattern; each of its sub-classes adds a weaker pattern of
its own, so sub-classes of one super-class look alike (the structure semantic centres exploit)
and a tiny CNN separates them in seconds. Images are a class pattern plus pixel noise; a
multi-label image mixes the patterns of its labels (mostly siblings from one super-class).
"""
from __future__ import annotations

import numpy as np

from shc.data.base import HashingDataset
from shc.data.memory import InMemorySplit
from shc.data.registry import register_dataset
from shc.data.sampling import per_class_split


def super_class_of(num_classes: int, super_classes: int) -> np.ndarray:
    """Super-class of each class: contiguous, near-equal groups."""
    return np.arange(num_classes) * super_classes // num_classes


def _smooth_patterns(rng, count: int, channels: int, size: int, grid: int) -> np.ndarray:
    """``count`` random (channels, size, size) patterns, blocky at ``grid`` x ``grid`` resolution, unit scale."""
    coarse = rng.standard_normal((count, channels, grid, grid))
    reps = -(-size // grid)
    fine = coarse.repeat(reps, axis=2).repeat(reps, axis=3)[:, :, :size, :size]
    return fine / fine.std(axis=(1, 2, 3), keepdims=True)


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


@register_dataset("synthetic", "synth")
def synthetic(data_root: str | None = None, seed: int = 0, *, num_classes: int = 10, super_classes: int | None = None,
              multi_label: bool = False, sizes: tuple[int, int, int] = (50, 10, 50), channels: int = 3,
              image_size: int = 32, noise: float = 0.5, sibling_weight: float = 0.6) -> HashingDataset:
    """Synthetic hierarchical data. ``sizes``: (train, query, database) images per class (per primary
    label when multi-label). ``super_classes`` defaults to ``max(1, num_classes // 3)``.
    ``sibling_weight``: strength of a sub-class's own pattern relative to its super-class's."""
    if data_root is not None:
        raise ValueError("synthetic: takes no data_root (it is generated)")
    # --data-option values are whatever literal (or string) was typed: name the option and what it takes
    for key, value, ok, expected in (
            ("num_classes", num_classes, _is_int(num_classes), "an integer"),
            ("super_classes", super_classes, super_classes is None or _is_int(super_classes), "an integer"),
            ("multi_label", multi_label, isinstance(multi_label, bool), "True or False"),
            ("sizes", sizes, isinstance(sizes, (tuple, list)) and len(sizes) == 3
             and all(_is_int(n) and n >= 1 for n in sizes),
             "three positive per-class counts (train, query, database), e.g. sizes=(50,10,50)"),
            ("channels", channels, _is_int(channels), "an integer"),
            ("image_size", image_size, _is_int(image_size), "an integer"),
            ("noise", noise, _is_number(noise), "a number"),
            ("sibling_weight", sibling_weight, _is_number(sibling_weight), "a number")):
        if not ok:
            raise ValueError(f"synthetic: {key} must be {expected}, got {value!r}")
    super_classes = max(1, num_classes // 3) if super_classes is None else super_classes
    if num_classes < 2 or not 1 <= super_classes <= num_classes:
        raise ValueError(f"synthetic: need num_classes >= 2 and 1 <= super_classes <= num_classes, "
                         f"got {num_classes}, {super_classes}")
    if channels not in (1, 3) or image_size < 8:
        raise ValueError(f"synthetic: need channels in (1, 3) and image_size >= 8, got {channels}, {image_size}")

    rng = np.random.default_rng(seed)
    parent = super_class_of(num_classes, super_classes)
    supers = _smooth_patterns(rng, super_classes, channels, image_size, grid=4)
    own = _smooth_patterns(rng, num_classes, channels, image_size, grid=8)
    prototypes = supers[parent] + sibling_weight * own                     # (C, ch, S, S)

    primary = np.repeat(np.arange(num_classes), sum(sizes))
    if multi_label:
        hot = np.zeros((len(primary), num_classes), np.uint8)
        hot[np.arange(len(primary)), primary] = 1
        for i, c in enumerate(primary):
            siblings = np.flatnonzero((parent == parent[c]) & (np.arange(num_classes) != c))
            if len(siblings) and rng.random() < 0.5:
                hot[i, rng.choice(siblings)] = 1
            if rng.random() < 0.2:
                hot[i, rng.integers(num_classes)] = 1
        signal = np.einsum("nc,cxyz->nxyz", hot / hot.sum(1, keepdims=True), prototypes)
        labels = hot
    else:
        signal = prototypes[primary]
        labels = primary.astype(np.int64)
    pixels = signal + noise * rng.standard_normal(signal.shape)
    images = np.clip(128 + 48 * pixels, 0, 255).astype(np.uint8).transpose(0, 2, 3, 1)   # (N, S, S, ch)

    train, query, database = per_class_split(primary, sizes[:2], seed)
    mean = images[train].mean(axis=(0, 1, 2)) / 255
    std = images[train].std(axis=(0, 1, 2)) / 255

    def split(idx):
        return InMemorySplit(images[idx], labels[idx], mean=mean, std=std, pad=max(1, image_size // 16), flip=False,
                             source_index=idx)

    names = [f"super{parent[c]}/class{c}" for c in range(num_classes)]
    return HashingDataset("synthetic", num_classes=num_classes, multi_label=multi_label, channels=channels,
                          image_size=image_size, train=split(train), query=split(query), database=split(database),
                          class_names=names)
