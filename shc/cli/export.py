"""shc-export: a run's model as an inference-only program, uint8 images -> ±1 int8 codes (ONNX or torch.export).

Example:
    shc-export --run runs/fashion-mnist --format onnx --out model.onnx

The input is the preprocessed pixels, uint8 (B, C, S, S), batch size dynamic; docs/inference.md says how to
make them and how to serve the codes. After writing, the program is run on the CPU (onnxruntime for ONNX) on the
run's first --check query images and its codes compared with the eager model's. Bad input: one line, exit 2.
"""
from __future__ import annotations

import argparse
import sys

from shc.cli._errors import run_cli


def run(args) -> None:
    from shc.export import code_model, export, run_exported
    from shc.inference import load_run
    from shc.retrieval import run_split_images
    import torch

    if args.check < 1:
        raise ValueError(f"--check must be a positive integer, got {args.check}")
    encoder = load_run(args.run, device="cpu")
    pixels = encoder.pixels(run_split_images(args.run, encoder.config, "query", args.check, args.data_root))
    path = export(encoder, args.format, args.out, pixels)
    with torch.no_grad():
        expected = code_model(encoder)(pixels).numpy()
    got = run_exported(path, args.format, pixels)
    differ = int((got != expected).any(axis=1).sum())
    c, s = pixels.shape[1], pixels.shape[2]
    print(f"{path}: uint8 (B, {c}, {s}, {s}) pixels -> (B, {encoder.bits}) int8 ±1 codes ({args.format}); "
          f"checked on {len(pixels)} query images: " +
          ("codes identical to the eager model's" if not differ else f"{differ} codes differ from the eager model's"))
    if differ:
        raise ValueError(f"the exported {args.format} model gives other codes than the trained model for "
                         f"{differ} of {len(pixels)} query images")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="shc-export", description=__doc__.split("\n\n")[0])
    p.add_argument("--run", required=True, metavar="DIR", help="an shc-train output directory")
    p.add_argument("--format", required=True, choices=["onnx", "torch"],
                   help="onnx (checked with onnxruntime) or torch (a torch.export program, torch.export.load)")
    p.add_argument("--out", required=True, metavar="FILE", help="e.g. model.onnx or model.pt2")
    p.add_argument("--data-root", "--data_root", dest="data_root", default=None, metavar="DIR",
                   help="where the run's dataset is, for the check's query images (default: the image paths the "
                        "run recorded, else the dataset's standard location; the data_root a run directory "
                        "records is never read by itself)")
    p.add_argument("--check", type=int, default=64, metavar="N",
                   help="query images the exported model is checked on (default: 64)")
    return p


def main(argv=None) -> int:
    return run_cli("shc-export", run, build_parser().parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
