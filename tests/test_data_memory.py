"""In-memory datasets: Fashion-MNIST (IDX), CIFAR-100 (pickles), synthetic, and the batched device pipeline."""
import gzip
import os
import pickle

import numpy as np
import pytest
import torch

from shc.data import DATASETS, DataRootError, HashingDataset, InMemorySplit, canonical_name, load_dataset
from shc.data.fashion_mnist import DEBIAN_ROOT, FILES, read_idx
from shc.data.memory import crop_flip
from shc.data.sampling import shard_indices


# ----------------------------------------------------------------------------- tiny files in the real formats

def write_idx(path, array):
    header = bytes([0, 0, 0x08, array.ndim]) + np.array(array.shape, ">u4").tobytes()
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "wb") as f:
        f.write(header + np.ascontiguousarray(array, np.uint8).tobytes())


def make_fashion_mnist(folder, per_class=(8, 3), gz=True, seed=0):
    """IDX files with ``per_class`` = (train-file, test-file) images per class; pixel [0,0] encodes the label."""
    rng = np.random.default_rng(seed)
    os.makedirs(folder, exist_ok=True)
    for prefix, k in zip(("train", "t10k"), per_class):
        labels = np.repeat(np.arange(10, dtype=np.uint8), k)
        rng.shuffle(labels)
        images = rng.integers(0, 256, (len(labels), 28, 28), dtype=np.uint8)
        images[:, 0, 0] = labels * 10
        ext = ".gz" if gz else ""
        write_idx(os.path.join(folder, f"{prefix}-images-idx3-ubyte{ext}"), images)
        write_idx(os.path.join(folder, f"{prefix}-labels-idx1-ubyte{ext}"), labels)
    return folder


