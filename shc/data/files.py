"""Datasets of image files: list files / ImageFolder trees, and the batch pipeline with the paper's transforms.

Each image is decoded and its shorter side resized to 256 once (``shc.data.decode``), into the memory-mapped
image cache (``shc.data.image_cache``) by default, or by DataLoader workers on every pass with the cache off.
A batch is then the 224 crop windows of its images (random and randomly mirrored for training, centred for
evaluation), gathered in one call into one uint8 array where the pixels live (the host's page cache; the
records have different sizes, so shipping whole images would move 1.7x the bytes and still need a per-image
crop), moved to the device as uint8 (4x fewer bytes than float) and normalised there in one fused pass.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image

from shc.data.base import DataRootError, ImageReadError, Split, digest_of
from shc.data.decode import check_dimensions, crop_window, decode_resized, read_error, rgb_pixels
from shc.data.image_cache import ImageStore, default_workers, store_key
from shc.data.memory import normalize
from shc.data.sampling import batch_slices, crop_flip_params, sample_bits

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".ppm", ".pgm", ".tif", ".tiff", ".webp")


# --------------------------------------------------------------------------- list files and folders

@dataclass
class ImageList:
    """Image paths with raw labels: class strings (single-label) or a uint8 (N, C) multi-hot array."""

    paths: list[str]
    labels: list[str] | np.ndarray

    @property
    def multi_label(self) -> bool:
        return isinstance(self.labels, np.ndarray)


def read_list_file(list_path: str, image_root: str) -> ImageList:
    """Read ``path<TAB>label`` / ``path label`` (single-label) or ``path 0 1 0 ...`` (multi-hot) lines.

    Relative paths are taken relative to ``image_root``. A TAB ends the path, which may then contain spaces.
    Every line of a file must have the same format (and the same number of multi-hot columns).
    """
    try:
        with open(list_path, encoding="utf-8") as f:
            lines = f.read().splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise ValueError(f"cannot read list file {list_path}: {e}") from None
    paths, labels, multi_hot = [], [], None
    for line_no, line in enumerate(lines, 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if "\t" in line:
            path, _, rest = line.partition("\t")
            fields = rest.split()
        else:
            path, *fields = line.split()
        this_multi = len(fields) > 1
        if not fields or (multi_hot is not None and this_multi != multi_hot):
            raise ValueError(f"{list_path}:{line_no}: expected 'path<TAB>label' or 'path 0 1 0 ...' "
                             f"consistently, got {line!r}")
        if "\0" in path:  # the OS would refuse the name later, in a message naming no file
            raise ValueError(f"{list_path}:{line_no}: the path holds a NUL byte: {path!r}")
        if this_multi and (len(fields) != len(labels[0]) if labels else False):
            raise ValueError(f"{list_path}:{line_no}: {len(fields)} multi-hot labels, the first line has "
                             f"{len(labels[0])}")
        if this_multi and not all(x in ("0", "1") for x in fields):
            raise ValueError(f"{list_path}:{line_no}: multi-hot labels must be 0 or 1, got {' '.join(fields)!r:.80}")
        multi_hot = this_multi
        paths.append(os.path.join(image_root, path.strip()))
        labels.append(fields if this_multi else fields[0])
    if not paths:
        raise ValueError(f"{list_path}: no entries")
    if not multi_hot:
        return ImageList(paths, labels)
    return ImageList(paths, np.array(labels, dtype=np.uint8))


def scan_image_folder(folder: str) -> ImageList:
    """An ImageFolder tree ``folder/<class>/<image>``: class = sub-directory name."""
    paths, labels = [], []
    for class_name in sorted(d.name for d in os.scandir(folder) if d.is_dir()):
        class_dir = os.path.join(folder, class_name)
        for dirpath, _, filenames in sorted(os.walk(class_dir, followlinks=True)):
            for filename in sorted(filenames):
                if filename.lower().endswith(IMAGE_EXTENSIONS):
                    paths.append(os.path.join(dirpath, filename))
                    labels.append(class_name)
    if not paths:
        raise DataRootError(f"{folder}: no images found (expected {folder}/<class>/<image>"
                            f"{{{','.join(IMAGE_EXTENSIONS)}}})")
    return ImageList(paths, labels)


def encode_labels(lists: list[ImageList]) -> tuple[list[np.ndarray], int, list[str] | None]:
    """Class ids shared by several lists: ``(labels per list, num_classes, class_names)``.

    Single-label: the distinct label strings of all lists, sorted (numerically when all are
    integers, so ``0..C-1`` stays as is and ``1..C`` becomes ``0..C-1``), numbered from 0.
    Multi-hot: kept as they are; all lists must have the same number of columns.
    """
    if any(lst.multi_label for lst in lists):
        if not all(lst.multi_label for lst in lists):
            raise ValueError("mixed list formats: some files are multi-hot, some single-label")
        widths = {lst.labels.shape[1] for lst in lists}
        if len(widths) != 1:
            raise ValueError(f"multi-hot list files have different numbers of labels: {sorted(widths)}")
        return [lst.labels for lst in lists], widths.pop(), None
    names = sorted({name for lst in lists for name in lst.labels})
    if all(name.lstrip("-").isdigit() for name in names):
        names.sort(key=int)
    ids = {name: i for i, name in enumerate(names)}
    encoded = [np.array([ids[name] for name in lst.labels], dtype=np.int64) for lst in lists]
    return encoded, len(names), names


def check_files_exist(paths: list[str], source: str) -> None:
    """Fail before training starts, not hours in, when listed images are missing."""
    missing = [p for p in paths if not os.path.isfile(p)]
    if missing:
        shown = "\n  ".join(missing[:5])
        more = f"\n  ... and {len(missing) - 5} more" if len(missing) > 5 else ""
        raise DataRootError(f"{len(missing)} of {len(paths)} images listed in {source} are missing:\n  "
                            f"{shown}{more}")


# --------------------------------------------------------------------------- images

def load_rgb(path: str) -> Image.Image:
    """Decode an image as RGB with PIL; any failure raises :class:`ImageReadError` naming the file."""
    try:
        with Image.open(path) as img:
            check_dimensions(img.height, img.width)
            return Image.fromarray(rgb_pixels(img))  # forces the full decode inside the try
    except FileNotFoundError:
        raise ImageReadError(f"image file not found: {path}") from None
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as e:
        raise ImageReadError(f"cannot read image {path}: {read_error(e)}") from None


def crop_windows(heights, widths, crop_size: int, bits: np.ndarray | None):
    """Top-left corners and flips of the ``crop_size`` windows of images ``heights x widths``.

    With ``bits`` (training, :func:`sample_bits`) a random window and horizontal flip each; without,
    torchvision's ``CenterCrop`` (rounded half to even, as Python's ``round``) and no flip.
    """
    heights, widths = np.asarray(heights, np.int64), np.asarray(widths, np.int64)
    if bits is None:
        return (np.round((heights - crop_size) / 2.0).astype(np.int64),
                np.round((widths - crop_size) / 2.0).astype(np.int64), np.zeros(len(heights), bool))
    return crop_flip_params(bits, heights - crop_size + 1, widths - crop_size + 1)


def centre_crop(pixels: np.ndarray, crop_size: int) -> np.ndarray:
    """The evaluation window of uint8 ``(H, W, C)`` pixels (what :class:`FileSplit` feeds the model)."""
    tops, lefts, _ = crop_windows([pixels.shape[0]], [pixels.shape[1]], crop_size, None)
    return crop_window(pixels, int(tops[0]), int(lefts[0]), crop_size, False)


class _Unreadable:
    """What a worker hands back instead of raising, so the main process reports one plain line."""

    def __init__(self, message: str):
        self.message = message


def _collate_crops(items):
    failed = next((item for item in items if isinstance(item, _Unreadable)), None)
    return failed if failed is not None else torch.from_numpy(np.stack(items))


class _DecodedCrops(torch.utils.data.Dataset):
    """``(path index, bits or None)`` -> the image's (mirrored) crop window, uint8 H x W x 3, decoded now."""

    def __init__(self, paths, resize_size, crop_size):
        self.paths, self.resize_size, self.crop_size = paths, resize_size, crop_size

    def __len__(self):
        return len(self.paths)

    def __getitem__(self, item):
        i, bits = item
        try:
            image = decode_resized(self.paths[i], self.resize_size)
        except ImageReadError as e:
            return _Unreadable(str(e))
        tops, lefts, flips = crop_windows([image.shape[0]], [image.shape[1]], self.crop_size,
                                          None if bits is None else np.array([bits], np.uint64))
        return np.ascontiguousarray(crop_window(image, int(tops[0]), int(lefts[0]), self.crop_size, flips[0]))


