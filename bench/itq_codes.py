"""Codes made outside shc, for the round trip of docs/compare.md: PCA + ITQ (Gong & Lazebnik, 2011) in numpy on a
run's Fashion-MNIST pixels, written in the run's query and database order.

    python bench/itq_codes.py --run runs/fmnist-32 --out itq-32            # -> itq-32/query.npy, itq-32/db.npy
    shc-eval --codes shc runs/fmnist-32/codes/query_codes.npy runs/fmnist-32/codes/db_codes.npy \\
             --codes itq itq-32/query.npy itq-32/db.npy \\
             --query-labels runs/fmnist-32/codes/query_labels.npy --db-labels runs/fmnist-32/codes/db_labels.npy \\
             --table cmp.md --pr-plot cmp.png

A run of an in-memory dataset records which rows of the source arrays its queries and database are
(codes/query_index.npy, codes/db_index.npy; for Fashion-MNIST the 60,000 training then the 10,000 test images of the
IDX files); image-file runs record paths instead (codes/*_paths.json). ITQ is unsupervised and learns from the
database items (the run's training rows are not recorded; the database is the usual ITQ training set).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np


def pca_itq(x: np.ndarray, bits: int, iterations: int = 50, seed: int = 0):
    """Fit PCA to ``bits`` dimensions, then the ITQ rotation. Returns ``(mean, projection (d, bits), losses)``:
    codes are ``sign((x - mean) @ projection)``; ``losses`` the quantisation loss ||B - VR||² after each step."""
    x = np.asarray(x, dtype=np.float64)
    if not 1 <= bits <= min(x.shape):
        raise ValueError(f"bits must be between 1 and min(n, d) = {min(x.shape)}, got {bits}")
    mean = x.mean(axis=0)
    centred = x - mean
    eigenvalues, eigenvectors = np.linalg.eigh(centred.T @ centred)
    pca = eigenvectors[:, np.argsort(eigenvalues)[::-1][:bits]]
    v = centred @ pca
    # a random orthogonal start, then alternate: B = sign(VR); R = the orthogonal Procrustes solution for B
    rotation, _ = np.linalg.qr(np.random.default_rng(seed).standard_normal((bits, bits)))
    losses = []
    for _ in range(iterations):
        b = np.where(v @ rotation >= 0, 1.0, -1.0)
        u, _, wt = np.linalg.svd(v.T @ b)
        rotation = u @ wt
        losses.append(float(np.square(b - v @ rotation).sum()))
    return mean, pca @ rotation, losses


def encode(x: np.ndarray, mean: np.ndarray, projection: np.ndarray) -> np.ndarray:
    """±1 int8 codes (sign(0) = +1, as shc reads real values)."""
    return np.where((np.asarray(x, dtype=np.float64) - mean) @ projection >= 0, 1, -1).astype(np.int8)


def split_rows(run: Path) -> tuple[np.ndarray, np.ndarray]:
    """The source rows of a run's queries and database, in the run's order (one-line ValueError when the run is of
    image files or predates the index files)."""
    paths = [run / "codes" / f"{name}_index.npy" for name in ("query", "db")]
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        raise ValueError(f"{run}: no {', '.join(missing)}; a run of an in-memory dataset (made by this shc) records "
                         f"its query and database rows there (image-file runs: codes/*_paths.json)")
    return tuple(np.load(p) for p in paths)


def itq_for_run(run, pixels: np.ndarray, out, iterations: int = 50, seed: int = 0) -> dict:
    """ITQ codes of the run's length for its queries and database (pixels[rows], flattened), learnt on the database;
    written to out/query.npy and out/db.npy. Returns their paths and the loss curve."""
    import json

    run, out = Path(run), Path(out)
    bits = int(json.loads((run / "metrics.json").read_text())["bits"])
    query_rows, db_rows = split_rows(run)
    flat = pixels.reshape(len(pixels), -1)
    mean, projection, losses = pca_itq(flat[db_rows] / 255.0, bits, iterations, seed)
    out.mkdir(parents=True, exist_ok=True)
    written = {}
    for name, rows in (("query", query_rows), ("db", db_rows)):
        written[name] = str(out / f"{name}.npy")
        np.save(written[name], encode(flat[rows] / 255.0, mean, projection))
    return {**written, "bits": bits, "losses": losses}


def fashion_mnist_pixels(data_root: str | None) -> np.ndarray:
    """The 70,000 Fashion-MNIST images in the order runs index them: training file, then test file."""
    from shc.data.fashion_mnist import DEBIAN_ROOT, find_files, read_idx

    files = find_files(data_root or DEBIAN_ROOT)
    if files is None:
        raise ValueError(f"no Fashion-MNIST IDX files under {data_root or DEBIAN_ROOT}; give --data-root")
    return np.concatenate([read_idx(files["train-images-idx3-ubyte"]), read_idx(files["t10k-images-idx3-ubyte"])])


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--run", required=True, help="an shc-train run directory of fashion-mnist")
    p.add_argument("--out", required=True, help="where query.npy and db.npy go")
    p.add_argument("--data-root", default=None, help="the Fashion-MNIST IDX files (default: the Debian package's)")
    p.add_argument("--iterations", type=int, default=50)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    try:
        result = itq_for_run(args.run, fashion_mnist_pixels(args.data_root), args.out, args.iterations, args.seed)
    except (ValueError, OSError) as exc:
        print(f"itq_codes: error: {exc}", file=sys.stderr)
        return 2
    print(f"ITQ, {result['bits']} bits: {result['query']}, {result['db']} "
          f"(quantisation loss {result['losses'][0]:.1f} -> {result['losses'][-1]:.1f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
