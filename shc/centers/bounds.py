"""Distance bound, center statistics and the verification every center generator ends with.

Centers are always a C × q array whose rows are ±1 codes. Hamming distance D(h_i, h_j) = (q − h_iᵀh_j) / 2,
so D ≥ d  ⇔  h_iᵀh_j ≤ q − 2d: the optimisers work with inner products, these helpers speak distances.
"""
from __future__ import annotations

import numbers
from math import comb

import numpy as np


def _positive_int(value, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an integer, got {type(value).__name__}")
    if value < 1:
        raise ValueError(f"{name} must be >= 1, got {value}")
    return int(value)


def gv_distance(bits: int, classes: int) -> int:
    """Minimum center distance d from the Gilbert–Varshamov bound.

    d is the smallest integer with V(q, d − 1) ≥ 2^q / C, V(q, r) = Σ_{j≤r} binom(q, j): a code of C words
    with minimum distance d is then guaranteed to exist. Exact integer arithmetic (V·C ≥ 2^q).
    """
    q = _positive_int(bits, "bits")
    c = _positive_int(classes, "classes")
    if c < 2:
        raise ValueError(f"need at least 2 classes for a distance bound, got {c}")
    if c > 2 ** q:
        raise ValueError(f"{c} classes cannot get distinct centers with {q} bits (2^{q} = {2 ** q} codes)")
    volume = 0  # V(q, d - 1)
    for d in range(1, q + 2):
        volume += comb(q, d - 1)
        if volume * c >= 2 ** q:
            return d
    raise AssertionError("unreachable: V(q, q) = 2^q")


def pairwise_distances(centers: np.ndarray) -> np.ndarray:
    """C × C Hamming distances between ±1 rows (int64)."""
    h = np.asarray(centers, dtype=np.int64)
    return (h.shape[1] - h @ h.T) // 2


def distance_stats(centers: np.ndarray) -> tuple[int, float, int]:
    """(min, mean, max) Hamming distance over the pairs i < j."""
    dist = pairwise_distances(centers)
    upper = dist[np.triu_indices(dist.shape[0], k=1)]
    return int(upper.min()), float(upper.mean()), int(upper.max())


def semantic_loss(similarity: np.ndarray, centers: np.ndarray) -> float:
    """‖S − HHᵀ/q‖²_F / C² — the SHC objective, with H the C × q center matrix."""
    h = np.asarray(centers, dtype=np.float64)
    s = np.asarray(similarity, dtype=np.float64)
    return float(np.sum((s - h @ h.T / h.shape[1]) ** 2) / s.shape[0] ** 2)


def check_similarity(similarity, classes: int | None = None) -> np.ndarray:
    """Validate a class-similarity matrix: square C × C, finite, numeric. Returns it as float64."""
    try:
        s = np.asarray(similarity, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"similarity must be a numeric C x C array: {exc}") from None
    if s.ndim != 2 or s.shape[0] != s.shape[1]:
        raise ValueError(f"similarity must be a square C x C matrix, got shape {s.shape}")
    if s.shape[0] < 2:
        raise ValueError(f"similarity must cover at least 2 classes, got shape {s.shape}")
    if classes is not None and s.shape[0] != classes:
        raise ValueError(f"similarity is {s.shape[0]} x {s.shape[1]} but {classes} classes were requested")
    if not np.all(np.isfinite(s)):
        bad = int(np.size(s) - np.count_nonzero(np.isfinite(s)))
        raise ValueError(f"similarity has {bad} non-finite entries (NaN or inf)")
    return s


def verify_centers(centers: np.ndarray, classes: int, bits: int, d: int, method: str) -> np.ndarray:
    """The check every generator ends with: C × q, entries ±1, min pairwise distance ≥ d. Returns int8."""
    h = np.asarray(centers)
    if h.shape != (classes, bits):
        raise ValueError(f"{method}: centers have shape {h.shape}, expected ({classes}, {bits})")
    if not np.all(np.abs(h) == 1):
        raise ValueError(f"{method}: centers contain entries other than -1/+1")
    h = h.astype(np.int8)
    dmin, _, _ = distance_stats(h)
    if dmin < d:
        raise ValueError(f"{method}: could not reach the minimum distance for {classes} classes at {bits} bits: "
                         f"best minimum pairwise distance {dmin} < required d = {d}")
    return h


def center_report(centers: np.ndarray, d: int | None = None, similarity=None) -> dict:
    """Statistics of a center set, as written to the CLI's JSON and the training pipeline's metrics.json.

    Keys: classes, bits, d_required (gv_distance when d is None), min/mean/max_distance, meets_d, and
    semantic_loss (‖S − HHᵀ/q‖²_F / C², S as given) when a similarity matrix is passed.
    """
    h = np.asarray(centers)
    if h.ndim != 2 or h.shape[0] < 2:
        raise ValueError(f"centers must be a C x q array with C >= 2, got shape {h.shape}")
    if not np.all(np.abs(h) == 1):
        raise ValueError("centers contain entries other than -1/+1")
    classes, bits = h.shape
    if d is None:
        d = gv_distance(bits, classes)
    dmin, dmean, dmax = distance_stats(h)
    report = {"classes": int(classes), "bits": int(bits), "d_required": int(d), "min_distance": dmin,
              "mean_distance": dmean, "max_distance": dmax, "meets_d": bool(dmin >= d)}
    if similarity is not None:
        report["semantic_loss"] = semantic_loss(check_similarity(similarity, classes), h)
    return report
