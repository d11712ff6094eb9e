"""Pure index math of the data pipeline: protocol splits, shuffling, sharding, augmentation draws."""
import numpy as np
import pytest

from shc.data.sampling import (batch_slices, crop_flip_params, num_batches, per_class_split, sample_bits,
                               shard_indices)


def test_per_class_split_sizes_disjoint_and_seeded():
    labels = np.repeat(np.arange(5), 20)
    query, train, rest = per_class_split(labels, (3, 7), seed=1)
    assert [len(query), len(train), len(rest)] == [15, 35, 50]
    for part, k in ((query, 3), (train, 7), (rest, 10)):
        assert np.array_equal(np.bincount(labels[part], minlength=5), np.full(5, k))
        assert np.array_equal(part, np.sort(part))
    assert np.array_equal(np.sort(np.concatenate([query, train, rest])), np.arange(100))
    again = per_class_split(labels, (3, 7), seed=1)
    other = per_class_split(labels, (3, 7), seed=2)
    assert all(np.array_equal(a, b) for a, b in zip(again, (query, train, rest)))
    assert not np.array_equal(other[0], query)


def test_per_class_split_too_small_class():
    with pytest.raises(ValueError, match="class 1 has 2 samples"):
        per_class_split(np.array([0, 0, 0, 1, 1]), (1, 2), seed=0)


@pytest.mark.parametrize("n,ws", [(10, 1), (10, 3), (12, 4), (2, 3), (0, 2)])
@pytest.mark.parametrize("drop_last", [False, True])
def test_train_shards_like_distributed_sampler(n, ws, drop_last):
    shards = [shard_indices(n, train=True, seed=5, epoch=2, rank=r, world_size=ws, drop_last=drop_last)
              for r in range(ws)]
    per_rank = (n // ws) if drop_last else -(-n // ws)
    assert all(len(s) == per_rank for s in shards)  # every rank gets the same count
    everything = np.concatenate(shards)
    if drop_last or n % ws == 0:
        assert len(set(everything.tolist())) == len(everything)  # disjoint
    if not drop_last:
        assert set(everything.tolist()) == set(range(n))  # full coverage (padding only repeats)
    for r in range(ws):  # deterministic
        assert np.array_equal(shards[r], shard_indices(n, train=True, seed=5, epoch=2, rank=r, world_size=ws,
                                                       drop_last=drop_last))


def test_train_order_depends_on_seed_and_epoch():
    base = shard_indices(100, train=True, seed=0, epoch=0)
    assert sorted(base.tolist()) == list(range(100))
    assert not np.array_equal(base, shard_indices(100, train=True, seed=0, epoch=1))
    assert not np.array_equal(base, shard_indices(100, train=True, seed=1, epoch=0))
    assert np.array_equal(base, shard_indices(100, train=True, seed=0, epoch=0))


@pytest.mark.parametrize("n,ws", [(10, 3), (7, 7), (3, 5), (100, 1)])
def test_eval_shards_contiguous_exact(n, ws):
    shards = [shard_indices(n, train=False, rank=r, world_size=ws) for r in range(ws)]
    assert np.array_equal(np.concatenate(shards), np.arange(n))  # in order, no padding, no overlap
    assert max(map(len, shards)) - min(map(len, shards)) <= 1


@pytest.mark.parametrize("train", [True, False])
@pytest.mark.parametrize("drop_last", [True, False])
def test_num_batches_matches_slices(train, drop_last):
    for n, ws, bs in ((103, 3, 10), (10, 4, 3), (5, 1, 5), (0, 2, 4)):
        for r in range(ws):
            count = len(shard_indices(n, train=train, rank=r, world_size=ws, drop_last=drop_last))
            got = len(list(batch_slices(count, bs, drop_last)))
            assert got == num_batches(n, bs, train=train, world_size=ws, rank=r, drop_last=drop_last)


def test_batch_slices():
    assert [(s.start, s.stop) for s in batch_slices(10, 4, False)] == [(0, 4), (4, 8), (8, 10)]
    assert [(s.start, s.stop) for s in batch_slices(10, 4, True)] == [(0, 4), (4, 8)]


def test_sample_bits_per_sample_and_seeded():
    idx = np.arange(1000)
    bits = sample_bits(3, 4, idx)
    assert bits.dtype == np.uint64 and len(set(bits.tolist())) == 1000
    assert np.array_equal(sample_bits(3, 4, idx[::-1]), bits[::-1])  # depends on the index, not the position
    assert not np.array_equal(sample_bits(3, 5, idx), bits)
    assert not np.array_equal(sample_bits(4, 4, idx), bits)
    assert np.array_equal(sample_bits(-1, 0, idx[:3]), sample_bits(2**64 - 1, 0, idx[:3]))


def test_crop_flip_params_ranges_and_balance():
    dy, dx, flip = crop_flip_params(sample_bits(0, 0, np.arange(20000)), 7, 5)
    assert set(dy.tolist()) == set(range(7)) and set(dx.tolist()) == set(range(5))
    assert abs(flip.mean() - 0.5) < 0.02
    assert abs(np.corrcoef(dy, dx)[0, 1]) < 0.03
    per_sample = crop_flip_params(sample_bits(0, 0, np.arange(4)), np.array([1, 2, 3, 4]), 1)
    assert (per_sample[0] < np.array([1, 2, 3, 4])).all() and (per_sample[1] == 0).all()
