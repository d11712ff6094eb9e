"""shc-eval: evaluate hash codes (mAP@k, precision/recall, PR curves) with the compiled Hamming engine.

Example:
    shc-eval --query-codes q.npy --db-codes db.npy --query-labels ql.npy --db-labels dl.npy \\
             --topk 100 1000 all --ties index --pr-curve pr.png --json report.json

Errors in the input print one line ``shc-eval: error: ...`` and exit with status 2. numpy only (no torch import)
unless a .pt file is read.
"""
from __future__ import annotations

import argparse
import gc
import json
import os
import sys
import time

# Evaluation uses no BLAS; OpenBLAS's idle threads busy-wait for a while after numpy starts them and would take
# CPU from the engine's threads. Set before numpy is imported; an explicit setting wins.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

from shc.cli._errors import check_output_path, run_cli  # noqa: E402

EPILOG = """files: .npy, .npz, .pt (loaded with weights_only=True), .mat, .txt, .csv; FILE.npz:KEY / FILE.mat:KEY pick
an array. codes: ±1, {0,1}, bool, real-valued (sign) or np.packbits bytes with --bits. labels: class ids, one-hot or
multi-hot rows."""


def build_parser() -> argparse.ArgumentParser:
    from shc.metrics import TIES

    p = argparse.ArgumentParser(prog="shc-eval", description="Evaluate binary hash codes by Hamming ranking.",
                                epilog=EPILOG)
    p.add_argument("--query-codes", required=True, metavar="FILE", help="query codes (Q x q)")
    p.add_argument("--db-codes", required=True, metavar="FILE", help="database codes (N x q)")
    p.add_argument("--query-labels", required=True, metavar="FILE", help="query labels: ids, one-hot or multi-hot")
    p.add_argument("--db-labels", required=True, metavar="FILE", help="database labels")
    p.add_argument("--topk", nargs="+", default=["100", "1000", "all"], metavar="K",
                   help="cut-offs for mAP@k: positive integers or 'all' (default: 100 1000 all)")
    p.add_argument("--ties", default="index", choices=TIES,
                   help="order inside equal distances (default: index = stable by database index)")
    p.add_argument("--radius", type=int, default=2, help="Hamming radius for P@H<=r and R@H<=r (default: 2)")
    p.add_argument("--bits", type=int, default=None, help="code length; required for np.packbits uint8 codes")
    p.add_argument("--pr-curve", metavar="PNG", help="write the PR curves (by radius and by rank) to this PNG")
    p.add_argument("--json", metavar="FILE", help="write the report as JSON")
    p.add_argument("--threads", type=int, default=None, help="worker threads (default: all cores / OMP_NUM_THREADS)")
    p.add_argument("--quiet", action="store_true", help="do not print the summary table")
    return p


# what shc.evaluate calls each input in its messages -> the option that gave it
INPUT_NAMES = {"query codes": "query_codes", "database codes": "db_codes", "query labels": "query_labels",
               "database labels": "db_labels"}


def _naming_the_file(message: str, args) -> str:
    """``"database codes: ..."`` -> ``"--db-codes d.npy: ..."``: which file the message is about."""
    what, sep, rest = message.partition(": ")
    if sep and what in INPUT_NAMES:
        name = INPUT_NAMES[what]
        return f"--{name.replace('_', '-')} {getattr(args, name)}: {rest}"
    return message


def check_run_files(args) -> None:
    """Inputs that shc-train wrote (RUN/codes/FILE) are read only as their run's manifest lists them, and both
    codes files from one model: a run a failed rerun left half rewritten has no manifest, and mixed models give a
    mAP of neither."""
    from pathlib import Path

    from shc.integrity import read_manifest, run_of_codes_file, verified_bytes
    models = {}
    for name in INPUT_NAMES.values():
        path = getattr(args, name)
        run = run_of_codes_file(path) if os.path.isfile(path) else None
        if run is None:
            continue
        option = f"--{name.replace('_', '-')} {path}"
        try:
            manifest = read_manifest(run)
            verified_bytes(run, f"codes/{Path(path).name}", manifest)
        except ValueError as exc:
            raise ValueError(f"{option}: {exc}") from None
        if name.endswith("codes"):
            models[option] = manifest.get("model")
    if len(set(models.values())) > 1:
        raise ValueError(f"{' and '.join(models)} were written by runs of different models, so their Hamming "
                         f"distances mean nothing: evaluate the codes of one run")


def run(args) -> dict:
    from shc.codes import engine_threads
    from shc.io import load_array
    from shc.metrics import evaluate
    from shc.plots import plot_pr_curves

    engine_threads(args.threads, "--threads")  # named as the option, before any file is read
    for path, option in ((args.json, "--json"), (args.pr_curve, "--pr-curve")):
        if path:
            check_output_path(path, option)
    start = time.perf_counter()
    check_run_files(args)
    arrays = {name: load_array(getattr(args, name), mmap=True)
              for name in ("query_codes", "db_codes", "query_labels", "db_labels")}
    try:
        report = evaluate(arrays["query_codes"], arrays["db_codes"], arrays["query_labels"], arrays["db_labels"],
                          topk=args.topk, ties=args.ties, threads=args.threads, bits=args.bits, radius=args.radius)
    except (ValueError, TypeError) as exc:
        raise type(exc)(_naming_the_file(str(exc), args)) from None
    report.seconds = time.perf_counter() - start  # the whole job: loading, packing, ranking
    result = report.to_dict()
    if args.json:
        if os.path.dirname(args.json):
            os.makedirs(os.path.dirname(args.json), exist_ok=True)
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)
    if args.pr_curve:
        plot_pr_curves(report.pr_curves(), args.pr_curve,
                       title=f"{report.bits} bits, {report.n_query} queries, ties={report.ties}")
    if not args.quiet:
        print(report.summary())
    return result


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.radius < 0:
        parser.error(f"--radius must be non-negative, got {args.radius}")
    return run_cli("shc-eval", run, args)


def console_main() -> None:
    """The shc-eval command: main() without the cyclic GC (the job makes no cycles worth collecting) and without
    the interpreter's teardown (freeing every module and array, ~80 ms of a ~0.6 s command), once all output is
    flushed. In-process callers use main()."""
    gc.disable()
    code = main()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    console_main()
