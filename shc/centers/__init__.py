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
    published SHC); csq takes none. ValueError, before any work, for a seed out of range or sizes this machine's
    memory cannot hold."""
    check_seed(seed)
    check_center_memory(method, classes, bits)
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


def check_seed(seed, what: str = "seed") -> None:
    """ValueError unless ``seed`` is an integer from 0 to 2**63 - 1 (numpy and torch take those, the same way)."""
    import numpy as np
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or not 0 <= seed < 2 ** 63:
        raise ValueError(f"{what} must be an integer from 0 to 2**63 - 1, got {seed!r}")


def center_memory(method: str, classes: int, bits: int) -> int:
    """Bytes the generator and its report need at most, about: C x C pairwise distances and similarities (a few
    float64 / int64 matrices; MDS and SHC keep more of them while optimising) and C x q float codes."""
    matrices = 2 if method == "csq" else 4
    return int(classes) ** 2 * 8 * matrices + int(classes) * int(bits) * 8 * 2


def check_center_memory(method: str, classes: int, bits: int) -> None:
    """ValueError when the centers of ``classes`` x ``bits`` cannot be held in this machine's memory (rather than
    a MemoryError, or the machine swapping, part way)."""
    import os

    from shc.atomic import human_size
    need = center_memory(method, classes, bits)
    try:
        total = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, ValueError, OSError):  # not POSIX: nothing to compare with
        return
    if need > total:
        raise ValueError(f"{classes:,} classes x {bits} bits: {method} centers need about {human_size(need)} of "
                         f"memory (C x C pairwise matrices), more than this machine's {human_size(total)}")


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
