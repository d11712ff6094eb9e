"""Decoding details: batch decoding (torchvision's decode_jpeg on a list: nvjpeg on CUDA) against the one-image
path, 16-bit images, one-line read errors."""
import os

import numpy as np
import pytest
import torch
from PIL import Image

from shc.data import ImageReadError
from shc.data.decode import _resize_float, decode_resized, decode_resized_batch, resize_pixels
from shc.data.files import load_rgb
from shc.data.testing import photo_like

IMAGES = {  # name: (height, width, mode, format)
    "coco.jpg": (480, 640, "RGB", "JPEG"), "portrait.jpg": (500, 333, "RGB", "JPEG"),
    "grey.jpg": (300, 400, "L", "JPEG"), "drawing.png": (260, 300, "RGB", "PNG"),
    "small.jpg": (256, 256, "RGB", "JPEG"),  # no resize
}


@pytest.fixture
def images(tmp_path):
    rng = np.random.default_rng(5)
    paths = []
    for name, (h, w, mode, fmt) in IMAGES.items():
        path = str(tmp_path / name)
        Image.fromarray(photo_like(rng, h, w)).convert(mode).save(path, format=fmt, quality=90)
        paths.append(path)
    return paths


def test_batch_on_the_cpu_gives_the_one_image_pixels(images):
    batch = decode_resized_batch(images, 256, device="cpu")
    for path, pixels in zip(images, batch):
        assert pixels.dtype == torch.uint8 and pixels.is_contiguous()
        np.testing.assert_array_equal(pixels.numpy(), decode_resized(path, 256), err_msg=path)


@pytest.mark.parametrize("height, width, mode", [(1536, 2048, "RGB"), (300, 400, "CMYK")])
def test_large_and_cmyk_jpegs_stay_close(tmp_path, height, width, mode):
    # the one-image path decodes 2048x1536 at 1/4 scale in the DCT domain, the batch path at full size;
    # CMYK goes through PIL there and through torchvision's own conversion here
    path = str(tmp_path / "image.jpg")
    Image.fromarray(photo_like(np.random.default_rng(1), height, width)).convert(mode).save(path, quality=90)
    batch, = decode_resized_batch([path], 256, device="cpu")
    single = decode_resized(path, 256)
    assert batch.shape == single.shape == (256, round(256 * width / height), 3)
    assert np.abs(batch.numpy().astype(float) - single).mean() <= 1.5


def test_a_bad_file_is_named_and_spoils_nothing_else(images, tmp_path):
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0" + os.urandom(200))  # a JPEG signature, then noise
    with pytest.raises(ImageReadError, match="bad.jpg"):
        decode_resized_batch([*images, str(bad)], 256, device="cpu")
    with pytest.raises(ImageReadError, match="image file not found: .*gone.jpg"):
        decode_resized_batch([*images, str(tmp_path / "gone.jpg")], 256, device="cpu")


def test_float_resize_is_within_one_grey_level_of_the_uint8_resize():
    pixels = torch.from_numpy(photo_like(np.random.default_rng(2), 480, 640))
    for shape in ((256, 341), (100, 133), (700, 933)):
        uint8 = resize_pixels(pixels, shape)
        floats = _resize_float(pixels.permute(2, 0, 1)[None], shape)[0].permute(1, 2, 0)
        diff = (uint8.int() - floats.int()).abs()
        assert diff.max() <= 1 and diff.float().mean() < 0.25, shape


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA (nvjpeg)")
def test_nvjpeg_batch_stays_close_to_the_cpu_pixels(images):
    batch = decode_resized_batch(images, 256, device="cuda")
    for path, pixels in zip(images, batch):
        assert pixels.is_cuda and pixels.dtype == torch.uint8
        single = decode_resized(path, 256)
        assert pixels.shape == single.shape
        assert np.abs(pixels.cpu().numpy().astype(float) - single).mean() <= 1.5, path


def test_16_bit_grey_pngs_are_scaled_to_8_bits_not_clipped(tmp_path):
    grey = photo_like(np.random.default_rng(4), 40, 30)[:, :, 0]
    Image.fromarray(grey).save(tmp_path / "g8.png")
    Image.fromarray(grey.astype(np.uint16) * 257).save(tmp_path / "g16.png")  # the same picture, 16 bits deep
    assert Image.open(tmp_path / "g16.png").mode.startswith("I")
    eight = decode_resized(str(tmp_path / "g8.png"), 30)
    np.testing.assert_array_equal(decode_resized(str(tmp_path / "g16.png"), 30), eight)
    np.testing.assert_array_equal(np.asarray(load_rgb(str(tmp_path / "g16.png"))),
                                  np.asarray(load_rgb(str(tmp_path / "g8.png"))))


def test_a_file_that_is_no_image_is_one_plain_line(tmp_path):
    path = tmp_path / "notes.png"
    path.write_text("hello")
    for read in (lambda: decode_resized(str(path), 32), lambda: load_rgb(str(path))):
        with pytest.raises(ImageReadError) as info:
            read()
        assert str(info.value) == f"cannot read image {path}: not an image file, or a format PIL cannot read"


@pytest.mark.parametrize("width, height, fmt", [(100000, 1, "PNG"), (2, 20000, "PNG"), (3300, 100, "JPEG")])
def test_images_beyond_the_size_bounds_are_refused_before_allocating(tmp_path, monkeypatch, width, height, fmt):
    """A 177-byte 100000x1 PNG resized to a 256 shorter side would ask for 19.7 GB: refused from its header,
    naming the file, before anything is decoded or resized, on every decoding path."""
    from shc.data import decode
    path = str(tmp_path / f"long.{fmt.lower()}")
    Image.new("RGB", (width, height)).save(path, format=fmt)
    touched = []
    monkeypatch.setattr(decode, "resize_pixels", lambda *a: touched.append(a))
    monkeypatch.setattr(decode, "rgb_pixels", lambda *a: touched.append(a))
    message = rf"^cannot read image {path}: {width}x{height} pixels, an aspect ratio beyond the 32:1 allowed"
    for read in (lambda: decode_resized(path, 256), lambda: decode.image_size(path), lambda: load_rgb(path),
                 lambda: decode_resized_batch([path], 256, device="cpu")):
        with pytest.raises(ImageReadError, match=message):
            read()
    assert touched == []


def test_pixel_count_is_bounded_like_pils_bomb_limit():
    from shc.data.decode import MAX_PIXELS, ImageSizeError, check_dimensions
    check_dimensions(MAX_PIXELS // 10000, 10000)
    with pytest.raises(ImageSizeError, match="20000x20000 pixels, more than the 178,956,970 one image may have"):
        check_dimensions(20000, 20000)
    assert MAX_PIXELS == 2 * Image.MAX_IMAGE_PIXELS
