"""The engine against a slow, obviously-correct Python reference of every metric.

The reference ranks the database explicitly (numpy stable argsort, or lexsort for the optimistic / pessimistic
bounds, or every tie order for `expected`) and computes each metric from the ranked relevance list.
"""
import itertools
import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shc import _engine
from shc.codes import unpack_codes
from shc.metrics import TIES, buckets, evaluate, rank_plan, report_from_buckets

BITS = [1, 7, 8, 31, 32, 33, 64, 65, 128, 1000]


# ------------------------------------------------------------------------------------------------ reference

def ref_distances(query_bits, db_bits):
    return (query_bits[:, None, :] != db_bits[None, :, :]).sum(-1)


def ref_relevance(query_labels, db_labels):
    if query_labels.ndim == 1:
        return query_labels[:, None] == db_labels[None, :]
    return (query_labels.astype(int) @ db_labels.astype(int).T) > 0


def ref_order(dist, rel, ties):
    idx = np.arange(dist.size)
    if ties == "index":
        return np.argsort(dist, kind="stable")
    if ties == "optimistic":
        return np.lexsort((idx, ~rel, dist))
    return np.lexsort((idx, rel, dist))  # pessimistic


def ref_ap(ranked_rel, k):
    top = ranked_rel[:min(k, ranked_rel.size)].astype(float)
    hits = np.cumsum(top)
    if hits.size == 0 or hits[-1] == 0:
        return 0.0
    return float(np.sum(top * hits / np.arange(1, top.size + 1)) / hits[-1])


def ref_hits(ranked_rel, k):
    return float(ranked_rel[:min(k, ranked_rel.size)].sum())


def all_tie_orders(dist):
    """Every ranking that sorts by distance (orders inside each tie), for exhaustive expectations."""
    groups = [np.flatnonzero(dist == d) for d in np.unique(dist)]
    for perms in itertools.product(*(itertools.permutations(g) for g in groups)):
        yield np.concatenate(perms)


def ref_query_metrics(dist, rel, ties, ks, hit_ks):
    """AP@k for ks and hits@k for hit_ks of one query."""
    if ties == "expected":
        orders = list(all_tie_orders(dist))
        ap = [np.mean([ref_ap(rel[o], k) for o in orders]) for k in ks]
        hits = [np.mean([ref_hits(rel[o], k) for o in orders]) for k in hit_ks]
        return ap, hits
    ranked = rel[ref_order(dist, rel, ties)]
    return [ref_ap(ranked, k) for k in ks], [ref_hits(ranked, k) for k in hit_ks]


def ref_report(query_bits, db_bits, query_labels, db_labels, topk, ties, radius, pr_ranks):
    dist = ref_distances(query_bits, db_bits)
    rel = ref_relevance(query_labels, db_labels)
    Q, N = dist.shape
    q = query_bits.shape[1]
    ks = [N if k == "all" else int(k) for k in topk]
    ap, hits = [], []
    for i in range(Q):
        a, h = ref_query_metrics(dist[i], rel[i], ties, ks, ks + list(pr_ranks))
        ap.append(a)
        hits.append(h)
    ap, hits = np.array(ap), np.array(hits)
    total = rel.sum(1)
    kk = np.minimum(np.array(ks + list(pr_ranks)), N)
    precision_k = (hits / kk).mean(0)
    recall_k = np.where(total[:, None] > 0, hits / np.maximum(total[:, None], 1), 0).mean(0)
    rp, rr = [], []
    for rho in range(q + 1):
        inside = dist <= rho
        got = (inside & rel).sum(1)
        retrieved = inside.sum(1)
        rp.append(np.where(retrieved > 0, got / np.maximum(retrieved, 1), 0).mean())
        rr.append(np.where(total > 0, got / np.maximum(total, 1), 0).mean())
    K = len(ks)
    return dict(ap=ap, mAP=ap.mean(0), precision_at_k=precision_k[:K], recall_at_k=recall_k[:K],
                rank_precision=precision_k[K:], rank_recall=recall_k[K:], radius_precision=np.array(rp),
                radius_recall=np.array(rr), queries_without_relevant=int((total == 0).sum()),
                precision_at_radius=rp[min(radius, q)], recall_at_radius=rr[min(radius, q)])


