"""Image-file datasets: list files (single-label / multi-hot), COCO, custom, ImageFolder, the DataLoader pipeline."""
import os

import numpy as np
import pytest
import torch
from PIL import Image

from shc.data import DataRootError, FileSplit, ImageReadError, load_dataset
from shc.data.files import IMAGENET_MEAN, IMAGENET_STD, encode_labels, read_list_file

SMALL = dict(resize_size=20, crop_size=16)  # tiny transforms keep the tests fast


def write_image(path, seed, size=(26, 20), fmt=None):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)).save(path, format=fmt)


def make_list_dataset(root, counts=(6, 3, 0), labels_base=1, multi_hot=0, sep="\t", ext=".jpg"):
    """Images in root/images/<split>/ plus train.txt / test.txt (/ database.txt) list files."""
    rng = np.random.default_rng(0)
    for split, list_name, n in zip(("train", "test", "database"), ("train.txt", "test.txt", "database.txt"), counts):
        if n == 0:
            continue
        lines = []
        for i in range(n):
            rel = f"images/{split}/img_{i:03d}{ext}"
            write_image(os.path.join(root, rel), seed=i, size=(17 + 7 * i % 23, 19 + 5 * i % 17))
            if multi_hot:
                hot = (rng.random(multi_hot) < 0.3).astype(int)
                hot[i % multi_hot] = 1
                lines.append(rel + " " + " ".join(map(str, hot)))
            else:
                lines.append(f"{rel}{sep}{labels_base + i % 3}")
        with open(os.path.join(root, list_name), "w") as f:
            f.write("\n".join(lines) + "\n")
    return root


@pytest.mark.parametrize("name", ["stanford-cars-a", "stanford_cars-official-seg", "stanford-cars-b",
                                  "nabirds-a", "NAbirds-official-seg", "nabirds-b", "NAbirds-new-seg"])
def test_single_label_list_datasets(tmp_path, name):
    root = make_list_dataset(str(tmp_path))
    ds = load_dataset(name, root, **SMALL)
    assert (ds.num_classes, ds.multi_label, ds.channels, ds.image_size) == (3, False, 3, 16)
    assert (len(ds.train), len(ds.query), len(ds.database)) == (6, 3, 6)
    assert ds.database.paths == ds.train.paths  # -A protocol: database = train when no database.txt
    assert ds.class_names == ["1", "2", "3"]  # 1-based labels become 0..C-1
    assert np.array_equal(ds.train.labels, np.arange(6) % 3)


def test_database_list_is_used(tmp_path):
    root = make_list_dataset(str(tmp_path), counts=(6, 3, 4), sep=" ", labels_base=0)
    ds = load_dataset("stanford-cars-b", root, **SMALL)
    assert len(ds.database) == 4 and ds.database.paths[0].endswith("images/database/img_000.jpg")
    assert ds.class_names == ["0", "1", "2"]


def test_coco_multi_hot(tmp_path):
    root = make_list_dataset(str(tmp_path), counts=(5, 2, 4), multi_hot=80)
    ds = load_dataset("coco", root, **SMALL)
    assert ds.multi_label and ds.num_classes == 80 and ds.class_names is None
    assert ds.train.labels.shape == (5, 80) and ds.train.labels.dtype == np.uint8
    x, y, idx = next(ds.database.batches(3, train=False))
    assert x.shape == (3, 3, 16, 16) and y.dtype == torch.float32
    assert torch.equal(y, torch.from_numpy(ds.database.labels[:3]).float())


def test_coco_wrong_label_count(tmp_path):
    root = make_list_dataset(str(tmp_path), counts=(3, 2, 0), multi_hot=79)
    with pytest.raises(ValueError, match="79 labels per line, expected 80"):
        load_dataset("coco", root, **SMALL)
    with pytest.raises(ValueError, match="multi-hot"):
        load_dataset("coco", make_list_dataset(str(tmp_path / "single")), **SMALL)


def test_custom_lists_either_format(tmp_path):
    single = load_dataset("custom", make_list_dataset(str(tmp_path / "a")), **SMALL)
    multi = load_dataset("custom", make_list_dataset(str(tmp_path / "b"), multi_hot=5), **SMALL)
    assert not single.multi_label and single.num_classes == 3
    assert multi.multi_label and multi.num_classes == 5


def test_custom_image_folder(tmp_path):
    for split, n in (("train", 2), ("test", 1)):
        for cls in ("cat", "dog", "emu"):
            for i in range(n):
                write_image(str(tmp_path / split / cls / f"{i}.png"), seed=i)
    (tmp_path / "train" / "cat" / "notes.txt").write_text("not an image")
    ds = load_dataset("custom", str(tmp_path), **SMALL)
    assert ds.class_names == ["cat", "dog", "emu"]
    assert (len(ds.train), len(ds.query), len(ds.database)) == (6, 3, 6)
    assert np.array_equal(ds.query.labels, [0, 1, 2])
    assert all(p.endswith(".png") for p in ds.train.paths)