class _PassItems(torch.utils.data.Sampler):
    """The items of the current pass; reassigned before each pass so persistent workers serve every epoch."""

    def __init__(self):
        self.items: list = []

    def __iter__(self):
        return iter(self.items)

    def __len__(self):
        return len(self.items)


class FileSplit(Split):
    """A split of image files with the paper's transforms (resize shorter side, crop, flip, normalise).

    store: the decoded-image cache holding these paths (``shc.data.image_cache.open_or_build``); None decodes
    every image on every pass in ``workers`` DataLoader processes. workers: default for :meth:`batches`
    (None: the cores available) — cache gathers run in that many threads.
    """

    def __init__(self, paths: list[str], labels: np.ndarray, *, resize_size: int = 256, crop_size: int = 224,
                 mean=IMAGENET_MEAN, std=IMAGENET_STD, store: ImageStore | None = None, workers: int | None = None):
        if len(paths) != len(labels):
            raise ValueError(f"{len(paths)} paths but {len(labels)} labels")
        if not 0 < crop_size <= resize_size:
            raise ValueError(f"need 0 < crop_size <= resize_size, got crop {crop_size}, resize {resize_size}")
        if store is not None and store.resize_size != resize_size:
            raise ValueError(f"the image store holds {store.resize_size}-px images, the split wants {resize_size}")
        if workers is not None and workers < 0:
            raise ValueError(f"workers must be >= 0, got {workers}")
        self.paths = list(paths)
        self.labels = np.asarray(labels)
        self.resize_size, self.crop_size = int(resize_size), int(crop_size)
        self.store, self.workers = store, default_workers() if workers is None else int(workers)
        self._records = store.records(self.paths) if store is not None else None
        mean, std = np.asarray(mean, np.float64), np.asarray(std, np.float64)
        self._scale = torch.tensor(1.0 / (255.0 * std), dtype=torch.float32).view(1, 3, 1, 1)
        self._shift = torch.tensor(-mean / std, dtype=torch.float32).view(1, 3, 1, 1)
        self._loaders: dict = {}  # (batch_size, workers, pin, drop_last) -> a persistent DataLoader

    def content_id(self) -> str:
        """The files' identity, not their bytes (hashing every image would cost a pass over the data): the image
        store's key, which holds every image's path, size and mtime, or without a store those of this split's
        images; the list itself, the labels and the transform."""
        files = self.store.path.name if self.store is not None else store_key(self.paths, self.resize_size)
        return digest_of(files, "\0".join(map(str, self.paths)), self.labels, self._scale.numpy(),
                         self._shift.numpy(), f"resize {self.resize_size} crop {self.crop_size}")

    def _batches_for(self, order, batch_size, *, train, device, seed, epoch, workers, drop_last):
        workers = self.workers if workers is None else workers
        bits = sample_bits(seed, epoch, order) if train else None
        pin = device.type == "cuda"
        scale, shift = self._scale.to(device), self._shift.to(device)

        def to_device(images):  # uint8 crosses to the device; the float batch is made there
            return normalize(images.to(device, non_blocking=True), scale, shift)
        if self.store is not None:
            # on the CPU the gathering threads normalise too, so batches are ready ahead as well
            batches = self._cached_crops(order, bits, batch_size, workers, drop_last, pin,
                                         then=to_device if device.type == "cpu" else None)
        else:
            batches = self._decoded_crops(order, bits, batch_size, workers, drop_last, pin)
        labels = self._labels_tensor(self.labels)
        order_cpu = torch.from_numpy(order)
        start = 0
        for x in batches:
            idx = order_cpu[start:start + len(x)]
            start += len(x)
            yield (x if x.is_floating_point() else to_device(x)), labels[idx].to(device, non_blocking=True), idx

    def _cached_crops(self, order, bits, batch_size, workers, drop_last, pin, then=None):
        """Crop windows gathered from the memory-mapped cache (then ``then(batch)``), ``workers`` batches ahead
        in threads."""
        records = self._records[order]
        tops, lefts, flips = crop_windows(*self.store.shapes(records), self.crop_size, bits)
        size = self.crop_size

        def gather(sl):
            out = torch.empty((sl.stop - sl.start, size, size, 3), dtype=torch.uint8, pin_memory=pin)
            self.store.crops(records[sl], tops[sl], lefts[sl], flips[sl], size, out=out.numpy())
            return out if then is None else then(out)
        return _ahead(gather, batch_slices(len(order), batch_size, drop_last), workers)

    def _decoded_crops(self, order, bits, batch_size, workers, drop_last, pin):
        """Crop windows of images decoded by DataLoader workers (kept alive between passes)."""
        key = (batch_size, workers, pin, drop_last)
        if key not in self._loaders:
            self._loaders[key] = torch.utils.data.DataLoader(
                _DecodedCrops(self.paths, self.resize_size, self.crop_size), batch_size=batch_size,
                sampler=_PassItems(), drop_last=drop_last, num_workers=workers, collate_fn=_collate_crops,
                pin_memory=pin, persistent_workers=workers > 0, prefetch_factor=4 if workers else None)
        loader = self._loaders[key]
        loader.sampler.items = list(zip(order.tolist(), [None] * len(order) if bits is None else bits.tolist()))
        for batch in loader:
            if isinstance(batch, _Unreadable):
                raise ImageReadError(batch.message)
            yield batch


def _ahead(fn, items, depth: int):
    """``fn(item)`` for each item in order, up to ``depth`` computed ahead in threads (0: inline)."""
    if depth < 1:
        yield from map(fn, items)
        return
    from collections import deque
    from concurrent.futures import ThreadPoolExecutor
    with ThreadPoolExecutor(depth) as pool:
        pending: deque = deque()
        for item in items:
            pending.append(pool.submit(fn, item))
            if len(pending) > depth:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()