def make_cifar100(root, per_class=(3, 2), bytes_keys=False, seed=0):
    rng = np.random.default_rng(seed)
    folder = os.path.join(root, "cifar-100-python")
    os.makedirs(folder)
    key = (lambda k: k.encode()) if bytes_keys else (lambda k: k)
    for name, k in zip(("train", "test"), per_class):
        labels = rng.permutation(np.repeat(np.arange(100), k))
        data = rng.integers(0, 256, (len(labels), 3072), dtype=np.uint8)
        data[:, 0] = labels  # red channel, pixel (0, 0)
        with open(os.path.join(folder, name), "wb") as f:
            pickle.dump({key("data"): data, key("fine_labels"): labels.tolist(),
                         key("coarse_labels"): (labels // 5).tolist()}, f, protocol=2)
    with open(os.path.join(folder, "meta"), "wb") as f:
        pickle.dump({key("fine_label_names"): [f"class{i}" for i in range(100)],
                     key("coarse_label_names"): [f"super{i}" for i in range(20)]}, f, protocol=2)
    return root


def pixel00(split):
    """Pixel (0, 0) of channel 0 of every image of an in-memory split, as stored (uint8)."""
    return split.images[:, 0, 0, 0].astype(np.int64)


# ----------------------------------------------------------------------------- Fashion-MNIST

def test_fashion_mnist_tiny_protocol(tmp_path):
    root = make_fashion_mnist(str(tmp_path))
    ds = load_dataset("fashion-mnist", str(tmp_path), seed=0, query_per_class=2, train_per_class=5)
    assert isinstance(ds, HashingDataset)
    assert (ds.num_classes, ds.multi_label, ds.channels, ds.image_size) == (10, False, 1, 28)
    assert (len(ds.train), len(ds.query), len(ds.database)) == (50, 20, 40)
    for split, k in ((ds.train, 5), (ds.query, 2), (ds.database, 4)):
        assert np.array_equal(np.bincount(split.labels, minlength=10), np.full(10, k))
        assert np.array_equal(pixel00(split), split.labels * 10)  # images stay with their labels
    assert len(ds.class_names) == 10 and root


def test_fashion_mnist_splits_know_their_source_rows(tmp_path):
    """source_index: the rows of the IDX files (training file, then test file) each split holds, in its order; what a
    run writes to codes/{query,db}_index.npy so that codes made elsewhere can encode the same images."""
    root = make_fashion_mnist(str(tmp_path))
    ds = load_dataset("fashion-mnist", root, seed=1, query_per_class=2, train_per_class=5)
    source = np.concatenate([read_idx(os.path.join(root, f"{p}-images-idx3-ubyte.gz")) for p in ("train", "t10k")])
    for split in (ds.train, ds.query, ds.database):
        assert split.source_index.dtype == np.int64
        assert np.array_equal(split.images[..., 0], source[split.source_index])
    rows = np.concatenate([ds.train.source_index, ds.query.source_index, ds.database.source_index])
    assert np.array_equal(np.sort(rows), np.arange(len(source)))  # a partition of the source
    with pytest.raises(ValueError, match="one row number per image"):
        InMemorySplit(np.zeros((3, 4, 4), np.uint8), np.zeros(3), mean=0.5, std=0.5, source_index=[0, 1])


def test_fashion_mnist_seeded(tmp_path):
    make_fashion_mnist(str(tmp_path))
    opts = dict(query_per_class=2, train_per_class=5)
    a, b = (load_dataset("fashion_mnist", str(tmp_path), seed=3, **opts) for _ in range(2))
    c = load_dataset("FashionMNIST", str(tmp_path), seed=4, **opts)
    assert np.array_equal(a.query.images, b.query.images)
    assert not np.array_equal(a.query.images, c.query.images)


def test_fashion_mnist_torchvision_layout_plain_files(tmp_path):
    make_fashion_mnist(str(tmp_path / "FashionMNIST" / "raw"), gz=False)
    ds = load_dataset("fashion-mnist", str(tmp_path), query_per_class=1, train_per_class=2)
    assert (len(ds.train), len(ds.query), len(ds.database)) == (20, 10, 80)


def test_fashion_mnist_missing_root_names_files_and_package(tmp_path):
    make_fashion_mnist(str(tmp_path))
    os.remove(tmp_path / "t10k-labels-idx1-ubyte.gz")
    with pytest.raises(DataRootError) as err:
        load_dataset("fashion-mnist", str(tmp_path))
    message = str(err.value)
    assert all(name in message for name in FILES)
    assert "apt-get install dataset-fashion-mnist" in message and str(tmp_path) in message
    assert isinstance(err.value, FileNotFoundError) and isinstance(err.value, ValueError)


def test_truncated_idx_names_file(tmp_path):
    make_fashion_mnist(str(tmp_path))
    path = str(tmp_path / "train-images-idx3-ubyte.gz")
    data = gzip.open(path).read()
    with gzip.open(path, "wb") as f:
        f.write(data[:-100])
    with pytest.raises(ValueError, match="train-images-idx3-ubyte.gz"):
        load_dataset("fashion-mnist", str(tmp_path))
    with open(path, "wb") as f:
        f.write(b"not a gzip file at all")
    with pytest.raises(ValueError, match="train-images-idx3-ubyte.gz"):
        read_idx(path)


@pytest.mark.skipif(not os.path.isdir(DEBIAN_ROOT), reason="dataset-fashion-mnist not installed")
def test_real_fashion_mnist_protocol():
    ds = load_dataset("fashion-mnist")  # the Debian package is the default root
    assert (len(ds.train), len(ds.query), len(ds.database)) == (5000, 1000, 64000)
    assert np.array_equal(np.bincount(ds.train.labels), np.full(10, 500))
    assert np.array_equal(np.bincount(ds.query.labels), np.full(10, 100))
    assert ds.train.images.shape == (5000, 28, 28, 1)
    x, _, _ = next(ds.database.batches(4096, train=False))
    assert abs(float(x.mean())) < 0.1 and abs(float(x.std()) - 1) < 0.1  # the normalisation constants fit


# ----------------------------------------------------------------------------- CIFAR-100

@pytest.mark.parametrize("bytes_keys", [False, True])
def test_cifar100_pickles(tmp_path, bytes_keys):
    make_cifar100(str(tmp_path), bytes_keys=bytes_keys)
    ds = load_dataset("cifar-100-new-seg", str(tmp_path), seed=0, train_per_class=2, query_per_class=1)
    assert (ds.num_classes, ds.channels, ds.image_size) == (100, 3, 32)
    assert (len(ds.train), len(ds.query), len(ds.database)) == (200, 100, 200)
    assert ds.class_names[7] == "class7"
    for split in (ds.train, ds.query, ds.database):
        assert split.images.shape[1:] == (32, 32, 3)
        assert np.array_equal(pixel00(split), split.labels)
    # the folder itself is accepted too
    ds2 = load_dataset("cifar100", str(tmp_path / "cifar-100-python"), train_per_class=2, query_per_class=1)
    assert np.array_equal(ds2.query.images, ds.query.images)


def test_cifar100_missing(tmp_path):
    with pytest.raises(DataRootError, match="cifar-100-python"):
        load_dataset("cifar100", str(tmp_path))


def test_cifar100_default_protocol_needs_enough_images(tmp_path):
    make_cifar100(str(tmp_path))  # 5 per class: the default 100 + 50 does not fit
    with pytest.raises(ValueError, match="needs 150"):
        load_dataset("cifar100", str(tmp_path))


# ----------------------------------------------------------------------------- registry

def test_registry_and_aliases():
    for alias, name in (("cifar-100-new-seg", "cifar100"), ("stanford_cars-official-seg", "stanford-cars-a"),
                        ("stanford_cars-new-seg", "stanford-cars-b"), ("NAbirds-official-seg", "nabirds-a"),
                        ("NAbirds-new-seg", "nabirds-b"), ("coco", "coco"), ("fashion_mnist", "fashion-mnist"),
                        ("FashionMNIST", "fashion-mnist"), ("synthetic", "synthetic")):
        assert canonical_name(alias) == name and name in DATASETS
    with pytest.raises(ValueError, match="unknown dataset 'imagenet'.*fashion-mnist"):
        load_dataset("imagenet")
    with pytest.raises(TypeError):
        load_dataset("synthetic", bogus_option=1)


# ----------------------------------------------------------------------------- synthetic

def test_synthetic_sizes_and_determinism():
    ds = load_dataset("synthetic", seed=1, num_classes=6, super_classes=2, sizes=(4, 2, 3), channels=1,
                      image_size=28)
    assert (len(ds.train), len(ds.query), len(ds.database)) == (24, 12, 18)
    assert (ds.channels, ds.image_size, ds.num_classes) == (1, 28, 6)
    assert ds.train.images.shape == (24, 28, 28, 1)
    same = load_dataset("synthetic", seed=1, num_classes=6, super_classes=2, sizes=(4, 2, 3), channels=1,
                        image_size=28)
    other = load_dataset("synthetic", seed=2, num_classes=6, super_classes=2, sizes=(4, 2, 3), channels=1,
                         image_size=28)
    assert np.array_equal(ds.train.images, same.train.images)
    assert not np.array_equal(ds.train.images, other.train.images)


def test_synthetic_hierarchy_siblings_look_alike():
    ds = load_dataset("synthetic", seed=0, num_classes=9, super_classes=3, sizes=(20, 1, 1))
    means = np.stack([ds.train.images[ds.train.labels == c].astype(float).mean(0).ravel() for c in range(9)])
    dist = ((means[:, None] - means[None]) ** 2).sum(-1)
    parent = np.arange(9) * 3 // 9
    same = parent[:, None] == parent[None]
    off_diag = ~np.eye(9, dtype=bool)
    assert dist[same & off_diag].max() < dist[~same].min()


def test_synthetic_multi_label():
    ds = load_dataset("synthetic", seed=0, multi_label=True, num_classes=8, sizes=(5, 2, 3))
    assert ds.multi_label and ds.train.labels.shape == (40, 8) and ds.train.labels.dtype == np.uint8
    assert ds.train.labels.sum(1).min() >= 1 and ds.train.labels.sum(1).max() > 1
    _, labels, _ = next(ds.train.batches(16, train=True))
    assert labels.dtype == torch.float32 and labels.shape == (16, 8)


# ----------------------------------------------------------------------------- the batched pipeline

def reference_crop_flip(image, dy, dx, flip, pad):
    """One image, plainly: numpy zero pad, slice, mirror."""
    h, w = image.shape[:2]
    padded = np.pad(image, ((pad, pad), (pad, pad), (0, 0)))
    out = padded[dy:dy + h, dx:dx + w]
    return out[:, ::-1] if flip else out


@pytest.mark.parametrize("channels,size,pad", [(1, 28, 3), (3, 32, 4), (3, 9, 0)])
def test_crop_flip_matches_reference(channels, size, pad):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (13, size, size, channels), dtype=np.uint8)
    dy, dx = rng.integers(0, 2 * pad + 1, 13), rng.integers(0, 2 * pad + 1, 13)
    flip = rng.random(13) < 0.5
    got = crop_flip(torch.from_numpy(images), torch.from_numpy(dy), torch.from_numpy(dx), torch.from_numpy(flip), pad)
    for b in range(13):
        assert np.array_equal(got[b].numpy(), reference_crop_flip(images[b], dy[b], dx[b], flip[b], pad))


def small_split(n=37, channels=3, size=8, multi=False, **kw):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (n, size, size, channels), dtype=np.uint8)
    labels = rng.integers(0, 2, (n, 5), dtype=np.uint8) if multi else rng.integers(0, 5, n)
    return InMemorySplit(images, labels, mean=(0.4, 0.5, 0.6)[:channels], std=(0.2, 0.25, 0.3)[:channels], **kw)


def test_eval_batches_exact_normalisation_and_order():
    split = small_split()
    batches = list(split.batches(10, train=False))
    assert [len(b[0]) for b in batches] == [10, 10, 10, 7] == [len(b[2]) for b in batches]
    x = torch.cat([b[0] for b in batches]).numpy()
    idx = torch.cat([b[2] for b in batches]).numpy()
    assert np.array_equal(idx, np.arange(37))
    expect = (split.images.transpose(0, 3, 1, 2) / 255.0 - np.array([0.4, 0.5, 0.6])[:, None, None]) \
        / np.array([0.2, 0.25, 0.3])[:, None, None]
    np.testing.assert_allclose(x, expect, rtol=1e-5, atol=1e-5)
    x0, y0, i0 = batches[0]
    assert x0.dtype == torch.float32 and y0.dtype == torch.int64 and i0.dtype == torch.int64
    assert np.array_equal(torch.cat([b[1] for b in batches]).numpy(), split.labels)


def test_train_batches_are_crops_of_the_right_images():
    split = small_split(pad=2)
    seen = []
    for x, y, idx in split.batches(8, train=True, seed=1, epoch=3):
        raw = x.numpy() * np.array([0.2, 0.25, 0.3])[:, None, None] + np.array([0.4, 0.5, 0.6])[:, None, None]
        raw = np.rint(raw * 255).astype(np.int64).transpose(0, 2, 3, 1)
        for b, i in enumerate(idx.tolist()):
            candidates = [reference_crop_flip(split.images[i], dy, dx, f, 2) for dy in range(5)
                          for dx in range(5) for f in (False, True)]
            assert any(np.array_equal(raw[b], c) for c in candidates)
            assert y[b] == split.labels[i]
        seen += idx.tolist()
    assert sorted(seen) == list(range(37)) and seen != list(range(37))


def test_train_batches_deterministic_and_epoch_dependent():
    split = small_split(pad=2)

    def run(**kw):
        return [t for batch in split.batches(8, train=True, **kw) for t in batch]

    a, b, c = run(seed=0, epoch=0), run(seed=0, epoch=0), run(seed=0, epoch=1)
    assert all(torch.equal(u, v) for u, v in zip(a, b))
    assert not torch.equal(a[2], c[2])


def test_augmentation_independent_of_world_size():
    split = small_split(pad=2)
    single = {}
    for x, _, idx in split.batches(5, train=True, seed=4, epoch=1):
        single.update({i: img for i, img in zip(idx.tolist(), x)})
    covered = []
    for rank in range(3):
        for x, _, idx in split.batches(4, train=True, seed=4, epoch=1, rank=rank, world_size=3):
            for i, img in zip(idx.tolist(), x):
                assert torch.equal(img, single[i])
            covered += idx.tolist()
    assert len(covered) == 39 and set(covered) == set(range(37))  # 37 padded to 3 x 13


def test_eval_sharding_gathers_exactly():
    split = small_split()
    parts = [torch.cat([b[2] for b in split.batches(4, train=False, rank=r, world_size=3)]) for r in range(3)]
    assert torch.equal(torch.cat(parts), torch.arange(37))
    assert [split.num_batches(4, rank=r, world_size=3) for r in range(3)] == \
        [len(list(split.batches(4, train=False, rank=r, world_size=3))) for r in range(3)]


def test_drop_last_and_flip_off():
    split = small_split(pad=0, flip=False)
    batches = list(split.batches(10, train=True, drop_last=True))
    assert [len(b[0]) for b in batches] == [10, 10, 10]
    # no crop padding, no flip: training images equal evaluation images of the same indices
    evals = torch.cat([b[0] for b in split.batches(37, train=False)])
    for x, _, idx in batches:
        assert torch.equal(x, evals[idx])


def test_multi_hot_labels_float():
    split = small_split(multi=True)
    _, y, idx = next(split.batches(6, train=False))
    assert y.dtype == torch.float32 and torch.equal(y, torch.from_numpy(split.labels[:6]).float())


def test_bad_batch_arguments():
    split = small_split()
    for kwargs in (dict(batch_size=0), dict(batch_size=4, rank=3, world_size=3), dict(batch_size=4, workers=-1)):
        with pytest.raises(ValueError):
            list(split.batches(train=False, **kwargs))
    with pytest.raises(ValueError, match="uint8"):
        InMemorySplit(np.zeros((2, 4, 4), np.float32), np.zeros(2), mean=0.5, std=0.5)


def test_shard_of_train_matches_sampler():
    split = small_split()
    got = torch.cat([b[2] for b in split.batches(8, train=True, seed=2, epoch=5, rank=1, world_size=2)])
    assert np.array_equal(got.numpy(), shard_indices(37, train=True, seed=2, epoch=5, rank=1, world_size=2))