def assert_matches_reference(report, ref, atol=1e-10):
    np.testing.assert_allclose(report.ap, ref["ap"], rtol=0, atol=atol)
    np.testing.assert_allclose(list(report.mAP.values()), ref["mAP"], rtol=0, atol=atol)
    np.testing.assert_allclose(list(report.precision_at_k.values()), ref["precision_at_k"], rtol=0, atol=atol)
    np.testing.assert_allclose(list(report.recall_at_k.values()), ref["recall_at_k"], rtol=0, atol=atol)
    np.testing.assert_allclose(report.pr_curve_rank["precision"], ref["rank_precision"], rtol=0, atol=atol)
    np.testing.assert_allclose(report.pr_curve_rank["recall"], ref["rank_recall"], rtol=0, atol=atol)
    np.testing.assert_allclose(report.pr_curve_radius["precision"], ref["radius_precision"], rtol=0, atol=atol)
    np.testing.assert_allclose(report.pr_curve_radius["recall"], ref["radius_recall"], rtol=0, atol=atol)
    assert report.queries_without_relevant == ref["queries_without_relevant"]
    assert report.precision_at_radius == pytest.approx(ref["precision_at_radius"], abs=atol)
    assert report.recall_at_radius == pytest.approx(ref["recall_at_radius"], abs=atol)


# ------------------------------------------------------------------------------------------ random cases

