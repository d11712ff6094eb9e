"""shc-eval: evaluate hash codes (mAP@k, precision/recall, PR curves) with the compiled Hamming engine.

Example:
    shc-eval --query-codes q.npy --db-codes db.npy --query-labels ql.npy --db-labels dl.npy \\
             --topk 100 1000 all --ties index --pr-curve pr.png --json report.json
    shc-eval --codes shc shc_q.npy shc_db.npy --codes itq itq_q.npy itq_db.npy --query-labels ql.npy \\
             --db-labels dl.npy --table results.tex --pr-plot pr.pdf --per-query ap.csv

Errors in the input print one line ``shc-eval: error: ...`` and exit with status 2. numpy only (no torch import)
unless a .pt file is read.
"""
from __future__ import annotations

import argparse
import gc
import os
import sys
import time

# Evaluation uses no BLAS; OpenBLAS's idle threads busy-wait for a while after numpy starts them and would take
# CPU from the engine's threads. Set before numpy is imported; an explicit setting wins.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

from shc.atomic import write_json_file, write_npy, write_npz, write_text  # noqa: E402
from shc.cli._errors import check_output_path, parse_args, run_cli  # noqa: E402

EPILOG = """files: .npy, .npz, .pt (loaded with weights_only=True), .mat, .txt, .csv; FILE.npz:KEY / FILE.mat:KEY pick
an array. codes: ±1, {0,1}, bool, real-valued (sign) or np.packbits bytes with --bits. labels: class ids, one-hot or
multi-hot rows."""


def build_parser() -> argparse.ArgumentParser:
    from shc.metrics import TIES

    p = argparse.ArgumentParser(prog="shc-eval", description="Evaluate binary hash codes by Hamming ranking.",
                                epilog=EPILOG)
    p.add_argument("--query-codes", metavar="FILE", help="query codes (Q x q)")
    p.add_argument("--db-codes", metavar="FILE", help="database codes (N x q)")
    p.add_argument("--codes", nargs=3, action="append", default=[], metavar=("NAME", "QUERY_FILE", "DB_FILE"),
                   help="one method's query and database codes, under NAME; repeatable (instead of --query-codes "
                        "and --db-codes): every method is evaluated against the same labels")
    p.add_argument("--query-labels", required=True, metavar="FILE", help="query labels: ids, one-hot or multi-hot")
    p.add_argument("--db-labels", required=True, metavar="FILE", help="database labels")
    p.add_argument("--topk", nargs="+", default=["100", "1000", "all"], metavar="K",
                   help="cut-offs for mAP@k: positive integers or 'all', space- or comma-separated (default: 100 "
                        "1000 all)")
    p.add_argument("--ties", default="index", choices=TIES,
                   help="order inside equal distances (default: index = stable by database index)")
    p.add_argument("--radius", type=int, default=2, help="Hamming radius for P@H<=r and R@H<=r (default: 2)")
    p.add_argument("--bits", type=int, default=None,
                   help="code length; required for np.packbits uint8 codes (shc-encode --packed codes: read from "
                        "their .json sidecar)")
    p.add_argument("--pr-curve", metavar="PNG", help="write the PR curves (by radius and by rank) to this PNG "
                   "(one pair of codes)")
    p.add_argument("--pr-plot", metavar="FILE", help="write every method's PR curve by rank (Hamming ranking) to "
                   "one figure: .png or .pdf")
    p.add_argument("--table", metavar="FILE", help="write the methods x bits table of mAP@k: .md, .csv or .tex")
    p.add_argument("--per-query", metavar="FILE", help="write AP@k of every query (columns in --topk order): .npy "
                   "(Q x K, one method), .npz (an array per method) or .csv (a column per method and k)")
    p.add_argument("--json", metavar="FILE", help="write the report as JSON (with --codes: {NAME: report})")
    p.add_argument("--threads", type=int, default=None, help="worker threads (default: all cores / OMP_NUM_THREADS)")
    p.add_argument("--quiet", action="store_true", help="do not print the summary table")
    return p


SINGLE = "codes"  # the label of --query-codes / --db-codes in tables, figures and per-query files
PLOT_SUFFIXES = (".png", ".pdf")
PER_QUERY_SUFFIXES = (".npy", ".npz", ".csv")


