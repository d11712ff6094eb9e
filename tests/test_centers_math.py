"""Stage 2 (hash centers): GV bound, CSQ, MDS and SHC — exact values and behaviour against plain references."""
import warnings
from math import comb

import numpy as np
import pytest

from shc.centers import (center_report, csq_centers, distance_stats, gv_distance, make_centers, mds_centers,
                         pairwise_distances, semantic_loss, shc_centers)
from shc.centers._reference import mds_reference, shc_reference
from shc.centers.mds import mds_start


def hierarchy_similarity(classes, group, seed=0, noise=0.05):
    """S for classes grouped into super-classes of `group`: 0.6 within, −0.2 across, noisy, asymmetric, diag 1."""
    rng = np.random.default_rng(seed)
    sup = np.arange(classes) // group
    s = np.where(sup[:, None] == sup[None, :], 0.6, -0.2) + noise * rng.standard_normal((classes, classes))
    np.fill_diagonal(s, 1.0)
    return s, sup


# ---- Gilbert–Varshamov distance -------------------------------------------------------------------------------

@pytest.mark.parametrize("classes, expected", [(100, (4, 10, 24)), (196, (4, 10, 23)), (555, (3, 9, 21)),
                                               (80, (5, 11, 24)), (10, (6, 13, 28))])
def test_gv_distance_reference_table(classes, expected):
    assert tuple(gv_distance(q, classes) for q in (16, 32, 64)) == expected


@pytest.mark.parametrize("bits", [1, 2, 5, 12, 16, 33, 64, 128])
@pytest.mark.parametrize("classes", [2, 3, 10, 100, 555])
def test_gv_distance_is_smallest_d_with_volume_bound(bits, classes):
    if classes > 2 ** bits:
        pytest.skip("more classes than codes")
    d = gv_distance(bits, classes)
    volume = lambda r: sum(comb(bits, j) for j in range(r + 1))  # noqa: E731 — V(q, r), the definition
    assert volume(d - 1) * classes >= 2 ** bits
    assert d == 1 or volume(d - 2) * classes < 2 ** bits


@pytest.mark.parametrize("bits, classes, exc", [(4, 17, ValueError), (0, 10, ValueError), (16, 1, ValueError),
                                                (16.0, 10, TypeError), (True, 10, TypeError)])
def test_gv_distance_rejects_bad_requests(bits, classes, exc):
    with pytest.raises(exc):
        gv_distance(bits, classes)


# ---- CSQ ------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("bits, classes", [(16, 10), (16, 32), (32, 64), (64, 100)])
def test_csq_hadamard_centers_are_half_the_length_apart(bits, classes):
    h = csq_centers(classes, bits)
    assert h.dtype == np.int8 and h.shape == (classes, bits)
    dist = pairwise_distances(h)
    off = ~np.eye(classes, dtype=bool)
    # rows of [Had; −Had]: q/2 apart, except a row and its own negation (q apart)
    assert set(np.unique(dist[off])) <= {bits // 2, bits}
    assert np.all(dist[off] >= bits // 2)


@pytest.mark.filterwarnings("ignore:csq. minimum pairwise distance")
def test_csq_random_completion_is_balanced_and_seeded():
    h = csq_centers(100, 32, seed=3)
    assert np.all(h[64:].sum(axis=1) == 0)  # balanced rows beyond 2q
    assert np.array_equal(h, csq_centers(100, 32, seed=3))
    assert not np.array_equal(h, csq_centers(100, 32, seed=4))


def test_csq_reports_a_distance_shortfall():
    with pytest.warns(UserWarning, match="Gilbert-Varshamov"):
        h = csq_centers(100, 16)
    assert center_report(h)["meets_d"] is (distance_stats(h)[0] >= 4)
    with pytest.raises(ValueError, match="required d = 4"):
        csq_centers(100, 16, strict=True)


# ---- MDS ------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("classes, bits", [(10, 16), (100, 16), (100, 32), (100, 64), (196, 32), (100, 12),
                                           (100, 48), (555, 16)])
def test_mds_reaches_gv_distance(classes, bits):
    h = mds_centers(classes, bits, seed=0)
    assert h.dtype == np.int8 and h.shape == (classes, bits)
    assert set(np.unique(h)) == {-1, 1}
    assert distance_stats(h)[0] >= gv_distance(bits, classes)


