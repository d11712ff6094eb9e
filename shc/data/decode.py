"""Decode an image file and resize its shorter side, fast: the one pixel path of every image-file dataset.

JPEGs go through libjpeg-turbo by simplejpeg, which also decodes large images at 1/2, 1/4 or 1/8 scale in
the DCT domain while both sides stay >= the target (a 4000x3000 photo: ~26 ms instead of ~140; measured
faster than PIL's and torchvision's decoders, which are deprecated for decoding since 0.29). Other formats,
and JPEGs libjpeg-turbo rejects, are read by PIL. Every image is then resized by one function, torch's
antialiased bilinear resize on uint8 (torchvision's ``Resize``; within 0.01 grey levels of PIL's bilinear on
average), so the cached and uncached paths give the same pixels.

Sizes are bounded before anything is allocated: at most MAX_PIXELS decoded pixels and an aspect ratio of at most
MAX_ASPECT:1 (a 177-byte 100000x1 PNG would otherwise ask for 19.7 GB once its shorter side is resized to 256).
An image beyond them is refused like an unreadable one, naming the file (``--skip-unreadable`` leaves it out).
"""
from __future__ import annotations

import io

import numpy as np
import torch
from PIL import Image

from shc.data.base import ImageReadError

JPEG_SIGNATURE = b"\xff\xd8\xff"
MAX_PIXELS = 178_956_970  # decoded pixels of one image: PIL's own decompression-bomb limit (2 x MAX_IMAGE_PIXELS)
MAX_ASPECT = 32           # longer side / shorter side: the resize keeps the ratio, so this bounds its output


class ImageSizeError(ValueError):
    """An image's dimensions are beyond MAX_PIXELS or MAX_ASPECT (the message says which)."""


def check_dimensions(height: int, width: int) -> None:
    """ImageSizeError unless ``height`` x ``width`` pixels are within the bounds (before decoding or resizing)."""
    if height * width > MAX_PIXELS:
        raise ImageSizeError(f"{width}x{height} pixels, more than the {MAX_PIXELS:,} one image may have")
    if max(height, width) > MAX_ASPECT * min(height, width):
        raise ImageSizeError(f"{width}x{height} pixels, an aspect ratio beyond the {MAX_ASPECT}:1 allowed (its "
                             f"resize keeps the ratio: too large)")


def resized_shape(height: int, width: int, resize_size: int) -> tuple[int, int]:
    """Shape after resizing the shorter side to ``resize_size``, torchvision's ``Resize(int)`` rule
    (ImageSizeError for dimensions beyond the bounds)."""
    check_dimensions(height, width)
    short, long = (width, height) if width <= height else (height, width)
    new_long = int(resize_size * long / short)
    return (new_long, resize_size) if width <= height else (resize_size, new_long)


def crop_window(image: np.ndarray, top: int, left: int, size: int, flip: bool) -> np.ndarray:
    """The ``size`` x ``size`` window of ``(H, W, C)`` pixels at ``(top, left)``, mirrored left-right if ``flip``
    (a view: a flip only reads the window backwards)."""
    window = image[top:top + size, left:left + size]
    return window[:, ::-1] if flip else window


def image_size(path: str) -> tuple[int, int]:
    """``(height, width)`` from the file's header, without decoding the pixels."""
    try:
        with Image.open(path) as img:
            width, height = img.size
    except FileNotFoundError:
        raise ImageReadError(f"image file not found: {path}") from None
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as e:
        raise ImageReadError(f"cannot read image {path}: {read_error(e)}") from None
    if width < 1 or height < 1:
        raise ImageReadError(f"cannot read image {path}: empty ({width}x{height})")
    try:
        check_dimensions(height, width)
    except ImageSizeError as e:
        raise ImageReadError(f"cannot read image {path}: {e}") from None
    return height, width