@st.composite
def cases(draw, max_n=40, max_q=6):
    q = draw(st.sampled_from(BITS))
    Q = draw(st.integers(1, max_q))
    N = draw(st.integers(1, max_n))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    # heavy ties: draw codes from a small pool of base codes, flipping a few bits
    pool = rng.random((draw(st.integers(1, 4)), q)) < 0.5
    def codes(n):
        base = pool[rng.integers(0, len(pool), n)]
        flips = rng.random((n, q)) < draw(st.sampled_from([0.0, 0.02, 0.5]))
        return base ^ flips
    qb, db = codes(Q), codes(N)
    label_kind = draw(st.sampled_from(["ids", "onehot", "multi"]))
    C = draw(st.integers(1, 5))
    if label_kind == "multi":
        density = draw(st.sampled_from([0.0, 0.2, 0.5]))
        ql, dl = rng.random((Q, C)) < density, rng.random((N, C)) < density  # includes all-zero rows
    else:
        ql, dl = rng.integers(0, C, Q), rng.integers(0, C, N)
    topk = draw(st.lists(st.sampled_from([1, N, N + 3, "all", max(1, N // 2)]), min_size=1, max_size=4, unique=True))
    pr_ranks = sorted(set(draw(st.lists(st.integers(1, N + 2), min_size=1, max_size=5))))
    return qb, db, ql, dl, label_kind, topk, pr_ranks


def to_form(bits, form):
    """The same codes in one of the accepted input forms."""
    if form == "pm1":
        return np.where(bits, 1, -1).astype(np.int8)
    if form == "01":
        return bits.astype(np.float32)
    if form == "real":
        return np.where(bits, 0.3, -2.5)
    return bits  # bool


def engine_labels(labels, kind):
    if kind == "onehot":
        return np.eye(int(labels.max()) + 1, dtype=np.int64)[labels] if labels.size else labels
    return labels


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=cases(), ties=st.sampled_from(["index", "optimistic", "pessimistic"]),
       form=st.sampled_from(["pm1", "01", "real", "bool"]), radius=st.integers(0, 3))
def test_engine_matches_reference(case, ties, form, radius):
    qb, db, ql, dl, kind, topk, pr_ranks = case
    if kind == "onehot":  # both sides need the same number of columns
        C = int(max(ql.max(), dl.max())) + 1
        qlab, dlab = np.eye(C, dtype=int)[ql], np.eye(C, dtype=int)[dl]
    else:
        qlab, dlab = ql, dl
    report = evaluate(to_form(qb, form), to_form(db, form), qlab, dlab, topk=topk, ties=ties, radius=radius,
                      pr_ranks=pr_ranks)
    ref = ref_report(qb, db, ql, dl, topk, ties, radius, pr_ranks)
    assert_matches_reference(report, ref)


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=cases(max_n=7, max_q=3))
def test_expected_ties_equal_exhaustive_enumeration(case):
    qb, db, ql, dl, kind, topk, pr_ranks = case
    report = evaluate(qb, db, ql if kind != "onehot" else ql, dl, topk=topk, ties="expected", pr_ranks=pr_ranks)
    ref = ref_report(qb, db, ql, dl, topk, "expected", 2, pr_ranks)
    assert_matches_reference(report, ref, atol=1e-9)


def test_expected_ties_exhaustive_on_hand_made_heavy_tie():
    # 7 items in 2 buckets of mixed relevance: every cut-off inside the big bucket
    qb = np.zeros((1, 8), bool)
    db = np.zeros((7, 8), bool)
    db[5:, 0] = True
    ql, dl = np.array([1]), np.array([1, 0, 1, 0, 0, 1, 1])
    topk = [1, 2, 3, 4, 5, 6, 7]
    report = evaluate(qb, db, ql, dl, topk=topk, ties="expected", pr_ranks=topk)
    ref = ref_report(qb, db, ql, dl, topk, "expected", 2, topk)
    assert_matches_reference(report, ref, atol=1e-12)


def test_deephash_worked_example():
    # one query, 32 codes tied with it, 16 relevant (retrieval-metrics.md): AP 1.000 / 0.322 / tie-aware 0.549
    qc, dc = np.ones((1, 16)), np.ones((32, 16))
    ql, dl = np.array([0]), np.array([0] * 16 + [1] * 16)
    got = {t: evaluate(qc, dc, ql, dl, topk=["all"], ties=t).mAP["all"] for t in TIES}
    assert got["optimistic"] == pytest.approx(1.0) and got["index"] == pytest.approx(1.0)
    assert got["pessimistic"] == pytest.approx(sum(i / (16 + i) for i in range(1, 17)) / 16, abs=1e-12)
    assert round(got["pessimistic"], 3) == 0.322
    assert round(got["expected"], 3) == 0.549


def test_expected_large_buckets_stay_accurate():
    # 3,000 tied items: the closed forms must match a direct O(N) evaluation of the same expectation
    rng = np.random.default_rng(3)
    N = 3000
    rel = rng.random(N) < 0.3
    qc, dc = np.ones((1, 8)), np.ones((N, 8))
    dc[: N // 3, 0] = -1  # two buckets: 1000 at distance 1, 2000 at distance 0
    report = evaluate(qc, dc, np.array([1]), rel.astype(int), topk=["all"], ties="expected")
    dist = (dc[:, 0] < 0).astype(int)
    # E[AP] over the full ranking: sum over buckets of (r/n) sum_j (R_d + 1 + (j-1)(r-1)/(n-1)) / (N_d + j), / R
    total, Nd, Rd = 0.0, 0, 0
    for d in (0, 1):
        n_d, r_d = int((dist == d).sum()), int(rel[dist == d].sum())
        beta = (r_d - 1) / (n_d - 1)
        total += r_d / n_d * math.fsum((Rd + 1 + (j - 1) * beta) / (Nd + j) for j in range(1, n_d + 1))
        Nd, Rd = Nd + n_d, Rd + r_d
    assert report.mAP["all"] == pytest.approx(total / rel.sum(), abs=1e-12)


# ----------------------------------------------------------------------------- threads, ISA, bucket reuse

def _medium_case(seed=0, Q=70, N=3000, q=48, multi=False):
    rng = np.random.default_rng(seed)
    centers = rng.random((6, q)) < 0.5
    qcls, dcls = rng.integers(0, 6, Q), rng.integers(0, 6, N)
    qb = centers[qcls] ^ (rng.random((Q, q)) < 0.15)
    db = centers[dcls] ^ (rng.random((N, q)) < 0.15)
    if multi:
        return qb, db, rng.random((Q, 9)) < 0.25, rng.random((N, 9)) < 0.25
    return qb, db, qcls, dcls


def _comparable(report):
    d = report.to_dict()
    for key in ("seconds", "threads"):
        d.pop(key)
    return d


@pytest.mark.parametrize("ties", TIES)
@pytest.mark.parametrize("multi", [False, True])
def test_thread_count_does_not_change_results(ties, multi):
    qb, db, ql, dl = _medium_case(multi=multi)
    one = evaluate(qb, db, ql, dl, ties=ties, threads=1)
    many = evaluate(qb, db, ql, dl, ties=ties, threads=7)
    assert _comparable(one) == _comparable(many)  # bit-identical
    np.testing.assert_array_equal(one.ap, many.ap)


@pytest.mark.parametrize("ties", ["expected", "optimistic", "pessimistic"])
def test_report_from_buckets_equals_evaluate(ties):
    qb, db, ql, dl = _medium_case(seed=1, multi=True)
    direct = evaluate(qb, db, ql, dl, ties=ties)
    n, r = buckets(qb, db, ql, dl)
    assert n.shape == (qb.shape[0], qb.shape[1] + 1)
    np.testing.assert_array_equal(n.sum(1), db.shape[0])
    via = report_from_buckets(n, r, ties=ties)
    assert _comparable(via) | {"seconds": 0} == _comparable(direct) | {"seconds": 0}


def test_report_from_sharded_buckets_equals_evaluate():
    qb, db, ql, dl = _medium_case(seed=2)
    n1, r1 = buckets(qb, db[:1000], ql, dl[:1000])
    n2, r2 = buckets(qb, db[1000:], ql, dl[1000:])
    via = report_from_buckets(n1 + n2, r1 + r2, ties="expected")
    assert _comparable(via) == _comparable(evaluate(qb, db, ql, dl, ties="expected"))


def test_report_from_buckets_index_ties_uses_supplied_stats():
    qb, db, ql, dl = _medium_case(seed=4, Q=12, N=500)
    topk, pr = (10, "all"), [1, 50, 500]
    direct = evaluate(qb, db, ql, dl, topk=topk, ties="index", pr_ranks=pr)
    ap_ranks, hit_ranks = rank_plan(db.shape[0], topk, pr)
    dist, rel = ref_distances(qb, db), ref_relevance(ql, dl)
    ranked = [rel[i][np.argsort(dist[i], kind="stable")] for i in range(len(qb))]
    index_ap = np.array([[ref_ap(x, k) for k in ap_ranks] for x in ranked])
    index_hits = np.array([[ref_hits(x, k) for k in hit_ranks] for x in ranked])
    n, r = buckets(qb, db, ql, dl)
    via = report_from_buckets(n, r, topk=topk, ties="index", pr_ranks=pr, index_ap=index_ap, index_hits=index_hits)
    for key in direct.mAP:
        assert via.mAP[key] == pytest.approx(direct.mAP[key], abs=1e-12)
    for key in ("precision", "recall"):
        assert via.pr_curve_rank[key] == pytest.approx(direct.pr_curve_rank[key], abs=1e-12)
    with pytest.raises(ValueError, match="index_ap"):
        report_from_buckets(n, r, ties="index")


@pytest.mark.parametrize("q", BITS + [2, 63, 127, 129, 255, 256, 257, 513, 1024, 4000, 32767])
def test_every_isa_path_gives_reference_distances(q, restore_isa):
    rng = np.random.default_rng(q)
    qb, db = rng.random((3, q)) < 0.5, rng.random((37, q)) < 0.5  # 37: vector bodies and scalar tails
    expected = ref_distances(qb, db)
    for isa in _engine.runnable_isas():
        _engine.set_isa(isa)
        n, _ = buckets(qb, db, np.zeros(3, int), np.zeros(37, int))
        np.testing.assert_array_equal(n, [np.bincount(row, minlength=q + 1) for row in expected], err_msg=isa)
        from shc.metrics import search
        idx, dist = search(qb, db, 37)
        np.testing.assert_array_equal(dist, np.take_along_axis(expected, idx, 1), err_msg=isa)


def test_set_isa_rejects_unknown_and_unsupported(restore_isa):
    with pytest.raises(ValueError, match="unknown ISA"):
        _engine.set_isa("sse9")
    if _engine.best_isa() != "avx512":
        with pytest.raises(ValueError, match="cannot run"):
            _engine.set_isa("avx512")


def test_packbits_input_equals_unpacked(restore_isa):
    qb, db, ql, dl = _medium_case(seed=5, Q=20, N=300, q=45)
    a = evaluate(qb, db, ql, dl)
    b = evaluate(np.packbits(qb, axis=1), np.packbits(db, axis=1), ql, dl, bits=45)
    assert a.mAP == b.mAP
    np.testing.assert_array_equal(unpack_codes(*_pack(qb)), qb)


def _pack(bits):
    from shc.codes import pack_codes
    return pack_codes(bits)


@pytest.mark.parametrize("density", [0.02, 0.5, 1.0])
def test_every_isa_path_gives_reference_index_ranking(density, restore_isa):
    # the index-ties walks have a portable and an AVX2 path; relevance density changes how many items the
    # walk visits (sparse: few; dense: nearly every item)
    rng = np.random.default_rng(int(density * 100))
    qb = rng.random((5, 12)) < 0.5
    db = (rng.random((1100, 12)) < 0.5)  # > one 1024-item block, several 128-item chunks, heavy ties
    ql, dl = rng.random((5, 3)) < 0.6, rng.random((1100, 3)) < density
    ref = ref_report(qb, db, ql, dl, [7, 500, "all"], "index", 2, [1, 300, 1100])
    for isa in _engine.runnable_isas():
        _engine.set_isa(isa)
        report = evaluate(qb, db, ql, dl, topk=[7, 500, "all"], pr_ranks=[1, 300, 1100])
        assert_matches_reference(report, ref)


@pytest.mark.parametrize("q", [16, 64, 65, 127, 128])
@pytest.mark.parametrize("labels", ["ids", "ids_past_uint16", "query_id_past_uint16", 5, 64, 65, 80, 128, 130])
def test_every_label_width_and_isa_gives_reference_metrics(q, labels, restore_isa):
    # the scan has an AVX2 batch kernel for q <= 127 with class ids < 65535 or 1- and 2-word label bitmaps
    # (<= 128 labels) and a generic path for the rest; 11 queries make a full batch of 8 and a short one, and
    # N leaves a tail past the last full 32-item group and the last 1024-item block
    rng = np.random.default_rng(q * 1000 + (labels if isinstance(labels, int) else len(labels)))
    qb, db = rng.random((11, q)) < 0.5, rng.random((1061, q)) < 0.5
    if labels == "ids":
        ql, dl = rng.integers(0, 7, 11), rng.integers(0, 7, 1061)
    elif labels == "ids_past_uint16":  # the database has class 65535 and above: the generic path
        ql, dl = rng.integers(65530, 65540, 11), rng.integers(65530, 65540, 1061)
    elif labels == "query_id_past_uint16":  # only the queries' classes are large: they match no item
        ql, dl = rng.integers(0, 7, 11), rng.integers(0, 7, 1061)
        ql[[2, 9]] = 65535, 70000
    else:  # labels spread over every word of the bitmaps, the last bit included
        ql, dl = rng.random((11, labels)) < 3 / labels, rng.random((1061, labels)) < 3 / labels
        dl[::7, labels - 1] = ql[::3, labels - 1] = True
    ref = ref_report(qb, db, ql, dl, [10, 300, "all"], "index", 2, [1, 500, 1061])
    for isa in _engine.runnable_isas():
        _engine.set_isa(isa)
        assert_matches_reference(evaluate(qb, db, ql, dl, topk=[10, 300, "all"], pr_ranks=[1, 500, 1061]), ref)


@pytest.mark.parametrize("q", [64, 200])
@pytest.mark.parametrize("topk", [[7], [7, 120], [7, "all"]])
def test_index_walk_few_and_many_buckets_every_isa(q, topk, restore_isa):
    # the index walk places a small k's few buckets one vector pass per bucket and a large k's many buckets with
    # a counting sort; byte keys (q <= 127) and two-byte keys (q = 200) each take both
    rng = np.random.default_rng(q + len(topk))
    qb, db = rng.random((5, q)) < 0.5, rng.random((3000, q)) < 0.5
    db[::3] = qb[rng.integers(0, 5, 1000)] ^ (rng.random((1000, q)) < 0.1)  # near items: small buckets first
    ql, dl = rng.integers(0, 4, 5), rng.integers(0, 4, 3000)
    ref = ref_report(qb, db, ql, dl, topk, "index", 2, [1, 2999])
    for isa in _engine.runnable_isas():
        _engine.set_isa(isa)
        assert_matches_reference(evaluate(qb, db, ql, dl, topk=topk, pr_ranks=[1, 2999]), ref)


@pytest.mark.parametrize("q, N", [(12, 2600), (1000, 20000)])
def test_index_hits_past_the_ap_cutoff_every_isa(q, N, restore_isa):
    # finite AP cut-offs: AP comes from the walk over the first buckets' keys, and every PR-grid rank past the
    # largest cut-off from the scan's histogram marks plus a walk inside one segment. q = 12: few buckets and
    # one mark per 1024-item block; q = 1000: marks every few blocks (their memory is bounded)
    rng = np.random.default_rng(q)
    qb = rng.random((4, q)) < 0.5
    db = np.where(rng.random((N, 1)) < 0.5, qb[0], ~qb[0]) ^ (rng.random((N, q)) < 0.3)  # clustered distances
    ql, dl = rng.integers(0, 3, 4), rng.integers(0, 3, N)
    grid = np.unique(np.concatenate([rng.integers(1, N + 1, 60), [1, 16, 17, 1023, 1024, 1025, N - 1, N]]))
    ref = ref_report(qb, db, ql, dl, [1, 37], "index", 2, grid)
    for isa in _engine.runnable_isas():
        _engine.set_isa(isa)
        assert_matches_reference(evaluate(qb, db, ql, dl, topk=[1, 37], pr_ranks=grid), ref)


@pytest.mark.parametrize("topk, pr", [((10, "all"), [1, 50, 500]), ((3, 40), [5, 60])])
def test_index_walk_from_top_k_entries_equals_evaluate(topk, pr):
    # what the GPU path hands over: each query's top-k items (stable ranking) listed in database-index order
    qb, db, ql, dl = _medium_case(seed=6, Q=9, N=500, q=10, multi=True)
    direct = evaluate(qb, db, ql, dl, topk=topk, ties="index", pr_ranks=pr)
    ap_ranks, hit_ranks = rank_plan(db.shape[0], topk, pr)
    k = int(max(ap_ranks.max(), hit_ranks.max()))
    dist, rel = ref_distances(qb, db), ref_relevance(ql, dl)
    top = np.sort(np.argsort(dist, axis=1, kind="stable")[:, :k], axis=1)
    entries = ((np.take_along_axis(dist, top, 1) << 1) | np.take_along_axis(rel, top, 1)).astype(np.uint16)
    n, r = buckets(qb, db, ql, dl)
    index_ap, index_hits = _engine.index_walk(entries, n, r, qb.shape[1], db.shape[0], ap_ranks, hit_ranks)
    np.testing.assert_allclose(index_ap, direct.ap, rtol=0, atol=1e-12)
    via = report_from_buckets(n, r, topk=topk, ties="index", pr_ranks=pr, index_ap=index_ap, index_hits=index_hits)
    assert _comparable(via) | {"seconds": 0} == _comparable(direct) | {"seconds": 0}
    with pytest.raises(ValueError, match="cover every rank"):
        _engine.index_walk(entries[:, : k - 1], n, r, qb.shape[1], db.shape[0], ap_ranks, hit_ranks)
