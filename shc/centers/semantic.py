"""SHC semantic hash centers: min ‖S − HHᵀ/q‖²_F over ±1 centers with every pair ≥ d apart.

ADMM-style splitting (paper / public code), H here is C × q (rows are centers), M ≈ H real, slack K ≥ 0, multipliers
Λ (C × q) and α (C × C), penalties ρ and β. One epoch:
  M-step  M = ((2/q²) HᵀH + ρI)⁻¹ ((2/q) S H + Λ + ρH)      (rows; a q × q solve, no explicit inverse)
  K-step  K = max(q − 2d − HHᵀ + α/β, 0)
  H-step  `sweeps` Gauss–Seidel passes of h_i ← sign(h_i − g_i/η), accepted only if feasible (_kernels.shc_h_step)
  Λ += ρ(H − M);  α_ij += β(q − 2d − h_iᵀh_j − K_ij) for all i ≠ j
and the H with the lowest loss over the epochs, the start included, is kept. Then (not in the public code) a
feasible bit-flip descent on the same objective (_kernels.shc_polish): only flips that lower the loss and keep every
pair ≥ d, so the constraint holds and the objective can only improve; `polish_passes=0` gives the public method.

Public-code defects fixed here: (1) α is a float matrix updated on all pairs (it was an int tensor, one column
updated with a stale index); (2) the penalty gradient is 2β h_j (h_jᵀh_i), not 2q·h_i; (3) acceptance tests only the
pairs involving the updated center, and the final minimum distance is verified; (4) S is symmetrised once,
S ← (S + Sᵀ)/2, before everything: for symmetric HHᵀ, ‖S − HHᵀ/q‖² = ‖sym(S) − HHᵀ/q‖² + ‖skew(S)‖², so this
has the same minimiser and makes "H S" (M-step) and "s_i" (H-step) the same thing; (5) (caching) is the caller's.
"""
from __future__ import annotations

import numpy as np

from .bounds import check_similarity, gv_distance, verify_centers
from .mds import check_hyper, mds_centers

SHC_DEFAULTS = {
    "rho": 0.2,
    "mu": 0.625,
    "lambda0": 0.1,
    "alpha0": 0.0,
    "beta": 1e-6,
    "eta": 0.5,  # "dataset-dependent" in the public code
    "epochs": 30,
    "sweeps": 3,
    "penalty_scale": 1e-4,  # the public code's 1/10⁴ on the distance terms of the gradient
    "polish_passes": 100,  # feasible bit-flip descent after the ADMM (_kernels.shc_polish); 0 = the public method
}


def shc_optimise(similarity: np.ndarray, start: np.ndarray, d: int, **hyper) -> tuple[np.ndarray, float]:
    """Run the SHC iteration from a ±1 C × q start; returns (best float64 H, its loss with the symmetrised S)."""
    from ._kernels import _loss, _mm, shc_polish, shc_run  # numba import deferred: `import shc.centers` stays light

    p = check_hyper(hyper, SHC_DEFAULTS, "shc")
    rho, beta, eta = float(p["rho"]), float(p["beta"]), float(p["eta"])
    if rho <= 0 or beta <= 0 or eta <= 0:
        raise ValueError(f"shc: rho, beta and eta must be > 0, got {rho}, {beta}, {eta}")
    if int(p["epochs"]) < 0 or int(p["sweeps"]) < 0:
        raise ValueError(f"shc: epochs and sweeps must be >= 0, got {p['epochs']}, {p['sweeps']}")
    if int(p["polish_passes"]) < 0:
        raise ValueError(f"shc: polish_passes must be >= 0, got {p['polish_passes']}")
    s = (similarity + similarity.T) / 2
    best, loss = shc_run(s, np.array(start, dtype=np.float64), d, rho, float(p["mu"]), float(p["lambda0"]),
                         float(p["alpha0"]), beta, eta, float(p["penalty_scale"]), int(p["epochs"]), int(p["sweeps"]))
    if int(p["polish_passes"]) > 0 and shc_polish(s, best, d, int(p["polish_passes"])) > 0:
        loss = _loss(s, _mm(best, best.T.copy()), best.shape[1])
    return best, loss


def shc_centers(similarity, bits: int, seed: int = 0, init=None, **hyper) -> np.ndarray:
    """SHC centers for a C × C class-similarity matrix: int8 C × q of ±1, every pair ≥ gv_distance(q, C) apart.

    init: a C × q ±1 start (must meet d), or None for mds_centers(C, bits, seed). hyper: any of SHC_DEFAULTS.
    """
    s = check_similarity(similarity)
    classes = s.shape[0]
    d = gv_distance(bits, classes)
    if init is None:
        start = mds_centers(classes, bits, seed=seed)
    else:
        start = verify_centers(np.asarray(init), classes, bits, d, "shc init")
    best, _ = shc_optimise(s, start, d, **hyper)
    return verify_centers(best, classes, bits, d, "shc")
