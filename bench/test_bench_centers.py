"""Stage-2 speed: MDS + SHC centers (Numba, warm cache) against the public-structure NumPy baseline.

    pytest bench/test_bench_centers.py --benchmark-columns=min,mean,rounds        (~1 minute)
    SHC_BENCH_COLD=1 pytest bench/test_bench_centers.py -k cold                   (cold Numba compile, ~30-60 s)

Seconds are what shc-centers reports as `seconds` (the generator call). The baseline (shc.centers._reference:
explicit inverse per inner iteration, every center every sweep, Python loops) runs on the small case in the same
run. Public implementation, measured by the issue author on one core: C=100 -> 268 s / 424 s / 85 s at 16/32/64
bits; C=196 did not finish in 720 s. /proc/loadavg is recorded with every result.
"""
import os
import subprocess
import sys
import time

import numpy as np
import pytest

from shc.centers import distance_stats, gv_distance, mds_centers, semantic_loss, shc_centers
from shc.centers._reference import mds_reference, shc_reference
from shc.centers.mds import mds_start

PUBLIC_SECONDS = {(100, 16): 268.0, (100, 32): 424.0, (100, 64): 85.0, (196, 64): "unfinished after 720 s"}


def loadavg():
    with open("/proc/loadavg") as f:
        return f.read().strip()


def hierarchy_similarity(classes, group=5, seed=0):
    rng = np.random.default_rng(seed)
    sup = np.arange(classes) // group
    s = np.where(sup[:, None] == sup[None, :], 0.6, -0.2) + 0.05 * rng.standard_normal((classes, classes))
    np.fill_diagonal(s, 1.0)
    return s


@pytest.fixture(scope="module", autouse=True)
def warm_numba():
    mds_centers(20, 16, init="hadamard")
    shc_centers(hierarchy_similarity(20), 16)


def timed(fn, *args, **kw):
    start = time.perf_counter()
    out = fn(*args, **kw)
    return out, time.perf_counter() - start


@pytest.mark.parametrize("classes, bits", [(100, 16), (100, 32), (100, 64), (196, 64), (555, 64)])
def test_bench_mds_plus_shc(benchmark, classes, bits):
    s = hierarchy_similarity(classes)
    seconds = {}

    def run():
        init, seconds["mds"] = timed(mds_centers, classes, bits)
        h, seconds["shc"] = timed(shc_centers, s, bits, init=init)
        return init, h

    init, h = benchmark.pedantic(run, rounds=1 if classes > 200 else 3, iterations=1)
    d = gv_distance(bits, classes)
    benchmark.extra_info.update(
        loadavg=loadavg(), d=d, min_distance=distance_stats(h)[0], mds_seconds=seconds["mds"],
        shc_seconds=seconds["shc"], loss_mds=semantic_loss(s, init), loss_shc=semantic_loss(s, h),
        public_seconds=PUBLIC_SECONDS.get((classes, bits)))
    assert distance_stats(init)[0] >= d and distance_stats(h)[0] >= d
    assert semantic_loss(s, h) <= semantic_loss(s, init)


@pytest.mark.parametrize("impl", ["numba", "numpy-baseline"])
def test_bench_small_case_vs_baseline(benchmark, impl):
    """C = 40, q = 16 from the plain Hadamard start (the ADMM has centers to repair), then SHC."""
    classes, bits = 40, 16
    d = gv_distance(bits, classes)
    s = hierarchy_similarity(classes)
    start = mds_start(classes, bits, d, 0, "hadamard", 1)
    if impl == "numba":
        def run():
            init = mds_centers(classes, bits, seed=0, init="hadamard")
            return init, shc_centers(s, bits, init=init)
    else:
        def run():
            init = mds_reference(start, d)
            return init, shc_reference(s, init, d)
    init, h = benchmark.pedantic(run, rounds=1 if impl != "numba" else 5, iterations=1)
    benchmark.extra_info.update(loadavg=loadavg(), d=d, mds_min=distance_stats(init)[0],
                                mds_mean_distance=distance_stats(init)[1], loss_mds=semantic_loss(s, init),
                                loss_shc=semantic_loss(s, h), min_distance=distance_stats(h)[0])
    assert distance_stats(h)[0] >= d


@pytest.mark.skipif(os.environ.get("SHC_BENCH_COLD") != "1", reason="set SHC_BENCH_COLD=1 (compiles from scratch)")
def test_bench_cold_compile(benchmark, tmp_path):
    """First call in a fresh process with an empty Numba cache: compile + a tiny MDS and SHC run."""
    code = ("import numpy as np; from shc.centers import mds_centers, shc_centers; "
            "mds_centers(20, 16, init='hadamard'); shc_centers(np.eye(20), 16)")
    env = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path / "numba")}

    def run():
        subprocess.run([sys.executable, "-c", code], env=env, check=True)

    benchmark.pedantic(run, rounds=1, iterations=1)
    benchmark.extra_info["loadavg"] = loadavg()
