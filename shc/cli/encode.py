"""shc-encode: images -> the codes a trained run's model gives them (.npy, ±1 int8 or --packed bytes) + paths.

Example:
    shc-encode --run runs/fashion-mnist --images photos/ more.png list.txt --out codes.npy [--packed]

PATH: image files, directories (searched recursively) or list files (``path`` or ``path<TAB>label`` a line).
Writes FILE.npy, FILE.json (bits, paths, labels, the run) and, when every image has a label the run knows
(a list file's label column, or the sub-directory an image is in), FILE_labels.npy: the labels as shc-eval reads
them. Bad input: one line on stderr, exit 2.
"""
from __future__ import annotations

import argparse
import os
import sys

from shc.cli._errors import run_cli


def add_encoder_arguments(p: argparse.ArgumentParser) -> None:
    """The options every command that encodes images with a run takes."""
    p.add_argument("--run", required=True, metavar="DIR", help="an shc-train output directory")
    p.add_argument("--images", required=True, nargs="+", metavar="PATH",
                   help="image files, directories (recursive) or list files")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (default: auto)")
    p.add_argument("--batch-size", type=int, default=None, help="images per batch (default: the run's)")
    p.add_argument("--workers", type=int, default=None,
                   help="image-decoding processes (default: the cores available, at most 8)")
    p.add_argument("--skip-unreadable", action="store_true",
                   help="leave out images that cannot be read (counted on stderr) instead of failing")
    p.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar")


def encode_inputs(args):
    """(encoder, paths, labels, codes) for the parsed ``args`` of add_encoder_arguments."""
    from shc.data.image_cache import default_workers
    from shc.inference import load_run
    from shc.retrieval import canonical_label, collect_images
    if args.workers is not None and args.workers < 0:
        raise ValueError(f"--workers must be >= 0, got {args.workers}")
    encoder = load_run(args.run, device=args.device)
    paths, labels = collect_images(args.images)
    labels = [canonical_label(x, encoder.class_names) for x in labels]
    workers = default_workers() if args.workers is None else args.workers
    if args.skip_unreadable:
        paths, labels = readable_images(paths, labels, encoder.preprocessing.resize_size, workers, args.progress)
    codes = encoder.encode(paths, batch_size=args.batch_size, workers=min(workers, len(paths) - 1),
                           progress=args.progress, desc=f"encode {len(paths)} images")
    return encoder, paths, labels, codes


def readable_images(paths, labels, resize_size: int, workers: int, progress: bool):
    """(paths, labels) without the images that cannot be read; how many were left out (and the first) on
    stderr; ValueError when none is left."""
    from shc.data.decode import unreadable_images
    bad = unreadable_images(paths, resize_size, workers=max(1, workers), progress=progress)
    if bad:
        first = next(iter(bad.values()))
        print(f"skipped {len(bad)} of {len(paths)} images that cannot be read (first: {first})", file=sys.stderr)
    if len(bad) == len(paths):
        raise ValueError(f"none of the {len(paths)} images can be read (first: {first})")
    kept = [i for i, p in enumerate(paths) if p not in bad]
    return [paths[i] for i in kept], [labels[i] for i in kept]


def run(args) -> None:
    from shc.retrieval import write_codes
    encoder, paths, labels, codes = encode_inputs(args)
    label_file = write_codes(args.out, codes, paths=paths, labels=labels, packed=args.packed, run_dir=args.run,
                             config=encoder.config)
    kind = "np.packbits bytes" if args.packed else "±1 int8"
    ids = f"; label ids in {label_file} (for shc-eval)" if label_file else ""
    print(f"{len(paths)} images -> {args.out} ({codes.shape[1]} bits, {kind}); paths and labels in "
          f"{os.path.splitext(args.out)[0]}.json{ids}")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="shc-encode", description=__doc__.split("\n\n")[0])
    add_encoder_arguments(p)
    p.add_argument("--out", required=True, metavar="FILE.npy", help="codes file (its .json sidecar goes beside it)")
    p.add_argument("--packed", action="store_true",
                   help="write np.packbits(codes > 0, axis=1) bytes (what shc-eval --bits and faiss binary "
                        "indexes read) instead of ±1 int8")
    return p


def main(argv=None) -> int:
    return run_cli("shc-encode", run, build_parser().parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
