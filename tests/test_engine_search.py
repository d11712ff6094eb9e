"""shc.search against a stable argsort of the reference distances."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shc.metrics import search


@settings(max_examples=150, deadline=None)
@given(q=st.sampled_from([1, 7, 8, 33, 64, 65, 128, 1000]), Q=st.integers(1, 9), N=st.integers(1, 300),
       k=st.integers(1, 310), pool=st.integers(1, 5), seed=st.integers(0, 2**32 - 1))
def test_search_equals_stable_argsort(q, Q, N, k, pool, seed):
    rng = np.random.default_rng(seed)
    base = rng.random((pool, q)) < 0.5  # few distinct codes: heavy ties
    qb = base[rng.integers(0, pool, Q)] ^ (rng.random((Q, q)) < 0.05)
    db = base[rng.integers(0, pool, N)] ^ (rng.random((N, q)) < 0.05)
    order, dist = _stable_top_k(qb, db, k)
    idx, d = search(np.where(qb, 1, -1), np.where(db, 1, -1), k)
    assert idx.dtype == np.int64 and d.dtype == np.int32 and idx.shape == (Q, min(k, N))
    np.testing.assert_array_equal(idx, order)
    np.testing.assert_array_equal(d, dist)


def _stable_top_k(qb, db, k):
    dist = (qb[:, None, :] != db[None]).sum(-1)
    order = np.argsort(dist, axis=1, kind="stable")[:, :k]
    return order, np.take_along_axis(dist, order, 1)


@pytest.mark.parametrize("q", [16, 64, 128, 256, 320, 512, 1024])
@pytest.mark.parametrize("k", [1, 100, 2500])
def test_search_many_blocks_every_isa(q, k, restore_isa):
    """Several database blocks searched by tiles of queries (7: one partial tile), runs of 64 items skipped
    before the cut-off, on every popcount path this CPU has."""
    from shc import _engine
    rng = np.random.default_rng(q + k)
    base = rng.random((3, q)) < 0.5
    qb = base[rng.integers(0, 3, 7)] ^ (rng.random((7, q)) < 0.1)
    db = base[rng.integers(0, 3, 2500)] ^ (rng.random((2500, q)) < 0.1)
    expected = _stable_top_k(qb, db, k)
    for isa in _engine.runnable_isas():
        _engine.set_isa(isa)
        idx, d = search(qb, db, k)
        np.testing.assert_array_equal(idx, expected[0], err_msg=isa)
        np.testing.assert_array_equal(d, expected[1], err_msg=isa)


def test_search_threads_identical():
    rng = np.random.default_rng(0)
    qc, dc = rng.choice([-1, 1], (100, 32)), rng.choice([-1, 1], (5000, 32))
    a = search(qc, dc, 50, threads=1)
    b = search(qc, dc, 50, threads=5)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