def test_missing_roots(tmp_path, monkeypatch):
    monkeypatch.delenv("SHC_DATA_ROOT", raising=False)
    with pytest.raises(DataRootError, match="train.txt and test.txt"):
        load_dataset("nabirds-a", str(tmp_path))
    with pytest.raises(DataRootError, match="SHC_DATA_ROOT"):
        load_dataset("stanford-cars-a")
    with pytest.raises(DataRootError, match="data_root"):
        load_dataset("custom")
    with pytest.raises(DataRootError, match="ImageFolder"):
        load_dataset("custom", str(tmp_path))


def test_shc_data_root_env(tmp_path, monkeypatch):
    make_list_dataset(str(tmp_path / "nabirds-a"))
    monkeypatch.setenv("SHC_DATA_ROOT", str(tmp_path))
    assert len(load_dataset("NAbirds-official-seg", **SMALL).query) == 3


def test_missing_image_named_before_training(tmp_path):
    root = make_list_dataset(str(tmp_path))
    os.remove(os.path.join(root, "images/test/img_001.jpg"))
    with pytest.raises(DataRootError, match="images/test/img_001.jpg"):
        load_dataset("stanford-cars-a", root, **SMALL)


def corrupt(root, rel="images/train/img_004.jpg"):
    with open(os.path.join(root, rel), "r+b") as f:
        f.truncate(60)  # a cut-off JPEG
    return rel


def test_corrupt_image_named_when_caching(tmp_path):
    root = make_list_dataset(str(tmp_path))
    corrupt(root)
    with pytest.raises(ImageReadError, match="1 of 9 images cannot be read: cannot read image .*img_004.jpg") as e:
        load_dataset("stanford-cars-a", root, **SMALL)
    assert "\n" not in str(e.value) and "skip_unreadable" in str(e.value)


@pytest.mark.parametrize("workers", [0, 2])
def test_corrupt_image_named_without_cache(tmp_path, workers):
    root = make_list_dataset(str(tmp_path))
    corrupt(root)
    ds = load_dataset("stanford-cars-a", root, image_cache="off", **SMALL)
    with pytest.raises(ImageReadError, match="img_004.jpg") as e:
        for _ in ds.train.batches(2, train=True, workers=workers):
            pass
    # from a worker process too: the file and the reason, not a flattened traceback
    assert str(e.value).startswith("cannot read image ") and "\n" not in str(e.value)
    assert "Traceback" not in str(e.value) and len(str(e.value)) < 300


@pytest.mark.parametrize("image_cache", [None, "off"])
def test_skip_unreadable_leaves_them_out(tmp_path, image_cache, capsys):
    root = make_list_dataset(str(tmp_path))
    corrupt(root)
    os.remove(os.path.join(root, "images/test/img_001.jpg"))
    ds = load_dataset("stanford-cars-a", root, image_cache=image_cache, skip_unreadable=True, progress=False,
                      **SMALL)
    assert (len(ds.train), len(ds.query), len(ds.database)) == (5, 2, 5)
    assert sorted(os.path.basename(p) for p in ds.skipped) == ["img_001.jpg", "img_004.jpg"]
    assert not any(p.endswith(("train/img_004.jpg", "test/img_001.jpg")) for p in ds.train.paths + ds.query.paths)
    assert np.array_equal(ds.train.labels, [0, 1, 2, 0, 2])  # the labels follow their images
    assert "skipping 2 of 9 images that cannot be read" in capsys.readouterr().err
    assert sum(len(b[0]) for b in ds.train.batches(2, train=True)) == 5
    assert "2 unreadable images skipped" in repr(ds)


def test_list_file_errors(tmp_path):
    p = tmp_path / "x.txt"
    p.write_text("a.jpg\t1\nb.jpg 0 1 0\n")
    with pytest.raises(ValueError, match="x.txt:2"):
        read_list_file(str(p), str(tmp_path))
    p.write_text("a.jpg 0 1 0\nb.jpg 0 2 0\n")
    with pytest.raises(ValueError, match="0 or 1"):
        read_list_file(str(p), str(tmp_path))
    p.write_text("\n")
    with pytest.raises(ValueError, match="no entries"):
        read_list_file(str(p), str(tmp_path))
    p.write_text("dir with space/a b.jpg\t7\n# a comment\n/abs/c.jpg\t10\n")
    lst = read_list_file(str(p), "/root")
    assert lst.paths == ["/root/dir with space/a b.jpg", "/abs/c.jpg"] and lst.labels == ["7", "10"]
    p.write_text("x y.jpg\t0\t1\t1\n")  # TAB-separated multi-hot
    assert read_list_file(str(p), "/r").labels.tolist() == [[0, 1, 1]]
    p.write_bytes(b"caf\xe9.jpg\t1\n")
    with pytest.raises(ValueError, match="x.txt"):
        read_list_file(str(p), str(tmp_path))
    ids, n, names = encode_labels([lst])
    assert n == 2 and names == ["7", "10"] and ids[0].tolist() == [0, 1]  # numeric, not string, order