def decode_resized(path: str, resize_size: int, shape: tuple[int, int] | None = None) -> np.ndarray:
    """The image as uint8 ``(H, W, 3)`` RGB with its shorter side resized to ``resize_size``.

    ``shape``: the output ``(H, W)`` when the caller planned it already (the cache's index). Any failure
    raises :class:`ImageReadError` naming the file.
    """
    try:
        with open(path, "rb") as f:
            data = f.read()
        pixels = _decode(data, resize_size)
    except FileNotFoundError:
        raise ImageReadError(f"image file not found: {path}") from None
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as e:
        raise ImageReadError(f"cannot read image {path}: {read_error(e)}") from None
    return resize_shorter(pixels, resize_size, shape)


def read_error(e: Exception) -> str:
    """Why an image could not be read, in one line (not PIL's 'cannot identify image file <_io.BytesIO ...>')."""
    if isinstance(e, Image.UnidentifiedImageError):
        return "not an image file, or a format PIL cannot read"
    if isinstance(e, ImageSizeError):
        return str(e)
    return f"{type(e).__name__}: {' '.join(str(e).split())}"


def resize_shorter(pixels: np.ndarray, resize_size: int, shape: tuple[int, int] | None = None) -> np.ndarray:
    """uint8 ``(H, W, 3)`` pixels with the shorter side resized to ``resize_size`` (or to ``shape``)."""
    height, width = pixels.shape[:2]
    shape = resized_shape(height, width, resize_size) if shape is None else tuple(shape)
    if shape == (height, width):
        return pixels
    if not pixels.flags.writeable:  # e.g. np.asarray of a PIL image: torch wants a buffer it may write
        pixels = pixels.copy()
    return resize_pixels(torch.from_numpy(np.ascontiguousarray(pixels)), shape).numpy()


def resize_pixels(pixels: torch.Tensor, shape: tuple[int, int]) -> torch.Tensor:
    """uint8 ``(H, W, 3)`` pixels (on any device) resized to ``shape``: antialiased bilinear, contiguous HWC."""
    # (1, 3, h, w) as a channels-last view of the HWC pixels: torch's vectorised uint8 resize path, no copies
    nchw = pixels.permute(2, 0, 1)[None]
    if pixels.is_cuda:  # CUDA's antialiased resize takes floats only
        resized = _resize_float(nchw, shape)
    else:
        resized = torch.nn.functional.interpolate(nchw, size=shape, mode="bilinear", antialias=True,
                                                  align_corners=False)
    return resized[0].permute(1, 2, 0).contiguous()


def _resize_float(nchw: torch.Tensor, shape: tuple[int, int]) -> torch.Tensor:
    resized = torch.nn.functional.interpolate(nchw.float(), size=shape, mode="bilinear", antialias=True,
                                              align_corners=False)
    return resized.round_().clamp_(0, 255).to(torch.uint8)


def decode_resized_batch(paths: list[str], resize_size: int, device="cuda") -> list[torch.Tensor]:
    """Each image as uint8 ``(H, W, 3)`` on ``device``, its shorter side resized to ``resize_size``.

    The JPEGs are decoded together by ``torchvision.io.decode_jpeg(list, device=device)`` (nvjpeg on CUDA,
    at full size: it has no DCT-domain downscaling) and resized there; other files, and JPEGs it rejects,
    go through :func:`decode_resized`. Any failure raises :class:`ImageReadError` naming the file.
    """
    import warnings

    from torchvision.io import ImageReadMode, decode_jpeg

    device = torch.device(device)
    datas = []
    for path in paths:
        try:
            with open(path, "rb") as f:
                datas.append(f.read())
        except FileNotFoundError:
            raise ImageReadError(f"image file not found: {path}") from None
        except OSError as e:
            raise ImageReadError(f"cannot read image {path}: {read_error(e)}") from None
    jpegs = [i for i, data in enumerate(datas) if data.startswith(JPEG_SIGNATURE)]
    for i in jpegs:  # nvjpeg decodes at full size: bound the size from the header first
        _check_jpeg_header(paths[i], datas[i])
    buffers = [torch.frombuffer(bytearray(datas[i]), dtype=torch.uint8) for i in jpegs]
    with warnings.catch_warnings():  # torchvision 0.29 deprecates its decoders (for TorchCodec)
        warnings.simplefilter("ignore", DeprecationWarning)
        try:
            decoded = decode_jpeg(buffers, mode=ImageReadMode.RGB, device=device) if buffers else []
        except RuntimeError:  # one bad file fails the whole batch: retry one by one, the rest go by CPU
            decoded = [_decode_one_jpeg(buffer, device) for buffer in buffers]
    images: list = [None] * len(paths)
    for i, chw in zip(jpegs, decoded):
        if chw is not None:
            hwc = chw.permute(1, 2, 0)
            shape = resized_shape(hwc.shape[0], hwc.shape[1], resize_size)
            images[i] = resize_pixels(hwc, shape) if shape != tuple(hwc.shape[:2]) else hwc.contiguous()
    for i, image in enumerate(images):
        if image is None:
            images[i] = torch.from_numpy(decode_resized(paths[i], resize_size)).to(device)
    return images