@pytest.mark.parametrize("init", ["greedy", "hadamard"])
def test_mds_is_reproducible_from_seed(init):
    a = mds_centers(100, 16, seed=5, init=init)
    assert np.array_equal(a, mds_centers(100, 16, seed=5, init=init))
    assert not np.array_equal(a, mds_centers(100, 16, seed=6, init=init))


@pytest.mark.parametrize("classes, bits", [(100, 16), (100, 32)])
def test_mds_admm_repairs_the_plain_hadamard_start(classes, bits):
    d = gv_distance(bits, classes)
    assert distance_stats(mds_start(classes, bits, d, 0, "hadamard", 1))[0] < d  # the ADMM has work to do
    assert distance_stats(mds_centers(classes, bits, init="hadamard"))[0] >= d


@pytest.mark.parametrize("classes, bits, seed", [(12, 12, 0), (12, 12, 1), (16, 10, 0)])
def test_mds_matches_numpy_baseline_objective(classes, bits, seed):
    """Same start, same ADMM: both reach d, and the Numba version's objective (sum of the inner products between
    centers, i.e. mean distance) is no worse than the public-structure NumPy baseline's."""
    d = gv_distance(bits, classes)
    start = mds_start(classes, bits, d, seed, "hadamard", 1)
    assert distance_stats(start)[0] < d
    fast = mds_centers(classes, bits, seed=seed, init="hadamard")
    slow = mds_reference(start, d, max_sweeps=5)
    assert distance_stats(slow)[0] >= d and distance_stats(fast)[0] >= d
    assert distance_stats(fast)[1] >= distance_stats(slow)[1] - 0.05


def test_mds_impossible_request_raises_with_numbers():
    # A(8, 3) = 20 is the largest 8-bit code with distance 3; the optimiser cannot find it from this start
    with pytest.raises(ValueError, match=r"20 classes at 8 bits: best minimum pairwise distance \d < required d = 3"):
        mds_centers(20, 8, init="hadamard", max_sweeps=3)
    with pytest.raises(ValueError, match="cannot get distinct centers"):
        mds_centers(300, 8)


def test_mds_rejects_unknown_options():
    with pytest.raises(TypeError, match="unknown hyper-parameter"):
        mds_centers(10, 16, rho_zero=1.0)
    with pytest.raises(ValueError, match="init"):
        mds_centers(10, 16, init="magic")


# ---- SHC ------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("classes, bits, group", [(40, 16, 5), (100, 32, 5), (100, 16, 4)])
def test_shc_follows_the_class_hierarchy_and_keeps_d(classes, bits, group):
    s, sup = hierarchy_similarity(classes, group)
    init = mds_centers(classes, bits, seed=0)
    h = shc_centers(s, bits, init=init)
    d = gv_distance(bits, classes)
    assert distance_stats(h)[0] >= d
    assert semantic_loss(s, h) < semantic_loss(s, init)
    dist = pairwise_distances(h)
    same = (sup[:, None] == sup[None, :]) & ~np.eye(classes, dtype=bool)
    assert dist[same].mean() < dist[sup[:, None] != sup[None, :]].mean() - 1.0


def test_shc_default_init_is_mds_and_reproducible():
    s, _ = hierarchy_similarity(40, 5)
    assert np.array_equal(shc_centers(s, 16, seed=2), shc_centers(s, 16, init=mds_centers(40, 16, seed=2)))


@pytest.mark.parametrize("classes, bits, epochs", [(20, 16, 10), (24, 12, 6)])
def test_shc_matches_numpy_baseline(classes, bits, epochs):
    s, _ = hierarchy_similarity(classes, 4, seed=classes)
    init = mds_centers(classes, bits, seed=1)
    d = gv_distance(bits, classes)
    fast = shc_centers(s, bits, init=init, epochs=epochs, polish_passes=0)  # the public method
    slow = shc_reference(s, init, d, epochs=epochs)
    assert semantic_loss(s, fast) == pytest.approx(semantic_loss(s, slow), abs=1e-12)
    assert np.array_equal(fast, slow)


def test_shc_keeps_the_start_when_nothing_improves():
    s, _ = hierarchy_similarity(20, 4)
    init = mds_centers(20, 16)
    assert np.array_equal(shc_centers(s, 16, init=init, epochs=0, polish_passes=0), init)


