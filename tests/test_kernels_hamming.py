"""GPU Hamming ranking kernels vs the C++ engine (histograms, top-k) and numpy's stable argsort.

Without CUDA the kernels run in Triton's interpreter (set before the kernel module is imported).
"""
import os

import numpy as np
import pytest
import torch

if not torch.cuda.is_available():
    os.environ["TRITON_INTERPRET"] = "1"
pytest.importorskip("triton")

from shc import _engine  # noqa: E402
from shc.kernels import hamming  # noqa: E402

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"


def random_bits(rng, n, q, tied_fraction=0.3):
    """0/1 codes with a block of identical rows and near-duplicates: heavy ties."""
    bits = rng.integers(0, 2, (n, q)).astype(np.uint8)
    tied = int(n * tied_fraction)
    bits[:tied] = bits[0]
    bits[tied: 2 * tied, : q // 2] = bits[0, : q // 2]
    return bits


def make_case(q, multi_label, Q=21, N=700, n_labels=80, seed=0):
    rng = np.random.default_rng(seed)
    qb, dbb = random_bits(rng, Q, q), random_bits(rng, N, q)
    if multi_label:
        ql = (rng.random((Q, n_labels)) < 0.04).astype(np.uint8)
        dbl = (rng.random((N, n_labels)) < 0.04).astype(np.uint8)
        dbl[:5] = 0  # items without any label are relevant to nothing
    else:
        ql, dbl = rng.integers(0, 6, Q), rng.integers(0, 6, N)
    t = lambda a: torch.from_numpy(np.ascontiguousarray(a)).to(DEVICE)  # noqa: E731
    return t(qb), t(dbb), t(ql), t(dbl)


def words(codes01):
    return hamming.pack_bits(codes01.bool())


def engine_labels(rel, prefix):
    rel = rel.cpu().numpy()
    if rel.ndim == 1:
        return {f"{prefix}_ids": rel.astype(np.int32)}
    return {f"{prefix}_bitmaps": rel.view(np.uint64)}


def engine_buckets(qw, dbw, bits, q_rel, db_rel):
    return _engine.buckets(qw.cpu().numpy().view(np.uint64), dbw.cpu().numpy().view(np.uint64), bits,
                           **engine_labels(q_rel, "query"), **engine_labels(db_rel, "db"))


@pytest.mark.parametrize("multi_label", [False, True])
@pytest.mark.parametrize("q", [12, 16, 32, 48, 64, 100, 128, 130])
def test_triton_bucket_histograms_match_engine(q, multi_label):
    qb, dbb, ql, dbl = make_case(q, multi_label)
    qw, dbw = words(qb), words(dbb)
    q_rel, db_rel = hamming.label_relevance(ql), hamming.label_relevance(dbl)
    n, r = hamming.bucket_histograms(qw, dbw, q, q_rel, db_rel)
    n_ref, r_ref = engine_buckets(qw, dbw, q, q_rel, db_rel)
    assert n.dtype == torch.int64 and n.shape == (qb.shape[0], q + 1)
    np.testing.assert_array_equal(n.cpu().numpy(), n_ref)
    np.testing.assert_array_equal(r.cpu().numpy(), r_ref)
    assert r_ref.sum() > 0 and (n_ref.sum(1) == dbb.shape[0]).all()


def test_triton_bucket_histograms_split_database_atomics(monkeypatch):
    """Many programs per query (database split into chunks, counts added atomically) give the same counts."""
    monkeypatch.setattr(hamming, "_programs_wanted", lambda device: 64)
    qb, dbb, ql, dbl = make_case(64, False, Q=5, N=3000)
    qw, dbw = words(qb), words(dbb)
    n, r = hamming.bucket_histograms(qw, dbw, 64, ql, dbl, block_n=256)
    n_ref, r_ref = engine_buckets(qw, dbw, 64, ql.int(), dbl.int())
    np.testing.assert_array_equal(n.cpu().numpy(), n_ref)
    np.testing.assert_array_equal(r.cpu().numpy(), r_ref)


@pytest.mark.parametrize("q", [12, 64, 130])
@pytest.mark.parametrize("k", [1, 37, 700, 703])
def test_triton_topk_matches_engine_search(q, k):
    qb, dbb, _, _ = make_case(q, False)
    qw, dbw = words(qb), words(dbb)
    idx, dist = hamming.topk_search(qw, dbw, q, k)
    idx_ref, dist_ref = _engine.search(qw.cpu().numpy().view(np.uint64), dbw.cpu().numpy().view(np.uint64), q,
                                       min(k, dbb.shape[0]))
    np.testing.assert_array_equal(idx.cpu().numpy(), idx_ref)
    np.testing.assert_array_equal(dist.cpu().numpy(), dist_ref)


@pytest.mark.parametrize("multi_label", [False, True])
def test_triton_index_entries_are_the_topk_in_index_order(multi_label):
    """Entries (d << 1 | rel) of the stable-argsort top-k, listed in database-index order."""
    q, k = 32, 150
    qb, dbb, ql, dbl = make_case(q, multi_label)
    qw, dbw = words(qb), words(dbb)
    q_rel, db_rel = hamming.label_relevance(ql), hamming.label_relevance(dbl)
    n, _ = hamming.bucket_histograms(qw, dbw, q, q_rel, db_rel)
    entries = hamming.index_entries(qw, dbw, q, q_rel, db_rel, n, k).cpu().numpy()
    qb, dbb, ql, dbl = (x.cpu().numpy().astype(np.int64) for x in (qb, dbb, ql, dbl))
    dist = (qb[:, None, :] != dbb[None, :, :]).sum(-1)
    rel = (ql[:, None] == dbl[None, :]) if not multi_label else ((ql[:, None, :] & dbl[None, :, :]).sum(-1) > 0)
    for i in range(qb.shape[0]):
        top = np.sort(np.argsort(dist[i], kind="stable")[:k])
        np.testing.assert_array_equal(entries[i], (dist[i, top] << 1) | rel[i, top])


def test_triton_code_forms_and_packing():
    rng = np.random.default_rng(3)
    pm1 = torch.from_numpy(rng.choice([-1.0, 1.0], (6, 70))).to(DEVICE)
    bits01 = (pm1 > 0).to(torch.uint8)
    real = pm1 * torch.rand(6, 70, device=DEVICE)
    real[0, 0] = 0.0  # sign(0) = +1
    expected = pm1 > 0
    expected[0, 0] = True
    assert torch.equal(hamming.code_bits(pm1), pm1 > 0)
    assert torch.equal(hamming.code_bits(bits01), pm1 > 0)
    assert torch.equal(hamming.code_bits(pm1 > 0), pm1 > 0)
    assert torch.equal(hamming.code_bits(real), expected)
    w = hamming.pack_bits(expected).cpu().numpy().view(np.uint64)
    unpacked = np.array([[(int(w[i, j // 64]) >> (j % 64)) & 1 for j in range(70)] for i in range(6)])
    np.testing.assert_array_equal(unpacked, expected.cpu().numpy())
    idx, dist = hamming.search_cuda(pm1, pm1, 6)
    np.testing.assert_array_equal(dist[:, 0].cpu().numpy(), 0)


def test_kernel_hamming_rejects_bad_input():
    qb, dbb, ql, dbl = make_case(16, False, Q=3, N=10)
    qw, dbw = words(qb), words(dbb)
    with pytest.raises(TypeError, match="int64"):
        hamming.bucket_histograms(qw.int(), dbw, 16)
    with pytest.raises(ValueError, match="bits"):
        hamming.bucket_histograms(qw, dbw, 65)
    with pytest.raises(ValueError, match="both"):
        hamming.bucket_histograms(qw, dbw, 16, ql, None)
    with pytest.raises(ValueError, match="positive"):
        hamming.topk_search(qw, dbw, 16, 0)
    with pytest.raises(ValueError, match="bits"):
        hamming.search_cuda(qb, dbb[:, :8], 3)
    with pytest.raises(ValueError, match="NaN"):
        hamming.code_bits(torch.tensor([[1.0, float("nan")]]))
    with pytest.raises(ValueError, match="uint8 values from 0 to 200 are not binary codes.*--bits"):
        hamming.code_bits(torch.tensor([[0, 200]], dtype=torch.uint8))  # np.packbits bytes, not bits
    with pytest.raises(ValueError, match="query codes: int64 values from 0 to 2 .*floating-point"):
        hamming.code_bits(torch.tensor([[0, 1, 2]]), "query codes")
    with pytest.raises(ValueError, match="non-negative"):
        hamming.label_relevance(torch.tensor([0, -1]))
    with pytest.raises(TypeError, match="integers"):
        hamming.label_relevance(torch.tensor([0.5, 1.0]))


@pytest.mark.parametrize("ties", ["index", "expected", "optimistic", "pessimistic"])
@pytest.mark.parametrize("multi_label", [False, True])
def test_triton_evaluate_equals_engine_evaluate(ties, multi_label):
    """Same Report, number for number, as shc.evaluate on the host (the reduction is the engine's own)."""
    from shc import metrics

    if ties == "index" and not hasattr(_engine, "index_walk"):
        pytest.skip("index ties on the GPU path need shc._engine.index_walk (engine hook pending)")
    qb, dbb, ql, dbl = make_case(48, multi_label, Q=30, N=600)
    topk, pr_ranks = (1, 100, 1000, "all"), np.array([1, 50, 300, 600])
    got = metrics.evaluate_cuda(qb, dbb, ql, dbl, topk=topk, ties=ties, pr_ranks=pr_ranks).to_dict()
    ref = metrics.evaluate(*(x.cpu().numpy() for x in (qb, dbb, ql, dbl)), topk=topk, ties=ties,
                           pr_ranks=pr_ranks).to_dict()
    for key in ("seconds", "threads"):
        got.pop(key, None), ref.pop(key, None)
    assert got == ref
    assert 0 < got["mAP"]["all"] < 1
