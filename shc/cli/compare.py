"""shc-compare: training methods side by side — every (method, bits, seed) trained with the same backbone,
budget and splits, then mean ± std per method and length.

Writes DIR/results.json, .md, .csv, .tex, DIR/pr_<bits>bits.png/.pdf, DIR/map_vs_bits.png/.pdf and every run's
per-query AP (DIR/per-query-ap/); each run lives in DIR/runs/<label>-<bits>bits-seed<seed>/ (a full shc-train
output). --external adds codes made elsewhere to the tables and figures. Stage 1 is trained once per dataset and
seed (DIR/stage1-cache) and reused. Rerunning the command reuses finished runs, so an interrupted grid continues
where it stopped.
"""
from __future__ import annotations

import argparse
import sys

from shc.cli._errors import parse_args, run_cli

EPILOG = """\
every other option is shc-train's and applies to every run (see shc-train --help), e.g.
  shc-compare --dataset fashion-mnist --methods all shc-paper=shc:polish_passes=0 --bits 16 32 64 \\
              --seeds 0 1 --out runs/compare --epoch 10 --threads 1
a --methods entry is a method name (shc, mds, csq, vtdh, lth, greedyhash, orthohash, dtsh, hashnet, dpsh, idhn),
all (the eleven), or LABEL=NAME:KEY=VALUE[,KEY=VALUE...]: a method with options under a label of its own.
"""


def build_parser() -> argparse.ArgumentParser:
    from shc.cli.train import build_parser as train_parser
    from shc.methods import CENTER_METHODS

    # shc-train's options, with the grid axes redefined as lists (conflict_handler drops shc-train's versions).
    p = argparse.ArgumentParser(prog="shc-compare", description=__doc__.split("\n\n")[0], epilog=EPILOG,
                                parents=[train_parser()], conflict_handler="resolve",
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--methods", nargs="+", default=None, metavar="ENTRY",
                   help="the grid's methods: NAME, all, or LABEL=NAME:KEY=VALUE[,...] (default: shc mds csq)")
    p.add_argument("--centers", nargs="+", default=None, choices=CENTER_METHODS,
                   help="the centre methods' older flag: --centers X Y is --methods X Y")
    p.add_argument("--bits", "--code_length", "--code-length", dest="bits", nargs="+", type=int,
                   default=[16, 32, 64], help="code lengths (default: 16 32 64)")
    p.add_argument("--seeds", "--seed", dest="seeds", nargs="+", type=int, default=[0, 1, 2],
                   help="seeds: data split, init, shuffling and centers (default: 0 1 2)")
    p.add_argument("--out", default=None, help="output directory (default: runs/compare-DATASET)")
    p.add_argument("--external", nargs=3, action="append", default=[], metavar=("NAME", "QUERY_FILE", "DB_FILE"),
                   help="codes made outside shc, added to the table and figure of their code length; NAME@SEED "
                        "names the seed whose split (query/database order) they encode (default: the first seed); "
                        "repeatable; every format shc-eval reads")
    return p


def main(argv=None) -> int:
    args = parse_args("shc-compare", build_parser, argv)
    return run_cli("shc-compare", compare, args,
                   interrupted="interrupted; rerun the same command (add --resume to continue the interrupted run)")


def compare(args) -> None:
    from shc.compare import check_externals, parse_external, plan_grid, run_grid
    from shc.methods import CENTER_METHODS
    from shc.train.options import config_from_options

    if args.nproc not in (None, 1):  # the grid's runs train one after another here
        raise ValueError("--nproc is not supported by shc-compare: each run of the grid trains in this process")
    if args.config is not None:
        raise ValueError("--config is not supported by shc-compare: give the grid's options as flags")
    if args.method or args.method_options:
        raise ValueError("shc-compare takes the grid's methods as --methods ENTRY ... (an entry with options: "
                         "LABEL=NAME:KEY=VALUE,...), not --method / --method-option")
    if args.methods and args.centers:
        raise ValueError("give --methods or --centers (its older spelling), not both")
    cells = plan_grid(args.methods or args.centers or list(CENTER_METHODS), args.bits, args.seeds)
    externals = [parse_external(name, query, db, args.seeds) for name, query, db in args.external]
    check_externals(externals, cells)
    out = args.out or f"runs/compare-{args.dataset}"
    # every shc-train option, checked once here (each cell replaces the axes)
    base = config_from_options({**vars(args), "method": cells[0].method, "centers": None, "method_options": None,
                                "bits": cells[0].bits, "seed": cells[0].seed, "out": out})
    base.resolved()
    results = run_grid(base, cells, out, externals=externals)
    print(f"shc-compare: {len(results['runs'])} runs -> {out}/results.md (.json, .csv, .tex), "
          + ", ".join(f"{out}/{p}" for p in [*results["figures"].values(), results["map_vs_bits"]]))


if __name__ == "__main__":
    sys.exit(main())