def flip_descent_reference(s, start, d):
    """Obviously-correct feasible descent: try every single-bit flip in (center, bit) order, recompute the whole loss
    and every distance, take the flip when the loss drops and all pairs stay >= d; repeat until nothing changes."""
    s = (s + s.T) / 2
    h = np.array(start, dtype=np.float64)
    improved = True
    while improved:
        improved = False
        for i in range(h.shape[0]):
            for b in range(h.shape[1]):
                trial = h.copy()
                trial[i, b] = -trial[i, b]
                if (pairwise_distances(trial) + 10**6 * np.eye(len(h))).min() >= d and \
                        semantic_loss(s, trial) < semantic_loss(s, h) - 1e-12:
                    h, improved = trial, True
    return h


@pytest.mark.parametrize("classes, bits", [(10, 16), (12, 12), (20, 32)])
def test_shc_polish_matches_plain_descent_and_only_improves(classes, bits):
    s, _ = hierarchy_similarity(classes, 4, seed=classes)
    init = mds_centers(classes, bits, seed=0)
    d = gv_distance(bits, classes)
    admm = shc_centers(s, bits, init=init, polish_passes=0)
    polished = shc_centers(s, bits, init=init)
    assert np.array_equal(polished, flip_descent_reference(s, admm, d))
    assert distance_stats(polished)[0] >= d
    assert semantic_loss(s, polished) <= semantic_loss(s, admm)


def test_shc_asymmetric_similarity_equals_its_symmetric_part():
    s, _ = hierarchy_similarity(40, 5, noise=0.2)
    assert not np.allclose(s, s.T)
    assert np.array_equal(shc_centers(s, 16), shc_centers((s + s.T) / 2, 16))


@pytest.mark.parametrize("bad, match", [
    (np.ones((5, 4)), "square"), (np.ones(5), "square"), (np.ones((1, 1)), "at least 2"),
    (np.where(np.eye(6) > 0, np.nan, 0.0), "non-finite"), (np.full((6, 6), np.inf), "non-finite")])
def test_shc_rejects_bad_similarity(bad, match):
    with pytest.raises(ValueError, match=match):
        shc_centers(bad, 16)


def test_shc_rejects_bad_init_and_requests():
    s, _ = hierarchy_similarity(20, 4)
    with pytest.raises(ValueError, match="shape"):
        shc_centers(s, 16, init=np.ones((19, 16)))
    close = mds_centers(20, 16)
    close[1] = close[0]
    with pytest.raises(ValueError, match="shc init: .* 0 < required d = 6"):
        shc_centers(s, 16, init=close)
    with pytest.raises(ValueError, match="cannot get distinct centers"):
        shc_centers(np.eye(20), 4)
    with pytest.raises(TypeError, match="unknown hyper-parameter"):
        shc_centers(s, 16, gamma=1.0)
    with pytest.raises(TypeError, match="numeric"):
        shc_centers([["a", "b"], ["c", "d"]], 16)


# ---- registry and report --------------------------------------------------------------------------------------

def test_make_centers_dispatches():
    s, _ = hierarchy_similarity(20, 4)
    assert np.array_equal(make_centers("mds", 20, 16, seed=1), mds_centers(20, 16, seed=1))
    assert np.array_equal(make_centers("shc", 20, 16, similarity=s, seed=1), shc_centers(s, 16, seed=1))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert np.array_equal(make_centers("csq", 20, 16), csq_centers(20, 16))
    with pytest.raises(ValueError, match="similarity"):
        make_centers("shc", 20, 16)
    with pytest.raises(ValueError, match="20 classes were requested"):
        make_centers("shc", 20, 16, similarity=np.eye(10))
    with pytest.raises(ValueError, match="unknown center method"):
        make_centers("dpsh", 20, 16)


def test_center_report_numbers():
    h = np.array([[1, 1, 1, 1], [1, 1, -1, -1], [-1, -1, -1, -1]], dtype=np.int8)
    s = np.eye(3)
    r = center_report(h, d=2, similarity=s)
    assert (r["min_distance"], r["max_distance"], r["d_required"], r["meets_d"]) == (2, 4, 2, True)
    assert r["mean_distance"] == pytest.approx(8 / 3)
    g = h.astype(float) @ h.T / 4
    assert r["semantic_loss"] == pytest.approx(((s - g) ** 2).sum() / 9)
    assert center_report(h, d=3)["meets_d"] is False
    with pytest.raises(ValueError):
        center_report(np.zeros((3, 4)))
