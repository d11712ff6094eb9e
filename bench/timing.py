"""The benchmarks' shared wall-clock helper (timings run in-process; compare them as ratios taken in one run)."""
import time


def best_of(fn, rounds=3, warmup=False):
    """The least wall time, in seconds, of ``rounds`` calls of ``fn()``, after one untimed call when ``warmup``."""
    if warmup:
        fn()
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)
