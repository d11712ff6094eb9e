"""shc-centers: generate CSQ / MDS / SHC hash centers and write them as a C × q int8 array of ±1.

    shc-centers --classes 100 --bits 64 --method shc --similarity S.npy --out centers.npy --json report.json
"""
from __future__ import annotations

import argparse
import sys
import time


from shc.atomic import write_json_file, write_npy
from shc.centers import (METHODS, center_report, check_center_memory, check_seed, check_similarity, gv_distance,
                         kernels_compiled, make_centers)
from shc.cli._errors import run_cli


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="shc-centers", description="Generate hash centers (stage 2 of SHC).")
    p.add_argument("--classes", type=int, help="number of classes C (taken from --similarity when omitted)")
    p.add_argument("--bits", type=int, required=True, help="code length q")
    p.add_argument("--method", choices=METHODS, default="shc", help="center generator (default: shc)")
    p.add_argument("--similarity", help="C x C class-similarity matrix (.npy/.pt/.csv/...; required for shc)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    p.add_argument("--out", required=True, help="output .npy path for the C x q int8 centers")
    p.add_argument("--json", help="also write a JSON report (distances, semantic loss, seconds)")
    p.add_argument("--quiet", action="store_true", help="print nothing on success")
    return p


def run(args) -> dict:
    similarity = None
    if args.similarity is not None:
        from shc.io import load_array
        similarity = check_similarity(load_array(args.similarity), args.classes)
    if args.method == "shc" and similarity is None:
        raise ValueError("--method shc needs --similarity S (a C x C class-similarity matrix)")
    classes = args.classes if args.classes is not None else (similarity.shape[0] if similarity is not None else None)
    if classes is None:
        raise ValueError("--classes is required unless --similarity is given")
    gv_distance(args.bits, classes)  # validates classes/bits before any work
    check_seed(args.seed, "--seed")
    check_center_memory(args.method, classes, args.bits)
    if not args.out.endswith(".npy"):
        raise ValueError(f"--out must be a .npy path, got {args.out!r}")
    if args.method != "csq" and not args.quiet and not kernels_compiled():
        print("shc-centers: compiling center kernels, once per install (~15 s)", file=sys.stderr, flush=True)
    start = time.perf_counter()
    centers = make_centers(args.method, classes, args.bits, similarity=similarity, seed=args.seed)
    seconds = time.perf_counter() - start
    report = {"method": args.method, "seed": args.seed, **center_report(centers, similarity=similarity),
              "seconds": seconds}
    write_npy(args.out, centers)
    if args.json:
        write_json_file(args.json, report)
    if not args.quiet:
        loss = f", semantic loss {report['semantic_loss']:.5f}" if "semantic_loss" in report else ""
        print(f"{args.method}: {classes} centers x {args.bits} bits -> {args.out}; distance min {report['min_distance']}"
              f" (d = {report['d_required']}) mean {report['mean_distance']:.2f} max {report['max_distance']}"
              f"{loss}; {seconds:.2f} s")
    return report


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    return run_cli("shc-centers", run, args)


if __name__ == "__main__":
    sys.exit(main())