def methods(args) -> list[tuple[str, str, str, dict]]:
    """``[(label, query codes file, database codes file, {what shc.evaluate calls an input: "option file"})]``:
    the single pair or every --codes entry."""
    labels = {"query labels": f"--query-labels {args.query_labels}", "database labels": f"--db-labels {args.db_labels}"}
    if args.codes:
        if args.query_codes or args.db_codes:
            raise ValueError("give either --query-codes and --db-codes or --codes NAME QUERY_FILE DB_FILE, not both")
        names = [name for name, _, _ in args.codes]
        clash = next((n for n in names if names.count(n) > 1), None)
        if clash is not None:
            raise ValueError(f"--codes {clash}: the name is given twice; give every method its own name")
        return [(name, q, d, {"query codes": f"--codes {name} {q}", "database codes": f"--codes {name} {d}", **labels})
                for name, q, d in args.codes]
    if not (args.query_codes and args.db_codes):
        raise ValueError("give the codes: --query-codes FILE and --db-codes FILE, or --codes NAME QUERY_FILE DB_FILE")
    return [(SINGLE, args.query_codes, args.db_codes, {"query codes": f"--query-codes {args.query_codes}",
                      "database codes": f"--db-codes {args.db_codes}", **labels})]


def _naming_the_file(message: str, inputs: dict) -> str:
    """``"database codes: ..."`` -> ``"--db-codes d.npy: ..."``: which file the message is about."""
    what, sep, rest = message.partition(": ")
    if sep and what in inputs:
        return f"{inputs[what]}: {rest}"
    return message


def check_run_files(args, entries) -> None:
    """Files that shc-train wrote (RUN/codes/FILE) are read only as their run's manifest lists them, and a pair of
    codes only from one model: a run that a failed rerun left half rewritten has no manifest, and codes of two
    models give a mAP of neither."""
    from pathlib import Path

    from shc.integrity import read_manifest, run_of_codes_file, verified_bytes

    def model_of(path: str, option: str):
        run = run_of_codes_file(path) if os.path.isfile(path) else None
        if run is None:  # not a run's file: nothing to check it against
            return None
        try:
            manifest = read_manifest(run)
            verified_bytes(run, f"codes/{Path(path).name}", manifest)
        except ValueError as exc:
            raise ValueError(f"{option}: {exc}") from None
        return manifest.get("model")

    for _, query, db, inputs in entries:
        models = {model_of(query, inputs["query codes"]), model_of(db, inputs["database codes"])}
        if None not in models and len(models) > 1:
            raise ValueError(f"{inputs['query codes']} and {inputs['database codes']} were written by runs of "
                             f"different models, so their Hamming distances mean nothing: evaluate one run's codes")
    for name in ("query_labels", "db_labels"):
        model_of(getattr(args, name), f"--{name.replace('_', '-')} {getattr(args, name)}")


def _check_suffix(path: str | None, option: str, suffixes: tuple) -> None:
    if path and os.path.splitext(path)[1].lower() not in suffixes:
        raise ValueError(f"{option} {path}: cannot write '{os.path.splitext(path)[1] or '(no suffix)'}'; "
                         f"give a file ending in {', '.join(suffixes)}")


def check_outputs(args, n_methods: int) -> None:
    """Every output path writable, with a suffix its writer knows, before any file is read."""
    from shc.report_tables import check_table_path

    if args.table:
        check_table_path(args.table, "--table")
    _check_suffix(args.pr_plot, "--pr-plot", PLOT_SUFFIXES)
    _check_suffix(args.per_query, "--per-query", PER_QUERY_SUFFIXES)
    if args.per_query and args.per_query.lower().endswith(".npy") and n_methods > 1:
        raise ValueError(f"--per-query {args.per_query}: a .npy holds one method's AP; for {n_methods} methods "
                         "give .npz (an array per method) or .csv")
    if args.pr_curve and n_methods > 1:
        raise ValueError("--pr-curve draws one pair of codes' curves; for several methods use --pr-plot FILE")
    for path, option in ((args.json, "--json"), (args.pr_curve, "--pr-curve"), (args.pr_plot, "--pr-plot"),
                         (args.table, "--table"), (args.per_query, "--per-query")):
        if path:
            check_output_path(path, option)


