"""Generated image-file datasets in the real on-disk formats, for tests, benchmarks and smoke runs.

``make_coco_like(root, ...)`` writes JPEGs shaped like COCO's (640x480, quality 90 by default) and
DeepHash-pytorch's multi-hot list files (``train.txt``, ``test.txt``, ``database.txt``, 80 columns), so
``load_dataset("coco", root)`` and ``shc-train --dataset coco --data-root root`` read them as they would read
MSCOCO. The pictures are smooth colour fields with fine noise, so they compress and decode like photos
rather than like white noise; each class tints its images, so a network has something to learn.
"""
from __future__ import annotations

import os

import numpy as np
from PIL import Image


def photo_like(rng: np.random.Generator, height: int, width: int, tint: np.ndarray | None = None) -> np.ndarray:
    """A uint8 ``(height, width, 3)`` picture: a bicubic-upsampled coarse colour grid plus fine noise."""
    coarse = rng.integers(0, 256, (max(2, height // 40), max(2, width // 40), 3)).astype(np.float32)
    if tint is not None:
        coarse = 0.6 * coarse + 0.4 * tint
    field = np.asarray(Image.fromarray(coarse.astype(np.uint8)).resize((width, height), Image.Resampling.BICUBIC))
    noise = rng.normal(0, 6, (height, width, 3))
    return np.clip(field + noise, 0, 255).astype(np.uint8)


def make_coco_like(root: str, counts: tuple[int, int, int] = (40, 10, 60), *, num_labels: int = 80,
                   size: tuple[int, int] = (640, 480), quality: int = 90, seed: int = 0) -> str:
    """Write ``counts`` = (train, query, database) images and the three list files under ``root``.

    As in DeepHash-pytorch's COCO lists, the training images are also database images (the first
    ``counts[0]`` of them); every image has one to three labels. Returns ``root``.
    """
    n_train, n_query, n_db = counts
    if n_train > n_db:
        raise ValueError(f"the training images are drawn from the database: need train <= database, got {counts}")
    rng = np.random.default_rng(seed)
    tints = rng.integers(0, 256, (num_labels, 3)).astype(np.float32)
    width, height = size

    def write(rel, labels):
        path = os.path.join(root, rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        Image.fromarray(photo_like(rng, height, width, tints[labels].mean(0))).save(path, quality=quality)
        hot = np.zeros(num_labels, np.int64)
        hot[labels] = 1
        return rel + " " + " ".join(map(str, hot))

    def labels():
        return rng.choice(num_labels, size=int(rng.integers(1, 4)), replace=False)

    database = [write(f"train2014/COCO_train2014_{i:012d}.jpg", labels()) for i in range(n_db)]
    query = [write(f"val2014/COCO_val2014_{i:012d}.jpg", labels()) for i in range(n_query)]
    for name, lines in (("database.txt", database), ("test.txt", query), ("train.txt", database[:n_train])):
        with open(os.path.join(root, name), "w") as f:
            f.write("\n".join(lines) + "\n")
    return root
