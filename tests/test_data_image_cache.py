"""The decoded-image cache: pixels as PIL gives them, fingerprint invalidation, crash-safe builds, disk checks."""
import os
import threading

import numpy as np
import pytest
import torch
from PIL import Image

from shc.data import load_dataset
from shc.data import image_cache
from shc.data.files import IMAGENET_MEAN, IMAGENET_STD
from shc.data.image_cache import ImageStore, open_or_build, store_key
from shc.data.testing import make_coco_like, photo_like

REAL_DECODE = image_cache.decode_resized


def pil_centre_crop(path, resize_size=256, crop_size=224):
    """Today's pixels, written independently: PIL bilinear resize of the shorter side, torchvision's CenterCrop."""
    img = Image.open(path).convert("RGB")
    w, h = img.size
    size = (resize_size, int(resize_size * h / w)) if w <= h else (int(resize_size * w / h), resize_size)
    img = img.resize(size, Image.Resampling.BILINEAR)
    left, top = int(round((size[0] - crop_size) / 2.0)), int(round((size[1] - crop_size) / 2.0))
    return np.asarray(img.crop((left, top, left + crop_size, top + crop_size))).astype(np.float64)


def unnormalise(x):
    mean, std = torch.tensor(IMAGENET_MEAN)[:, None, None], torch.tensor(IMAGENET_STD)[:, None, None]
    return ((x * std + mean) * 255).permute(1, 2, 0).double().numpy()


