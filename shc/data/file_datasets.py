"""Image-file datasets: Stanford Cars-A/-B, NABirds-A/-B, MSCOCO and custom ones.

All share one layout, a directory holding ``train.txt`` (training images), ``test.txt`` (queries)
and optionally ``database.txt`` (default: the training list, the -A "official split" protocol).
Lines are ``relative/path.jpg<TAB>label`` or ``relative/path.jpg 0 1 0 ...`` (multi-hot); paths are
relative to the directory (or ``image_root``). ``custom`` also takes an ImageFolder tree
(``train/<class>/*``, ``test/<class>/*``, optional ``database/<class>/*``).
"""
from __future__ import annotations

import os
import sys

import numpy as np


from shc.data.base import DataRootError, HashingDataset, ImageReadError
from shc.data.decode import unreadable_images
from shc.data.files import (FileSplit, ImageList, check_files_exist, encode_labels, read_list_file,
                            scan_image_folder)
from shc.data.image_cache import open_or_build
from shc.data.registry import LOADER_OPTIONS, data_root_candidates, missing_root_error, register_dataset

SPLIT_FILES = {"train": "train.txt", "query": "test.txt", "database": "database.txt"}


def load_image_dataset(name: str, data_root: str | None, *, multi_label: bool | None = None,
                       num_labels: int | None = None, allow_image_folder: bool = False,
                       image_root: str | None = None, resize_size: int = 256, crop_size: int = 224,
                       verify_files: bool = True, image_cache: str | None = None, workers: int | None = None,
                       skip_unreadable: bool = False, progress: bool = True,
                       how_to_get: str = "") -> HashingDataset:
    """Find the data root, read the lists (or folders), check them, decode the images into the cache (unless
    ``image_cache="off"``), and build the three file splits.

    multi_label / num_labels: what a named dataset must be (None: whatever the files say).
    """
    _check_sizes(name, resize_size, crop_size)  # before any file is read or cached
    tried = data_root_candidates(name, data_root)
    root = next((r for r in tried if _has_lists(r) or (allow_image_folder and _has_folders(r))), None)
    if root is None:
        expected = "train.txt and test.txt (optional database.txt) with lines 'path<TAB>label' or 'path 0 1 0 ...'"
        if allow_image_folder:
            expected += ", or an ImageFolder tree train/<class>/*, test/<class>/* (optional database/<class>/*)"
        raise missing_root_error(name, tried, expected, how_to_get)

    if _has_lists(root):
        sources = {split: os.path.join(root, f) for split, f in SPLIT_FILES.items()
                   if os.path.isfile(os.path.join(root, f))}
        lists = {split: read_list_file(path, image_root or root) for split, path in sources.items()}
    else:
        sources = {split: os.path.join(root, folder) for split, folder in
                   (("train", "train"), ("query", "test"), ("database", "database"))
                   if os.path.isdir(os.path.join(root, folder))}
        lists = {split: scan_image_folder(path) for split, path in sources.items()}
    if "database" not in lists:
        lists["database"], sources["database"] = lists["train"], sources["train"]

    order = ("train", "query", "database")
    if verify_files and not skip_unreadable:
        for s in order:
            check_files_exist(lists[s].paths, sources[s])
    images = list(dict.fromkeys(p for s in order for p in lists[s].paths))  # train and database may share
    warn_if_upscaled(name, lists["train"].paths, resize_size)
    store = None
    if image_cache != "off":
        store = open_or_build(images, resize_size, image_cache, workers=workers, progress=progress)
        unreadable = {store.paths[r]: why for r, why in store.errors.items()}
    else:
        unreadable = unreadable_images(images, resize_size, workers, progress) if skip_unreadable else {}
    if unreadable:
        lists = _leave_out(lists, unreadable, len(images), skip_unreadable)

    labels, num_classes, class_names = encode_labels([lists[s] for s in order])
    is_multi = lists["train"].multi_label
    if multi_label is not None and is_multi != multi_label:
        kind = "multi-hot 'path 0 1 0 ...'" if multi_label else "single-label 'path<TAB>label'"
        raise ValueError(f"{name}: expected {kind} list files in {root}")
    if num_labels is not None and is_multi and num_classes != num_labels:
        raise ValueError(f"{name}: list files in {root} have {num_classes} labels per line, expected {num_labels}")

    def split(s, ids):
        return FileSplit(lists[s].paths, ids, resize_size=resize_size, crop_size=crop_size, store=store,
                         workers=workers)

    train, query, database = (split(s, ids) for s, ids in zip(order, labels))
    return HashingDataset(name, num_classes=num_classes, multi_label=is_multi, channels=3, image_size=crop_size,
                          train=train, query=query, database=database, class_names=class_names,
                          skipped=tuple(unreadable))


UPSCALE_SAMPLE = 200  # training images whose headers are read to see how much they are enlarged


