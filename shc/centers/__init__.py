"""Stage 2: hash centers — Gilbert–Varshamov distance, CSQ, MDS and SHC (semantic) centers.

All generators return an int8 C × q array of ±1 (rows are class centers) and verify it before returning.
"""
from __future__ import annotations

from .bounds import center_report, check_similarity, distance_stats, gv_distance, pairwise_distances, semantic_loss
from .csq import csq_centers
from .mds import MDS_DEFAULTS, mds_centers
from .semantic import SHC_DEFAULTS, shc_centers

METHODS = ("csq", "mds", "shc")


def make_centers(method: str, classes: int, bits: int, similarity=None, seed: int = 0, **hyper):
    """One entry point for the pipeline's centre methods csq|mds|shc. `similarity` (C × C) is required for shc.
    hyper: the method's optimiser settings (MDS_DEFAULTS / SHC_DEFAULTS keys; e.g. ``polish_passes=0`` for the
    published SHC); csq takes none."""
    if method == "csq":
        if hyper:
            raise TypeError(f"csq: unknown hyper-parameter(s) {sorted(hyper)}; csq takes none")
        return csq_centers(classes, bits, seed=seed)
    if method == "mds":
        return mds_centers(classes, bits, seed=seed, **hyper)
    if method == "shc":
        if similarity is None:
            raise ValueError("shc centers need a C x C class-similarity matrix (similarity=...)")
        return shc_centers(check_similarity(similarity, classes), bits, seed=seed, **hyper)
    raise ValueError(f"unknown center method {method!r}; choose one of {', '.join(METHODS)}")


def kernels_compiled() -> bool:
    """Whether the MDS / SHC kernels are compiled and cached for this install (csq needs none)."""
    from . import _kernels
    return _kernels.cached()


def compile_kernels() -> None:
    """Compile and cache the MDS / SHC kernels now (the first run otherwise spends ~15 s in stage 2)."""
    import numpy as np
    shc_centers(np.eye(4) * 0.5 + 0.5, 8)  # a tiny problem that runs every kernel (the MDS start included)


__all__ = ["gv_distance", "csq_centers", "mds_centers", "shc_centers", "make_centers", "center_report",
           "pairwise_distances", "distance_stats", "semantic_loss", "check_similarity", "METHODS",
           "MDS_DEFAULTS", "SHC_DEFAULTS", "kernels_compiled", "compile_kernels"]