def write_per_query(path: str, reports: dict) -> None:
    """AP@k of every query: .npy (Q x K), .npz (an array Q x K per method) or .csv (query, then NAME@k columns)."""
    suffix = os.path.splitext(path)[1].lower()
    if suffix == ".npy":
        write_npy(path, next(iter(reports.values())).ap)
    elif suffix == ".npz":
        write_npz(path, {name: r.ap for name, r in reports.items()})
    else:
        import csv
        import io
        columns = [(name, j, f"{name}@{k}") for name, r in reports.items() for j, k in enumerate(r.mAP)]
        n_query = next(iter(reports.values())).n_query
        text = io.StringIO()
        writer = csv.writer(text, lineterminator="\n")
        writer.writerow(["query"] + [title for _, _, title in columns])
        for i in range(n_query):
            writer.writerow([i] + [repr(float(reports[name].ap[i, j])) for name, j, _ in columns])
        write_text(path, text.getvalue())


def write_comparison(args, reports: dict) -> None:
    """--table and --pr-plot over every method."""
    from shc.plots import method_styles, plot_pr_curves
    from shc.report_tables import method_order, render_table, table_cells

    order = method_order(reports)
    if args.table:
        runs = [{"method": name, "bits": r.bits, "mAP": r.to_dict()["mAP"]} for name, r in reports.items()]
        text = render_table(table_cells(runs, families=(("mAP", args.ties),)), args.table, "--table")
        write_text(args.table, text)
    if args.pr_plot:
        first = reports[order[0]]
        bits = sorted({r.bits for r in reports.values()})
        plot_pr_curves({name: (reports[name].pr_curve_rank["precision"], reports[name].pr_curve_rank["recall"])
                        for name in order}, args.pr_plot, styles=method_styles(order),
                       title=f"{'/'.join(map(str, bits))} bits, {first.n_query} queries x {first.n_database}: "
                             f"Hamming ranking, ties={first.ties}")


def run(args) -> dict:
    from shc.cli._args import list_values
    from shc.codes import engine_threads
    from shc.io import load_array
    from shc.metrics import evaluate
    from shc.plots import plot_pr_curves

    engine_threads(args.threads, "--threads")  # named as the option, before any file is read
    entries = methods(args)
    check_outputs(args, len(entries))
    start = time.perf_counter()
    check_run_files(args, entries)
    labels = {name: load_array(getattr(args, name), mmap=True) for name in ("query_labels", "db_labels")}
    reports, single = {}, not args.codes
    for label, query_spec, db_spec, inputs in entries:
        try:
            codes = [load_array(spec, mmap=True) for spec in (query_spec, db_spec)]
            bits = args.bits if args.bits is not None else _bits_from_sidecars(query_spec, db_spec)
            reports[label] = evaluate(codes[0], codes[1], labels["query_labels"], labels["db_labels"],
                                      topk=list_values(args.topk), ties=args.ties, threads=args.threads, bits=bits,
                                      radius=args.radius)
        except (ValueError, TypeError) as exc:
            message = _naming_the_file(str(exc), inputs)
            if not single and not message.startswith("--codes "):  # codes that do not fit the shared labels
                message = f"--codes {label}: {message}"
            raise type(exc)(message) from None
    if single:  # the whole job: loading, packing, ranking (with --codes each report times its own evaluation)
        reports[SINGLE].seconds = time.perf_counter() - start
    result = reports[SINGLE].to_dict() if single else {name: r.to_dict() for name, r in reports.items()}
    if args.json:
        write_json_file(args.json, result)
    if args.pr_curve:
        report = reports[SINGLE]
        plot_pr_curves(report.pr_curves(), args.pr_curve,
                       title=f"{report.bits} bits, {report.n_query} queries, ties={report.ties}")
    write_comparison(args, reports)
    if args.per_query:
        write_per_query(args.per_query, reports)
    if not args.quiet:
        for name, report in reports.items():
            print(report.summary() if single else f"== {name} ==\n{report.summary()}\n")
    return result


def _bits_from_sidecars(*codes_files: str) -> int | None:
    """The code length of shc-encode --packed codes, from their FILE.json sidecars."""
    from shc.retrieval import packed_bits
    found = {packed_bits(path) for path in codes_files} - {None}
    if len(found) > 1:
        raise ValueError(f"packed codes of different lengths ({' and '.join(map(str, sorted(found)))} bits): "
                         f"{' and '.join(codes_files)}")
    return found.pop() if found else None


def main(argv=None) -> int:
    args = parse_args("shc-eval", build_parser, argv)
    if args.radius < 0:
        build_parser().error(f"--radius must be non-negative, got {args.radius}")
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
