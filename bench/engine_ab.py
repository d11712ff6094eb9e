"""Engine-only A/B timing of two shc builds on the same data, alternating, for a shared machine.

    python bench/engine_ab.py PKG_A PKG_B [--workload a_mscoco] [--ties index,expected] [--rounds 6] [--threads 1]
                              [--interleave]

PKG_A / PKG_B are directories holding a built ``shc`` package (e.g. a copy of ``shc/`` with its ``_engine*.so``
taken before and after a change). Each round runs every build in its own process (``python -S``, so an editable
install does not shadow it) on the first 800 queries of the workload, already packed, and keeps the best of 4
calls of ``shc._engine.evaluate``; the best over all rounds is printed per build and tie mode. Alternating in
separate processes makes the slow phases of a shared machine hit both builds alike. --interleave instead loads
both builds' engines into one process and alternates single calls (--rounds of them per build), printing the best
and the median: slow phases of a few seconds then hit both builds alike too, and the medians can be compared.
"""
import argparse
import glob
import importlib.util
import os
import site
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
QUERIES = 800



def load_packed(path):
    """The packed workload as a dict of arrays, read once (an NpzFile re-reads its zip member on every access)."""
    import numpy as np
    with np.load(path) as z:
        return {key: z[key] for key in z.files}


def timed_evaluate(engine, z, mode, threads):
    """Seconds of one shc._engine.evaluate call on the packed workload z (load_packed)."""
    start = time.perf_counter()
    engine.evaluate(z["q"], z["d"], int(z["bits"]), z.get("query_ids"), z.get("db_ids"), z.get("query_bitmaps"),
                    z.get("db_bitmaps"), mode, z["ap"], z["hit"], threads)
    return time.perf_counter() - start


def child(data, ties, threads):
    """In a build's own process: the best of 4 calls per tie mode."""
    from shc import _engine
    z = load_packed(data)
    for mode in ties.split(","):
        print(mode, min(timed_evaluate(_engine, z, mode, int(threads)) for _ in range(4)))


def packed_workload(name, path):
    """The workload's first QUERIES queries packed for the engine, cached in an .npz."""
    if os.path.exists(path):
        return path
    import numpy as np
    sys.path.insert(0, HERE)
    from test_bench_engine import make_workload
    from shc.metrics import _pack_pair, prepare_labels, rank_plan
    qc, dc, ql, dl, k = make_workload(name)
    q, d, bits = _pack_pair(qc[:QUERIES], dc, None)
    labels = prepare_labels(ql[:QUERIES], dl, QUERIES, d.shape[0])
    ap, hit = rank_plan(d.shape[0], (k,))
    np.savez(path, q=q, d=d, bits=bits, ap=ap, hit=hit, **{key: v for key, v in labels.items() if v is not None})
    return path


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("builds", nargs=2, metavar="PKG_DIR")
    p.add_argument("--workload", default="a_mscoco")
    p.add_argument("--ties", default="index")
    p.add_argument("--rounds", type=int, default=6)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--interleave", action="store_true", help="one process, single calls alternating")
    args = p.parse_args()
    data = packed_workload(args.workload, os.path.join(os.environ.get("TMPDIR", "/tmp"),
                                                       f"shc_ab_{args.workload}.npz"))
    print("load", open("/proc/loadavg").read().split()[0])
    if args.interleave:
        return interleave(args, data)
    best = {}
    for _ in range(args.rounds):
        for build in args.builds:
            env = dict(os.environ, PYTHONPATH=os.pathsep.join([os.path.abspath(build)] + site.getsitepackages()))
            out = subprocess.run([sys.executable, "-S", os.path.abspath(__file__), "--child", data, args.ties,
                                  str(args.threads)], env=env, check=True, capture_output=True, text=True).stdout
            for line in out.splitlines():
                mode, seconds = line.split()
                key = (build, mode)
                best[key] = min(best.get(key, 1e9), float(seconds))
    for (build, mode), seconds in sorted(best.items()):
        print(f"{build:40s} {mode:9s} best {seconds * 1e3:7.1f} ms")


def interleave(args, data):
    """Both builds' engines in this process (as modules b0._engine, b1._engine), single calls alternating."""
    engines = []
    for i, build in enumerate(args.builds):
        path = glob.glob(os.path.join(build, "shc", "_engine*.so"))[0]
        spec = importlib.util.spec_from_file_location(f"b{i}._engine", path)
        engines.append(importlib.util.module_from_spec(spec))
        spec.loader.exec_module(engines[-1])
    z = load_packed(data)
    for mode in args.ties.split(","):
        times = [[] for _ in engines]
        for engine in engines:
            timed_evaluate(engine, z, mode, args.threads)  # warm-up
        for _ in range(args.rounds):
            for engine, t in zip(engines, times):
                t.append(timed_evaluate(engine, z, mode, args.threads))
        for build, t in zip(args.builds, times):
            print(f"{build:40s} {mode:9s} best {min(t) * 1e3:7.1f} ms  median {statistics.median(t) * 1e3:7.1f} ms")


if __name__ == "__main__":
    if sys.argv[1:2] == ["--child"]:
        child(*sys.argv[2:5])
    else:
        main()
