"""Single-thread CPU time of shc.evaluate on 1,000 queries of workloads (a) and (b) — for comparing engine
versions on a shared machine (process_time counts only our own CPU time; run two versions alternately).

    python bench/engine_single_thread.py [index] [expected] ...
    PYTHONPATH=/path/to/other/checkout python bench/engine_single_thread.py   # another build of shc, same data
"""
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from test_bench_engine import make_workload  # noqa: E402

from shc.metrics import evaluate  # noqa: E402


def main(modes):
    print("load", open("/proc/loadavg").read().split()[0])
    for name in ("a_mscoco", "b_imagenet100"):
        qc, dc, ql, dl, k = make_workload(name)
        qc, ql = qc[:1000], ql[:1000]
        for ties in modes:
            times = []
            for _ in range(5):
                start = time.process_time()
                report = evaluate(qc, dc, ql, dl, topk=(k,), ties=ties, threads=1)
                times.append(time.process_time() - start)
            best = min(times)
            print(f"{name:14s} {ties:9s} cpu {best:.3f} s  {qc.shape[0] * dc.shape[0] / best / 1e9:.2f}e9 pairs/s  "
                  f"mAP@{k}={report.mAP[k]:.6f}")


if __name__ == "__main__":
    main(sys.argv[1:] or ["index", "expected"])