def write_list_dataset(root, images):
    """``images``: {relative path: (height, width, mode, format)} -> train.txt = test.txt listing them all."""
    rng = np.random.default_rng(3)
    lines = []
    for i, (rel, (h, w, mode, fmt)) in enumerate(images.items()):
        path = os.path.join(root, rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        Image.fromarray(photo_like(rng, h, w)).convert(mode).save(path, format=fmt, quality=90)
        lines.append(f"{rel}\t{i % 2}")
    for name in ("train.txt", "test.txt"):
        with open(os.path.join(root, name), "w") as f:
            f.write("\n".join(lines) + "\n")
    return root


@pytest.mark.parametrize("image_cache_dir", [None, "off"])
def test_centre_crops_equal_pil_within_one_and_a_half_grey_levels(tmp_path, image_cache_dir):
    root = write_list_dataset(str(tmp_path / "data"), {
        "coco.jpg": (480, 640, "RGB", "JPEG"),          # COCO's shape
        "portrait.jpg": (500, 375, "RGB", "JPEG"),
        "large.jpg": (1600, 1200, "RGB", "JPEG"),        # decoded at 1/4 scale in the DCT domain
        "grey.jpg": (300, 400, "L", "JPEG"),
        "small.png": (120, 200, "RGB", "PNG"),           # upscaled; PIL decodes PNGs
    })
    ds = load_dataset("custom", root, image_cache=image_cache_dir, progress=False)
    x = torch.cat([b[0] for b in ds.query.batches(2, train=False)])
    for i, path in enumerate(ds.query.paths):
        diff = np.abs(unnormalise(x[i]) - pil_centre_crop(path))
        assert diff.mean() <= 1.5, (path, diff.mean())


def test_coco_shaped_store_layout(tmp_path):
    root = make_coco_like(str(tmp_path / "coco"), (3, 2, 4), size=(640, 480))
    ds = load_dataset("coco", root, progress=False)
    store = ds.database.store
    assert len(store) == 6  # the 3 training images are database images: decoded once
    assert store.index[:, 1:].tolist() == [[256, 341]] * 6
    assert store.nbytes == 6 * 256 * 341 * 3 == os.path.getsize(store.path / "pixels.u8")
    assert np.array_equal(store.index[:, 0], np.arange(6) * 256 * 341 * 3)
    img = store.image(int(store.records([ds.query.paths[0]])[0]))
    assert img.shape == (256, 341, 3) and not img.flags.writeable


def count_decodes(monkeypatch, fail_after=None):
    """Wrap the cache's decoder: counts calls, and raises KeyboardInterrupt after ``fail_after`` of them."""
    calls = []

    def counted(*args, **kwargs):
        if fail_after is not None and len(calls) >= fail_after:
            raise KeyboardInterrupt
        calls.append(args[0])
        return REAL_DECODE(*args, **kwargs)
    monkeypatch.setattr(image_cache, "decode_resized", counted)
    return calls


def test_reused_when_unchanged_rebuilt_when_an_image_or_the_transform_changes(tmp_path, monkeypatch):
    root = make_coco_like(str(tmp_path / "coco"), (2, 2, 3), size=(64, 48))
    calls = count_decodes(monkeypatch)
    first = load_dataset("coco", root, resize_size=40, crop_size=32, progress=False)
    assert len(calls) == 5
    again = load_dataset("coco", root, resize_size=40, crop_size=32, progress=False)
    assert len(calls) == 5 and again.query.store.path == first.query.store.path  # nothing decoded again

    # a changed image: new key, new pixels (never the stale ones)
    changed = first.query.paths[0]
    Image.fromarray(np.full((48, 64, 3), 200, np.uint8)).save(changed, quality=95)
    os.utime(changed, ns=(1, 1))  # even with an mtime from the past: the size differs
    redone = load_dataset("coco", root, resize_size=40, crop_size=32, progress=False)
    assert redone.query.store.path != first.query.store.path and len(calls) == 10
    x = unnormalise(next(redone.query.batches(1, train=False))[0][0])
    assert np.abs(x - 200).mean() < 2

    # the same bytes with a new mtime also count as changed (a file's identity is path, size, mtime)
    key = store_key(redone.query.paths, 40)
    os.utime(changed)
    assert store_key(redone.query.paths, 40) != key
    # another transform
    assert store_key(redone.query.paths, 48) != store_key(redone.query.paths, 40)


def test_interrupted_build_resumes_where_it_stopped(tmp_path, monkeypatch):
    root = make_coco_like(str(tmp_path / "coco"), (4, 3, 9), size=(64, 48))
    paths = load_dataset("coco", root, image_cache="off").database.paths  # 9 images
    monkeypatch.setattr(image_cache, "CHUNK", 2)
    count_decodes(monkeypatch, fail_after=5)
    with pytest.raises(KeyboardInterrupt):
        open_or_build(paths, 40, tmp_path / "cache", workers=1, progress=False)
    key = store_key(paths, 40)[:32]
    assert not (tmp_path / "cache" / key).exists()  # nothing half-valid under the real name
    assert (tmp_path / "cache" / f"{key}.partial").is_dir()

    calls = count_decodes(monkeypatch)
    store = open_or_build(paths, 40, tmp_path / "cache", workers=1, progress=False)
    assert len(calls) == 5  # the 4 records of the two finished chunks were kept
    assert not (tmp_path / "cache" / f"{key}.partial").exists()
    clean = open_or_build(paths, 40, tmp_path / "clean", workers=2, progress=False)
    assert np.array_equal(np.asarray(store.pixels), np.asarray(clean.pixels))
    assert np.array_equal(store.index, clean.index)


def test_concurrent_builders_decode_once(tmp_path, monkeypatch):
    root = make_coco_like(str(tmp_path / "coco"), (2, 2, 6), size=(64, 48))
    paths = load_dataset("coco", root, image_cache="off").database.paths
    calls = count_decodes(monkeypatch)
    stores = []
    threads = [threading.Thread(target=lambda: stores.append(
        open_or_build(paths, 40, tmp_path / "cache", workers=1, progress=False))) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(calls) == 6 and len({s.path for s in stores}) == 1


def test_disk_space_checked_before_decoding(tmp_path, monkeypatch):
    root = make_coco_like(str(tmp_path / "coco"), (2, 2, 3), size=(640, 480))
    calls = count_decodes(monkeypatch)

    class Usage:
        total, used, free = 10 ** 9, 10 ** 9, 50 * 10 ** 6
    monkeypatch.setattr(image_cache.shutil, "disk_usage", lambda path: Usage)
    with pytest.raises(OSError, match=r"5 images need 1\.3 MB in .* but only 50\.0 MB are free.*--image-cache") as e:
        load_dataset("coco", root, image_cache=str(tmp_path / "cache"), progress=False)
    assert "\n" not in str(e.value) and calls == []
    assert os.listdir(tmp_path / "cache") == [f"{store_key_of(root)}.lock"]  # no partial store left behind


def store_key_of(root):
    ds = load_dataset("coco", root, image_cache="off")
    return store_key(list(dict.fromkeys(ds.train.paths + ds.query.paths + ds.database.paths)), 256)[:32]


def test_unwritable_cache_dir_is_one_clear_error(tmp_path):
    root = make_coco_like(str(tmp_path / "coco"), (1, 1, 1), size=(64, 48))
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(OSError, match="image cache: cannot create .*--image-cache off"):
        load_dataset("coco", root, image_cache=str(blocker / "cache"), progress=False)


def test_store_opens_read_only_and_names_unreadable_records(tmp_path):
    root = make_coco_like(str(tmp_path / "coco"), (1, 1, 2), size=(64, 48))
    ds = load_dataset("coco", root, image_cache="off")
    bad = ds.database.paths[1]
    with open(bad, "r+b") as f:
        f.truncate(50)
    store = open_or_build(ds.database.paths, 40, tmp_path / "cache", progress=False)
    again = ImageStore(store.path)
    assert list(again.errors) == [1] and again.index[1].tolist()[1:] == [0, 0]
    with pytest.raises(OSError, match=os.path.basename(bad)):
        again.image(1)


def test_default_workers_follow_the_cores():
    assert 1 <= image_cache.default_workers() <= min(8, os.cpu_count())


def test_shc_cache_build_list_clear(tmp_path, capsys):
    from shc.cli.cache import main

    root = make_coco_like(str(tmp_path / "coco"), (2, 2, 3), size=(64, 48))
    cache = str(tmp_path / "cache")
    assert main(["build", "--dataset", "coco", "--data-root", root, "--data-option", "resize_size=40",
                 "--data-option", "crop_size=32", "--image-cache", cache]) == 0
    out = capsys.readouterr().out
    assert "coco: 5 images (0 unreadable)" in out and "(31.8 kB)" in out  # 5 x 40 x 53 x 3 bytes
    assert main(["list", "--image-cache", cache]) == 0
    listing = capsys.readouterr().out
    assert "5 images" in listing and "40px" in listing and "1 store(s)" in listing
    ds = load_dataset("coco", root, resize_size=40, crop_size=32, image_cache=cache, progress=False)
    assert str(ds.train.store.path).startswith(cache)  # training finds what build made
    assert main(["clear", "--image-cache", cache]) == 0
    assert "freed" in capsys.readouterr().out and os.listdir(cache) == []
    assert main(["build", "--dataset", "fashion-mnist", "--image-cache", cache]) == 2
    assert "nothing to cache" in capsys.readouterr().err


# ----------------------------------------------------------------------------- a store is verified, not trusted
def built_store(tmp_path, counts=(2, 2, 5)):
    root = make_coco_like(str(tmp_path / "coco"), counts, size=(64, 48))
    paths = load_dataset("coco", root, image_cache="off").database.paths
    return paths, open_or_build(paths, 40, tmp_path / "cache", workers=1, progress=False)


@pytest.mark.parametrize("name, damage, why", [
    ("pixels.u8", lambda p: os.truncate(p, os.path.getsize(p) - 1), "pixels.u8: .* the index reaches byte"),
    ("index.npy", lambda p: os.truncate(p, 100), "index.npy: ValueError"),
    ("meta.json", lambda p: open(p, "w").write("{broken"), "meta.json: JSONDecodeError"),
    ("meta.json", os.unlink, "meta.json: missing"),
])
def test_a_damaged_store_is_refused_naming_it_and_rebuilt(tmp_path, monkeypatch, capsys, name, damage, why):
    paths, store = built_store(tmp_path)
    pixels = np.array(store.pixels)
    damage(store.path / name)
    with pytest.raises(image_cache.DamagedStoreError, match=f"store {store.path} is damaged \\({why}"):
        ImageStore(store.path)
    calls = count_decodes(monkeypatch)
    again = open_or_build(paths, 40, tmp_path / "cache", workers=1, progress=True)
    assert len(calls) == len(paths) and np.array_equal(np.asarray(again.pixels), pixels)
    assert f"{store.path} is damaged" in capsys.readouterr().err


def test_flipped_pixels_fail_their_first_read_then_the_store_is_rebuilt(tmp_path, monkeypatch):
    monkeypatch.setattr(image_cache, "CHUNK", 2)
    paths, store = built_store(tmp_path)
    good = [np.array(store.image(r)) for r in range(len(paths))]
    offset = int(store.index[3, 0]) + 7  # record 3: the second chunk
    with open(store.path / "pixels.u8", "r+b") as f:
        f.seek(offset)
        byte = f.read(1)
        f.seek(offset)
        f.write(bytes([byte[0] ^ 0x10]))
    damaged = ImageStore(store.path)  # sizes all fine: only the checksum tells
    assert np.array_equal(damaged.image(0), good[0])  # another chunk reads fine
    with pytest.raises(image_cache.DamagedStoreError, match=r"records 2\.\.3 do not match their checksum"):
        damaged.crops(np.array([4, 3]), np.zeros(2, np.int64), np.zeros(2, np.int64), np.zeros(2, bool), 8)
    rebuilt = open_or_build(paths, 40, tmp_path / "cache", workers=1, progress=False)
    assert all(np.array_equal(rebuilt.image(r), good[r]) for r in range(len(paths)))


def test_shc_cache_list_and_clear_work_around_a_broken_store(tmp_path, capsys):
    from shc.cli.cache import main
    paths, store = built_store(tmp_path)
    other = open_or_build(paths[:2], 40, tmp_path / "cache", workers=1, progress=False)
    (store.path / "meta.json").write_text("{broken")
    assert main(["list", "--image-cache", str(tmp_path / "cache")]) == 0
    out = capsys.readouterr().out
    assert f"{other.path.name}          2 images" in out
    assert f"{store.path.name}  broken: image cache store {store.path} is damaged (meta.json" in out
    assert "1 store(s) (1 broken, removed by shc-cache clear)" in out
    assert main(["clear", "--image-cache", str(tmp_path / "cache")]) == 0
    assert not store.path.exists() and not other.path.exists()


def test_resumed_build_on_a_full_disk_is_an_error_naming_the_file_not_a_bus_error(tmp_path, monkeypatch, small_disk):
    """The pixel file of an interrupted build is sparse where nothing was written yet; a resumed build that
    writes into it through the map on a full disk used to die of SIGBUS."""
    root = make_coco_like(str(tmp_path / "coco"), (2, 2, 4), size=(640, 480))
    paths = load_dataset("coco", root, image_cache="off").database.paths
    cache = small_disk(4 << 20)
    monkeypatch.setattr(image_cache, "CHUNK", 1)
    monkeypatch.setattr(image_cache, "DISK_RESERVE", 0)
    count_decodes(monkeypatch, fail_after=1)
    with pytest.raises(KeyboardInterrupt):
        open_or_build(paths, 256, cache, workers=1, progress=False)
    partial = next(cache.glob("*.partial"))
    size = os.path.getsize(partial / "pixels.u8")  # 4 x 256 x 341 x 3 bytes
    os.truncate(partial / "pixels.u8", 0)  # as an older build left it: sparse, holes where not yet written
    os.truncate(partial / "pixels.u8", size)
    (cache / "filler").write_bytes(b"\0" * (shutil_free(cache) - size // 2))
    count_decodes(monkeypatch)
    with pytest.raises(OSError, match=f"cannot write {partial / 'pixels.u8'} \\(it needs 1.0 MB\\): the disk is full"):
        open_or_build(paths, 256, cache, workers=1, progress=False)


def shutil_free(path):
    import shutil
    return shutil.disk_usage(path).free


def test_an_image_beyond_the_size_bounds_is_named_or_skipped(tmp_path):
    root = make_coco_like(str(tmp_path / "coco"), (2, 2, 3), size=(64, 48))
    long = load_dataset("coco", root, image_cache="off").database.paths[1]
    Image.new("RGB", (100000, 1)).save(long, format="PNG")  # 177 bytes, 19.7 GB once resized
    with pytest.raises(OSError, match=rf"1 of 5 images cannot be read: cannot read image {long}: 100000x1 pixels, "
                                      rf"an aspect ratio beyond the 32:1 allowed.*--skip-unreadable"):
        load_dataset("coco", root, resize_size=40, crop_size=32, progress=False)
    ds = load_dataset("coco", root, resize_size=40, crop_size=32, progress=False, skip_unreadable=True)
    assert ds.skipped == (long,) and long not in ds.database.paths and len(ds.database) == 2
