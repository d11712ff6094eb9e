"""shc-compare: hash-center methods side by side — every (centers, bits, seed) trained with the same backbone,
budget and splits, then mean ± std per method and length.

Writes DIR/results.json, DIR/results.md and DIR/pr_<bits>bits.png; each run lives in DIR/runs/<centers>-<bits>bits-
seed<seed>/ (a full shc-train output). Stage 1 is trained once per dataset and seed (DIR/stage1-cache) and reused.
Rerunning the command reuses finished runs, so an interrupted grid continues where it stopped.
"""
from __future__ import annotations

import argparse
import sys

from shc.cli._errors import run_cli

EPILOG = """\
every other option is shc-train's and applies to every run (see shc-train --help), e.g.
  shc-compare --dataset fashion-mnist --centers csq mds shc --bits 16 32 64 --seeds 0 1 2 --out runs/compare \\
              --epoch 20 --threads 1
"""


def build_parser() -> argparse.ArgumentParser:
    from shc.centers import METHODS
    from shc.cli.train import build_parser as train_parser

    # shc-train's options, with the grid axes redefined as lists (conflict_handler drops shc-train's versions).
    p = argparse.ArgumentParser(prog="shc-compare", description=__doc__.split("\n\n")[0], epilog=EPILOG,
                                parents=[train_parser()], conflict_handler="resolve",
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--centers", nargs="+", default=list(METHODS), choices=METHODS,
                   help=f"hash center methods to compare (default: {' '.join(METHODS)})")
    p.add_argument("--bits", "--code_length", "--code-length", dest="bits", nargs="+", type=int,
                   default=[16, 32, 64], help="code lengths (default: 16 32 64)")
    p.add_argument("--seeds", "--seed", dest="seeds", nargs="+", type=int, default=[0, 1, 2],
                   help="seeds: data split, init, shuffling and centers (default: 0 1 2)")
    p.add_argument("--out", default=None, help="output directory (default: runs/compare-DATASET)")
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    return run_cli("shc-compare", compare, args,
                   interrupted="interrupted; rerun the same command (add --resume to continue the interrupted run)")


def compare(args) -> None:
    from shc.compare import plan_grid, run_grid
    from shc.train.options import config_from_options

    if args.nproc not in (None, 1):  # the grid's runs train one after another here
        raise ValueError("--nproc is not supported by shc-compare: each run of the grid trains in this process")
    cells = plan_grid(args.centers, args.bits, args.seeds)
    out = args.out or f"runs/compare-{args.dataset}"
    # every shc-train option, checked once here (each cell replaces the axes)
    base = config_from_options({**vars(args), "method": cells[0].centers, "centers": None, "bits": cells[0].bits,
                                "seed": cells[0].seed, "out": out})
    base.resolved()
    results = run_grid(base, cells, out)
    print(f"shc-compare: {len(results['runs'])} runs -> {out}/results.md, {out}/results.json, "
          + ", ".join(f"{out}/{p}" for p in results["figures"].values()))


if __name__ == "__main__":
    sys.exit(main())
