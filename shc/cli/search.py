"""shc-search: query a trained run's database with images; JSON results, an HTML gallery, a PNG grid.

Example:
    shc-search --run runs/fashion-mnist --images queries/ --topk 10 --json results.json --html gallery.html

The database is the run's saved codes (codes/db_codes.npy) or --db FILE from shc-encode. Ranking: Hamming
distance, ties by database index (shc.search, the compiled engine). Bad input: one line on stderr, exit 2.
"""
from __future__ import annotations

import argparse
import sys

from shc.cli._errors import run_cli
from shc.cli.encode import add_encoder_arguments, encode_inputs


def run(args) -> dict:
    from shc.atomic import write_json_file
    from shc.gallery import write_html, write_png
    from shc.retrieval import file_database, run_database, search_results
    if args.topk < 1:
        raise ValueError(f"--topk must be a positive integer, got {args.topk}")
    found = []

    def load_database(encoder):  # before any image is read
        database = (file_database(args.db, encoder.bits, encoder.config["fingerprint"]) if args.db
                    else run_database(args.run, encoder.config, args.data_root))
        if args.topk > len(database):
            raise ValueError(f"--topk {args.topk} is beyond the database's {len(database)} items ({database.source})")
        found.append(database)
    encoder, paths, labels, codes = encode_inputs(args, check=load_database)
    database = found[0]
    results = search_results(codes, database, args.topk, bits=encoder.bits, images=paths, query_labels=labels)
    results["run"] = str(args.run)
    if args.json:
        write_json_file(args.json, results)
    title = f"{args.run}: top {results['k']} by Hamming distance"
    for out, write in ((args.html, write_html), (args.png, write_png)):
        if out:
            write(results, paths, database.thumbnail_source, out, title=title)
    if not args.quiet:
        print(summary(results))
    return results


def summary(results: dict) -> str:
    """One line per query: its image, label, and the top results' distances (relevant ones marked with *)."""
    lines = []
    for q in results["queries"]:
        shown = " ".join(f"{r['index']}:{r['distance']}{'*' if r['relevant'] else ''}" for r in q["results"][:10])
        label = q["label"] if not isinstance(q["label"], list) else ", ".join(map(str, q["label"]))
        label = f" [{label}]" if label is not None else ""
        more = " ..." if len(q["results"]) > 10 else ""
        lines.append(f"{q['image']}{label} -> {shown}{more}")
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="shc-search", description=__doc__.split("\n\n")[0],
                                epilog="results list index:distance, * = shares the query's label")
    add_encoder_arguments(p)
    p.add_argument("--topk", type=int, default=10, metavar="K", help="results per query (default: 10)")
    p.add_argument("--db", metavar="FILE", help="database codes from shc-encode (default: the run's own)")
    p.add_argument("--data-root", "--data_root", dest="data_root", default=None, metavar="DIR",
                   help="where the run's dataset is, for thumbnails of in-memory datasets (default: the dataset's "
                        "standard location; the data_root a run directory records is never read by itself)")
    p.add_argument("--json", metavar="OUT", help="write the results as JSON")
    p.add_argument("--html", metavar="OUT", help="write a self-contained HTML gallery")
    p.add_argument("--png", metavar="OUT", help="write the query / top-K grid figure")
    p.add_argument("--quiet", action="store_true", help="do not print the results")
    return p


def main(argv=None) -> int:
    return run_cli("shc-search", run, build_parser().parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
