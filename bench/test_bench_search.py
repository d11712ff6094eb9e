"""shc.search (top-k Hamming search) on every popcount path this CPU has, and faiss IndexBinaryFlat, same run.

    pytest bench/test_bench_search.py --benchmark-only

The engine picks its popcount path at load time (best_isa); this checks, per code width, that the path it picks
is the fastest one here (within 10%: the machine is shared; asserted), and how the engine compares with faiss's k-NN.
Database 117,218 codes (MSCOCO-sized), 500 queries, k = 100.
"""
import numpy as np
import pytest

from shc import _engine
from shc.metrics import search

N, Q, K = 117_218, 500, 100
WIDTHS = (64, 128, 256, 512, 1024)
ROUNDS = 5
PATHS = _engine.runnable_isas()[1:]  # generic (no POPCNT) is left out: no x86-64 CPU in use lacks it
RESULTS = {}  # bits -> {contender: seconds}


@pytest.fixture(scope="module", params=WIDTHS)
def codes(request):
    bits = request.param
    rng = np.random.default_rng(bits)
    return bits, np.packbits(rng.random((Q, bits)) < 0.5, axis=1), np.packbits(rng.random((N, bits)) < 0.5, axis=1)


@pytest.mark.parametrize("isa", PATHS)
def test_search_path(benchmark, codes, isa, restore_isa):
    bits, qc, dc = codes
    _engine.set_isa(isa)
    benchmark.group = f"search {bits} bits"
    idx, dist = benchmark.pedantic(search, args=(qc, dc, K), kwargs={"bits": bits}, rounds=ROUNDS, iterations=1)
    assert idx.shape == (Q, K) and np.all(np.diff(dist.astype(int), axis=1) >= 0)
    benchmark.extra_info.update({"isa": isa, "bits": bits})
    times = RESULTS.setdefault(bits, {})
    times[isa] = benchmark.stats.stats.min
    if all(path in times for path in PATHS):
        # the path chosen at load time is within 10% of the fastest one
        fastest = min(PATHS, key=times.get)
        assert times[PATHS[-1]] <= 1.1 * times[fastest], f"{bits} bits: {PATHS[-1]} slower than {fastest}: {times}"


def test_search_faiss(benchmark, codes):
    faiss = pytest.importorskip("faiss")
    bits, qc, dc = codes
    index = faiss.IndexBinaryFlat(bits)
    index.add(dc)
    faiss.omp_set_num_threads(_engine.default_threads())
    benchmark.group = f"search {bits} bits"
    dist, _ = benchmark.pedantic(index.search, args=(qc, K), rounds=ROUNDS, iterations=1)
    # same distances as the engine's (the indices may differ among equal distances)
    np.testing.assert_array_equal(dist, search(qc, dc, K, bits=bits)[1])
    RESULTS.setdefault(bits, {})["faiss"] = benchmark.stats.stats.min


@pytest.fixture(scope="module", autouse=True)
def summary_table(request):
    yield
    lines = [f"search, {Q} queries x {N} codes, k={K}, {_engine.default_threads()} threads (ms, best of {ROUNDS}); "
             f"default path {_engine.best_isa()}"]
    for bits, r in RESULTS.items():
        cells = "  ".join(f"{k} {v * 1e3:7.1f}" for k, v in r.items())
        ratio = f"  faiss/engine {r['faiss'] / r[_engine.best_isa()]:.1f}x" if "faiss" in r and _engine.best_isa() in r else ""
        lines.append(f"  {bits:5d} bits: {cells}{ratio}")
    request.config.bench_summary_lines.extend(lines)