# ----------------------------------------------------------------------------- the file pipeline

def grey_levels(x):
    """Normalised float batches back to 0-255 pixel values."""
    mean, std = torch.tensor(IMAGENET_MEAN)[:, None, None], torch.tensor(IMAGENET_STD)[:, None, None]
    return (x * std + mean) * 255


@pytest.mark.parametrize("image_cache", [None, "off"])
def test_eval_transform_matches_torchvision(tmp_path, image_cache):
    import torchvision.transforms as T

    root = make_list_dataset(str(tmp_path))
    ds = load_dataset("stanford-cars-a", root, image_cache=image_cache, **SMALL)
    reference = T.Compose([T.Resize(20), T.CenterCrop(16), T.PILToTensor()])  # PIL bilinear, today's pixels
    x = grey_levels(torch.cat([b[0] for b in ds.query.batches(2, train=False)]))
    for i, path in enumerate(ds.query.paths):  # noise images: the worst case for two resize implementations
        diff = (x[i] - reference(Image.open(path).convert("RGB")).float()).abs()
        assert diff.mean() <= 1.5 and diff.max() <= 4


def test_train_transform_is_a_crop_and_flip_of_the_resized_image(tmp_path):
    from shc.data.decode import decode_resized

    root = make_list_dataset(str(tmp_path))
    ds = load_dataset("stanford-cars-a", root, **SMALL)
    for x, _, idx in ds.train.batches(4, train=True, seed=0, epoch=2):
        for img, i in zip(x, idx.tolist()):
            raw = torch.round(grey_levels(img)).to(torch.uint8)
            resized = torch.from_numpy(decode_resized(ds.train.paths[i], 20)).permute(2, 0, 1)
            h, w = resized.shape[1:]
            crops = [c for dy in range(h - 15) for dx in range(w - 15)
                     for c in (resized[:, dy:dy + 16, dx:dx + 16], resized[:, dy:dy + 16, dx:dx + 16].flip(2))]
            assert any(torch.equal(raw, c) for c in crops)


def test_file_batches_deterministic_across_workers_and_cache(tmp_path):
    root = make_list_dataset(str(tmp_path), counts=(7, 2, 0))
    cached, uncached = (load_dataset("custom", root, image_cache=c, **SMALL) for c in (None, "off"))
    runs = [list(ds.train.batches(3, train=True, seed=1, epoch=1, workers=w)) for ds in (cached, uncached)
            for w in (0, 2)]
    assert [len(b[0]) for b in runs[0]] == [3, 3, 1]
    for other in runs[1:]:  # the cache holds exactly the pixels a decode gives
        for (xa, ya, ia), (xb, yb, ib) in zip(runs[0], other, strict=True):
            assert torch.equal(xa, xb) and torch.equal(ya, yb) and torch.equal(ia, ib)
    ds = cached
    other_epoch = torch.cat([b[2] for b in ds.train.batches(3, train=True, seed=1, epoch=2)])
    assert sorted(other_epoch.tolist()) == list(range(7))
    assert not torch.equal(other_epoch, torch.cat([b[2] for b in runs[0]]))


def test_file_split_sharding(tmp_path):
    root = make_list_dataset(str(tmp_path), counts=(7, 5, 0))
    ds = load_dataset("custom", root, **SMALL)
    got = [torch.cat([b[2] for b in ds.query.batches(2, train=False, rank=r, world_size=2)]) for r in range(2)]
    assert torch.equal(torch.cat(got), torch.arange(5))
    shards = [torch.cat([b[2] for b in ds.train.batches(2, train=True, rank=r, world_size=2, drop_last=False)])
              for r in range(2)]
    assert len(shards[0]) == len(shards[1]) == 4 and set(torch.cat(shards).tolist()) == set(range(7))


def test_file_split_arguments():
    with pytest.raises(ValueError, match="crop_size"):
        FileSplit(["a.jpg"], np.zeros(1, np.int64), resize_size=10, crop_size=16)
    with pytest.raises(TypeError, match="accepted"):
        load_dataset("coco", "/nonexistent", crop=3)