def warn_if_upscaled(name: str, paths: list[str], resize_size: int) -> None:
    """A note on stderr when most images (a sample of them) are enlarged more than 2x by the resize: that costs
    time and cache space (a 28 px image resized to 256: ~80x the pixels) and adds no detail."""
    from shc.data.decode import image_size

    sample = paths[::max(1, len(paths) // UPSCALE_SAMPLE)][:UPSCALE_SAMPLE]
    shorter = []
    for path in sample:
        try:
            shorter.append(min(image_size(path)))
        except ImageReadError:
            continue  # reported with the others by the cache build or skip_unreadable
    small = [s for s in shorter if 2 * s < resize_size]
    if 2 * len(small) > len(shorter):
        typical = int(np.median(shorter))
        print(f"shc: note: {name}: {len(small)} of {len(shorter)} sampled training images are upscaled more than 2x "
              f"(shorter side {typical} px typically, resized to {resize_size}): this costs time and cache space "
              f"and adds no detail; consider --resize {typical} --crop {max(1, round(typical * 224 / 256))} "
              f"(resize_size/crop_size)", file=sys.stderr)


def _check_sizes(name: str, resize_size, crop_size) -> None:
    """The transform's sizes, as they come from --data-option: a bad one would otherwise be found by the cache
    build (a 0-px store, or a decode error with a half-built store left behind)."""
    for key, value in (("resize_size", resize_size), ("crop_size", crop_size)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name}: {key} must be a positive integer (pixels), got {value!r}")
    if crop_size > resize_size:
        raise ValueError(f"{name}: crop_size {crop_size} must be <= resize_size {resize_size} (the crop is taken "
                         f"from the image resized to resize_size)")


def _leave_out(lists: dict[str, ImageList], unreadable: dict[str, str], total: int, skip: bool):
    """The lists without the unreadable images (``skip``), else the error naming them."""
    names = list(unreadable.values())
    shown = "; ".join(names[:3]) + (f"; ... and {len(names) - 3} more" if len(names) > 3 else "")
    if not skip:
        raise ImageReadError(f"{len(names)} of {total} images cannot be read: {shown}. Replace or remove them, "
                             f"or leave them out with --skip-unreadable (skip_unreadable=True in Python)")
    print(f"shc: skipping {len(names)} of {total} images that cannot be read: {shown}", file=sys.stderr)
    kept = {}
    for s, lst in lists.items():
        keep = [i for i, p in enumerate(lst.paths) if p not in unreadable]
        labels = lst.labels[keep] if lst.multi_label else [lst.labels[i] for i in keep]
        if not keep:
            raise ImageReadError(f"no readable images left in the {s} list after skipping {len(names)}")
        kept[s] = ImageList([lst.paths[i] for i in keep], labels)
    return kept


def _has_lists(root: str) -> bool:
    return all(os.path.isfile(os.path.join(root, SPLIT_FILES[s])) for s in ("train", "query"))


def _has_folders(root: str) -> bool:
    return all(os.path.isdir(os.path.join(root, d)) for d in ("train", "test"))


def _lists_how_to(what: str) -> str:
    return (f"Put the {what} images and the MDS-style list files (train.txt = training and database, "
            f"test.txt = queries, optional database.txt) in one directory, image paths relative to it.")


FILE_OPTIONS = ("image_root", "resize_size", "crop_size", "verify_files", *LOADER_OPTIONS)


def _options(name: str, options: dict) -> dict:
    unknown = sorted(set(options) - set(FILE_OPTIONS))
    if unknown:
        raise TypeError(f"{name}: unknown option(s) {', '.join(unknown)}; accepted: {', '.join(FILE_OPTIONS)}")
    return options


def _register(name: str, aliases: tuple[str, ...], doc: str, **fixed):
    """Register a list-file dataset: ``fixed`` are its format constraints, callers pass FILE_OPTIONS."""
    @register_dataset(name, *aliases, reads_files=True)
    def load(data_root=None, seed=0, **options):  # the protocol is the lists': seed is not used
        return load_image_dataset(name, data_root, **fixed, **_options(name, options))
    load.__name__, load.__doc__ = name.replace("-", "_"), doc
    return load


stanford_cars_a = _register(
    "stanford-cars-a", ("stanford_cars-official-seg", "stanford-cars"),
    "Stanford Cars, official split (train 8,144 = database, test 8,041 = queries), 196 classes.",
    multi_label=False, how_to_get=_lists_how_to("Stanford Cars"))
stanford_cars_b = _register(
    "stanford-cars-b", ("stanford_cars-new-seg",),
    "Stanford Cars-B: the list files given (the split is not published).",
    multi_label=False, how_to_get=_lists_how_to("Stanford Cars (-B split)"))
nabirds_a = _register(
    "nabirds-a", ("NAbirds-official-seg", "nabirds"),
    "NABirds, official split (database = train), 555 classes.",
    multi_label=False, how_to_get=_lists_how_to("NABirds"))
nabirds_b = _register(
    "nabirds-b", ("NAbirds-new-seg",),
    "NABirds-B: the list files given (the split is not published).",
    multi_label=False, how_to_get=_lists_how_to("NABirds (-B split)"))
coco = _register(
    "coco", ("mscoco", "coco2014"),
    "MSCOCO with DeepHash-pytorch's multi-hot lists (80 labels): train 10,000 / query 5,000 / database 117,218.",
    multi_label=True, num_labels=80,
    how_to_get="Use DeepHash-pytorch's data/coco/{train,test,database}.txt (lines 'train2014/COCO_train2014_....jpg' "
               "+ 80 ints 0/1) with the COCO 2014 images under the same directory (or pass image_root).")


@register_dataset("custom", reads_files=True)
def custom(data_root=None, seed=0, **options):
    """Your own data: list files (either format) or an ImageFolder tree; data_root is required."""
    if data_root is None:
        raise DataRootError("custom: pass data_root / --data-root: a directory with train.txt and test.txt "
                            "(optional database.txt), or train/ and test/ ImageFolder trees")
    return load_image_dataset("custom", data_root, allow_image_folder=True,
                              how_to_get="See docs/data.md for the formats.", **_options("custom", options))
