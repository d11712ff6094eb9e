"""Why (or why not) SHC centers beat CSQ/MDS on a dataset: the stage-1 similarity and the geometry of the centers.

    python bench/compare_investigation.py runs/compare-fmnist/runs/shc-16bits-seed0/similarity.npy

For each code length: min/mean center distance, the SHC objective ‖S − HHᵀ/q‖²/C², how many bits SHC moved
from its MDS start, the Spearman correlation between similarity and center distance over class pairs (negative:
similar classes sit closer), and the mean distance of each class to its most similar class vs. the rest —
for CSQ, MDS and SHC at several step sizes η (the public code's 0.5 is "dataset-dependent").
No training: stage 2 only (a few seconds).
"""
from __future__ import annotations

import argparse

import numpy as np
from scipy.stats import spearmanr

from shc.centers import csq_centers, gv_distance, mds_centers, pairwise_distances, semantic_loss, shc_centers


def geometry(centers, s_sym, start=None) -> dict:
    dist = pairwise_distances(centers).astype(float)
    c = len(dist)
    iu = np.triu_indices(c, k=1)
    off = s_sym.copy()
    np.fill_diagonal(off, -np.inf)
    nearest = off.argmax(axis=1)  # each class's most similar other class
    near = dist[np.arange(c), nearest].mean()
    mask = np.ones_like(dist, bool)
    np.fill_diagonal(mask, False)
    mask[np.arange(c), nearest] = False
    rho = spearmanr(s_sym[iu], dist[iu]).statistic if np.ptp(dist[iu]) > 0 else float("nan")
    return {"min": int(dist[iu].min()), "mean": dist[iu].mean(), "loss": semantic_loss(s_sym, centers),
            "moved": None if start is None else int((np.asarray(start) != np.asarray(centers)).sum()),
            "spearman": rho, "near": near, "rest": dist[mask].mean()}


def flip_descent(s_sym, start, d, max_passes=50):
    """Reference point for what the objective allows: greedy single-bit flips from ``start`` that lower
    ‖S − HHᵀ/q‖² and keep every pair ≥ d apart, until no flip helps (plain NumPy, fine for C ≈ 10)."""
    h = np.array(start, dtype=np.float64)
    c, q = h.shape
    for _ in range(max_passes):
        improved = False
        for i in range(c):
            for b in range(q):
                trial = h.copy()
                trial[i, b] = -trial[i, b]
                dist = (q - trial[i] @ np.delete(trial, i, axis=0).T) / 2
                if dist.min() >= d and semantic_loss(s_sym, trial) < semantic_loss(s_sym, h) - 1e-12:
                    h, improved = trial, True
        if not improved:
            break
    return h.astype(np.int8)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("similarity", help="stage-1 S (.npy), e.g. a run's similarity.npy")
    p.add_argument("--bits", nargs="+", type=int, default=[16, 32, 64])
    p.add_argument("--etas", nargs="+", type=float, default=[0.5, 0.1, 1, 2, 5, 20])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--names", default="T-shirt,Trouser,Pullover,Dress,Coat,Sandal,Shirt,Sneaker,Bag,Boot")
    args = p.parse_args(argv)
    s = np.load(args.similarity)
    s_sym = (s + s.T) / 2
    names = args.names.split(",") if len(args.names.split(",")) == len(s) else [str(i) for i in range(len(s))]
    off = s_sym.copy()
    np.fill_diagonal(off, -np.inf)
    print("similarity (symmetrised), each class's two most similar classes:")
    for i, row in enumerate(off):
        j, k = np.argsort(row)[::-1][:2]
        print(f"  {names[i]:>8}: {names[j]} {row[j]:.3f}, {names[k]} {row[k]:.3f}")
    iu = np.triu_indices(len(s), k=1)
    print(f"  off-diagonal: mean {s_sym[iu].mean():.4f}, max {s_sym[iu].max():.4f}, "
          f"share of pairs < 0.01: {(s_sym[iu] < 0.01).mean():.2f}")
    header = f"{'bits':>4} {'d':>3} {'centers':>12} {'min':>4} {'mean':>6} {'loss':>7} {'moved':>5} " \
             f"{'spearman':>8} {'d(nearest)':>10} {'d(rest)':>7}"
    print("\n" + header)
    for bits in args.bits:
        d = gv_distance(bits, len(s))
        start = mds_centers(len(s), bits, seed=args.seed)
        rows = [("csq", csq_centers(len(s), bits, seed=args.seed), None), ("mds", start, None)]
        rows += [(f"shc η={eta:g}", shc_centers(s, bits, seed=args.seed, eta=eta), start) for eta in args.etas]
        rows.append(("flip descent", flip_descent(s_sym, start, d), start))
        for name, centers, ref in rows:
            g = geometry(centers, s_sym, ref)
            print(f"{bits:>4} {d:>3} {name:>12} {g['min']:>4} {g['mean']:>6.2f} {g['loss']:>7.4f} "
                  f"{'' if g['moved'] is None else g['moved']:>5} {g['spearman']:>8.3f} {g['near']:>10.2f} "
                  f"{g['rest']:>7.2f}")


if __name__ == "__main__":
    main()
