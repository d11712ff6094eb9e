"""MDS hash centers (Wang et al., CVPR 2023): every pair at least the Gilbert–Varshamov distance d apart.

Per-center sub-problem: min ĉᵀb (ĉ = mean of the other centers) over the ℓp-box relaxation of {±1}^q subject to
H_o b ≤ q − 2d, by ADMM (shc.centers._kernels.admm_center); Gauss–Seidel over centers until min distance ≥ d.

What differs from the public code, and why (the constraint is always verified before returning):
- start ("greedy", default): the Hadamard rows as in CSQ, then each further center is the first of up to
  `greedy_tries` random rows (balanced for even d, random signs for odd d) that is ≥ d from all centers so far (the fewest violations otherwise).
  At 32 and 64 bits this start usually meets d already, so the ADMM only repairs what is left; init="hadamard"
  gives the public code's plain start (random balanced completion without the distance test).
- one eigendecomposition per center instead of an inverse per inner iteration, early stop of a center whose sign
  pattern is feasible and stable, and only violating centers are re-solved (details in _kernels.py).
- once every pair is ≥ d apart, exact bit-flip descent on the ADMM's objective (Σ_i ĉ_iᵀh_i, the bit balance
  over centers) under the same constraint (_kernels.mds_polish) stands in for further ADMM sweeps: the objective
  ends at least as low as the public structure's at a fraction of the cost (tests compare the two).
- all randomness comes from `seed` (the public code's jitted multipliers were unseeded; here they start at 0).
"""
from __future__ import annotations

import numpy as np

from .bounds import distance_stats, gv_distance, verify_centers
from .csq import hadamard_start, is_power_of_two, random_balanced, random_signs

MDS_DEFAULTS = {
    "max_sweeps": 50,
    "rho0": 1e-5,
    "rho_growth": 1.09,
    "rho_max": 1e7,
    "gamma": (1 + 5 ** 0.5) / 2,
    "inner_iters": 10,
    "max_outer": 1000,
    "tol": 1e-6,
    "cap_patience": 100,
    "stable_checks": 5,
    "greedy_tries": 1024,
    "polish_passes": 20,
}


def check_hyper(hyper: dict, defaults: dict, method: str) -> dict:
    """Merge keyword hyper-parameters over the defaults; unknown names are a TypeError."""
    unknown = sorted(set(hyper) - set(defaults))
    if unknown:
        raise TypeError(f"{method}: unknown hyper-parameter(s) {unknown}; known: {sorted(defaults)}")
    return {**defaults, **hyper}


def greedy_start(classes: int, bits: int, d: int, rng: np.random.Generator, tries: int) -> np.ndarray:
    """Hadamard rows (q a power of two), then random balanced rows kept only if ≥ d from those before."""
    h = np.empty((classes, bits), dtype=np.int8)
    filled = min(classes, 2 * bits) if is_power_of_two(bits) else 0
    h[:filled] = hadamard_start(filled, bits, rng)
    dprime = bits - 2 * d
    batch = 16
    # Two balanced rows are always an even distance apart, so for odd d they would in effect need d + 1:
    # draw random signs then, balanced rows otherwise (balanced rows concentrate closer to q/2).
    draw = random_balanced if d % 2 == 0 else random_signs
    h32 = h.astype(np.int32)
    for c in range(filled, classes):
        best, best_viol = None, None
        for _ in range(0, tries, batch):
            cand = draw(batch, bits, rng)
            # integer matmul: no BLAS threads (their hand-off dominates such small products on a busy machine)
            viol = (cand.astype(np.int32) @ h32[:c].T > dprime).sum(axis=1)
            pick = int(np.argmin(viol))
            if best_viol is None or viol[pick] < best_viol:
                best, best_viol = cand[pick], viol[pick]
            if best_viol == 0:
                break
        h[c] = best
        h32[c] = best
    return h


def mds_start(classes: int, bits: int, d: int, seed: int, init: str, tries: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    if init == "greedy":
        return greedy_start(classes, bits, d, rng, tries)
    if init == "hadamard":
        return hadamard_start(classes, bits, rng)
    raise ValueError(f"mds: init must be 'greedy' or 'hadamard', got {init!r}")


def mds_centers(classes: int, bits: int, seed: int = 0, init: str = "greedy", **hyper) -> np.ndarray:
    """MDS centers: int8 C × q of ±1 with every pair ≥ gv_distance(q, C) apart (ValueError otherwise).

    hyper: any of MDS_DEFAULTS (the public code's ADMM settings, plus stable_checks and greedy_tries).
    """
    from ._kernels import mds_polish, mds_sweeps  # numba import deferred: `import shc.centers` stays light

    d = gv_distance(bits, classes)
    p = check_hyper(hyper, MDS_DEFAULTS, "mds")
    h = mds_start(classes, bits, d, seed, init, p["greedy_tries"]).astype(np.float64)
    mds_sweeps(h, d, p["max_sweeps"], p["rho0"], p["rho_growth"], p["rho_max"], p["gamma"], p["inner_iters"],
               p["max_outer"], p["tol"], p["cap_patience"], p["stable_checks"])
    if distance_stats(h)[0] >= d:
        mds_polish(h, d, p["polish_passes"])
    return verify_centers(h, classes, bits, d, "mds")
