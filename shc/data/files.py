"""Datasets of image files: list files / ImageFolder trees, and a DataLoader pipeline with the paper's transforms.

Workers decode, resize (shorter side to 256), crop 224 (random + horizontal flip for training,
centre for evaluation) and hand back uint8 tensors; the batch is pinned, copied to the device as
uint8 (4x fewer bytes than float) and normalised there with ImageNet mean/std.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image

from shc.data.base import DataRootError, ImageReadError, Split
from shc.data.sampling import crop_flip_params, sample_bits

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
        multi_hot = this_multi
        paths.append(os.path.join(image_root, path.strip()))
        labels.append(fields if this_multi else fields[0])
    if not paths:
        raise ValueError(f"{list_path}: no entries")
    if not multi_hot:
        return ImageList(paths, labels)
    widths = {len(row) for row in labels}
    if len(widths) != 1:
        raise ValueError(f"{list_path}: multi-hot rows have different lengths {sorted(widths)}")
    try:
        hot = np.array(labels, dtype=np.int64)
    except ValueError as e:
        raise ValueError(f"{list_path}: multi-hot labels must be integers 0/1 ({e})") from None
    if not np.isin(hot, (0, 1)).all():
        raise ValueError(f"{list_path}: multi-hot labels must be 0 or 1")
    return ImageList(paths, hot.astype(np.uint8))


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
    """Decode an image as RGB; any failure raises :class:`ImageReadError` naming the file."""
    try:
        with Image.open(path) as img:
            return img.convert("RGB")  # convert() forces the full decode inside the try
    except FileNotFoundError:
        raise ImageReadError(f"image file not found: {path}") from None
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as e:
        raise ImageReadError(f"cannot read image {path}: {type(e).__name__}: {e}") from None


def transform_image(img: Image.Image, *, resize_size: int, crop_size: int, bits: int | None) -> torch.Tensor:
    """The paper's transform on one image, as uint8 (3, crop, crop).

    Resize the shorter side to ``resize_size`` (bilinear, torchvision's ``Resize(int)`` rule); then
    with ``bits`` (training) a random ``crop_size`` crop and horizontal flip drawn from ``bits``,
    without it torchvision's ``CenterCrop``.
    """
    w, h = img.size
    short, long = (w, h) if w <= h else (h, w)
    new_long = int(resize_size * long / short)
    size = (resize_size, new_long) if w <= h else (new_long, resize_size)
    if size != (w, h):
        img = img.resize(size, Image.Resampling.BILINEAR)
    w, h = size
    if bits is None:
        top, left = int(round((h - crop_size) / 2.0)), int(round((w - crop_size) / 2.0))
        flip = False
    else:
        dy, dx, flips = crop_flip_params(np.array([bits], np.uint64), h - crop_size + 1, w - crop_size + 1)
        top, left, flip = int(dy[0]), int(dx[0]), bool(flips[0])
    img = img.crop((left, top, left + crop_size, top + crop_size))
    if flip:
        img = img.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    return torch.from_numpy(np.asarray(img).copy()).permute(2, 0, 1)


class _ImageFiles(torch.utils.data.Dataset):
    """Position k of a rank's order -> its transformed uint8 image (runs inside DataLoader workers)."""

    def __init__(self, paths, order, bits, resize_size, crop_size):
        self.paths, self.order, self.bits = paths, order, bits
        self.resize_size, self.crop_size = resize_size, crop_size

    def __len__(self):
        return len(self.order)

    def __getitem__(self, k):
        bits = None if self.bits is None else int(self.bits[k])
        return transform_image(load_rgb(self.paths[self.order[k]]), resize_size=self.resize_size,
                               crop_size=self.crop_size, bits=bits)


class FileSplit(Split):
    """A split of image files read by DataLoader workers with the paper's transforms."""

    def __init__(self, paths: list[str], labels: np.ndarray, *, resize_size: int = 256, crop_size: int = 224,
                 mean=IMAGENET_MEAN, std=IMAGENET_STD):
        if len(paths) != len(labels):
            raise ValueError(f"{len(paths)} paths but {len(labels)} labels")
        if not 0 < crop_size <= resize_size:
            raise ValueError(f"need 0 < crop_size <= resize_size, got crop {crop_size}, resize {resize_size}")
        self.paths = list(paths)
        self.labels = np.asarray(labels)
        self.resize_size, self.crop_size = int(resize_size), int(crop_size)
        mean, std = np.asarray(mean, np.float64), np.asarray(std, np.float64)
        self._scale = torch.tensor(1.0 / (255.0 * std), dtype=torch.float32).view(1, 3, 1, 1)
        self._shift = torch.tensor(-mean / std, dtype=torch.float32).view(1, 3, 1, 1)

    def _batches_for(self, order, batch_size, *, train, device, seed, epoch, workers, drop_last):
        bits = sample_bits(seed, epoch, order) if train else None
        loader = torch.utils.data.DataLoader(
            _ImageFiles(self.paths, order, bits, self.resize_size, self.crop_size),
            batch_size=batch_size, shuffle=False, drop_last=drop_last, num_workers=workers,
            pin_memory=device.type == "cuda")
        labels = self._labels_tensor(self.labels)
        scale, shift = self._scale.to(device), self._shift.to(device)
        order_cpu = torch.from_numpy(order)
        start = 0
        for images in loader:
            idx = order_cpu[start:start + len(images)]
            start += len(images)
            x = images.to(device, non_blocking=True).float().mul_(scale).add_(shift)
            yield x, labels[idx].to(device, non_blocking=True), idx