def _check_jpeg_header(path: str, data: bytes) -> None:
    import simplejpeg
    try:
        height, width = simplejpeg.decode_jpeg_header(data)[:2]
    except ValueError:
        return  # unreadable header: the decoders say why
    try:
        check_dimensions(height, width)
    except ImageSizeError as e:
        raise ImageReadError(f"cannot read image {path}: {e}") from None


def _decode_one_jpeg(buffer: torch.Tensor, device: torch.device) -> torch.Tensor | None:
    from torchvision.io import ImageReadMode, decode_jpeg
    try:
        return decode_jpeg(buffer, mode=ImageReadMode.RGB, device=device)
    except RuntimeError:
        return None


def _decode(data: bytes, resize_size: int) -> np.ndarray:
    """uint8 (h, w, 3): libjpeg-turbo for JPEGs (at 1/2, 1/4 or 1/8 scale where the image is that many times
    the target), else PIL."""
    if data.startswith(JPEG_SIGNATURE):
        import simplejpeg
        try:
            height, width = simplejpeg.decode_jpeg_header(data)[:2]
        except ValueError:
            height = width = None  # a header libjpeg-turbo rejects: PIL reads what it can
        if height is not None:
            target = resized_shape(height, width, resize_size)  # ImageSizeError before anything is decoded
            factor = 1
            while factor < 8 and min(height / target[0], width / target[1]) >= 2 * factor:
                factor *= 2
            try:  # exactly 1/factor: libjpeg also scales by M/8 (7/8, 5/8, ...), which blurs before the resize
                return simplejpeg.decode_jpeg(data, colorspace="RGB", min_factor=factor,
                                              min_height=-(-height // factor), min_width=-(-width // factor))
            except ValueError:
                pass  # CMYK, arithmetic-coded or slightly damaged files: PIL reads what it can
    with Image.open(io.BytesIO(data)) as img:
        check_dimensions(img.height, img.width)  # the header's size, before the pixels are decoded
        return rgb_pixels(img)


def rgb_pixels(img: Image.Image) -> np.ndarray:
    """A PIL image as writable uint8 ``(H, W, 3)`` RGB (forcing the full decode). 16-bit grey images (PNG,
    TIFF) are scaled to 8 bits: PIL's own convert() clips them at 255, which turns most pixels white."""
    if img.mode.startswith("I;16") or (img.mode == "I" and img.getextrema()[1] > 255):
        wide = np.asarray(img, dtype=np.int64)
        grey = ((np.clip(wide, 0, 65535) * 255 + 32767) // 65535).astype(np.uint8)
        return np.repeat(grey[:, :, None], 3, axis=2)
    return np.array(img.convert("RGB"))


def unreadable_images(paths: list[str], resize_size: int, workers: int | None = None,
                      progress: bool = True) -> dict[str, str]:
    """``{path: why}`` for each image :func:`decode_resized` cannot read: one decode pass in ``workers`` threads."""
    from concurrent.futures import ThreadPoolExecutor

    from shc.data.image_cache import default_workers
    from shc.progress import show_progress

    def why(path):
        try:
            decode_resized(path, resize_size)
        except ImageReadError as e:
            return str(e)
        return None
    with ThreadPoolExecutor(workers or default_workers()) as pool:
        reasons = list(show_progress(pool.map(why, paths), total=len(paths), desc="checking images", unit="img",
                                     enabled=progress))
    return {p: r for p, r in zip(paths, reasons) if r is not None}
