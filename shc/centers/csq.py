"""CSQ hash centers (Yuan et al., CVPR 2020): Hadamard rows and their negations, random completion.

Also the starting point of the MDS optimiser, so the construction lives here once.
"""
from __future__ import annotations

import warnings

import numpy as np
from scipy.linalg import hadamard

from .bounds import distance_stats, gv_distance, verify_centers


def is_power_of_two(n: int) -> bool:
    return n >= 1 and n & (n - 1) == 0


def random_balanced(count: int, bits: int, rng: np.random.Generator) -> np.ndarray:
    """count × bits ±1 rows, each with bits // 2 entries −1 at random positions."""
    ranks = np.argsort(np.argsort(rng.random((count, bits)), axis=1), axis=1)  # a random permutation per row
    return np.where(ranks < bits // 2, -1, 1).astype(np.int8)


def random_signs(count: int, bits: int, rng: np.random.Generator) -> np.ndarray:
    """count × bits i.i.d. uniform ±1 (int8)."""
    return rng.choice(np.array([-1, 1], dtype=np.int8), size=(count, bits))


def hadamard_start(classes: int, bits: int, rng: np.random.Generator) -> np.ndarray:
    """CSQ's construction: q a power of two → rows of [Had(q); −Had(q)] (pairwise q/2 or q apart), the first C,
    and random balanced rows for the classes beyond 2q; otherwise i.i.d. random signs. int8 C × q."""
    if not is_power_of_two(bits):
        return random_signs(classes, bits, rng)
    had = hadamard(bits).astype(np.int8)
    both = np.concatenate([had, -had])[:classes]
    if classes <= 2 * bits:
        return both
    return np.concatenate([both, random_balanced(classes - 2 * bits, bits, rng)])


def csq_centers(classes: int, bits: int, seed: int = 0, draws: int = 20, strict: bool = False) -> np.ndarray:
    """CSQ centers, int8 C × q of ±1.

    When a random part is needed (2q < C, or q not a power of two), `draws` completions are drawn and the one
    with the largest (min, mean) pairwise distance is kept. CSQ does not guarantee the Gilbert–Varshamov distance d:
    with strict=False a shortfall is reported with a warning (and always in center_report's `meets_d`);
    strict=True raises ValueError instead. Identical centers always raise.
    """
    d = gv_distance(bits, classes)  # validates the arguments, including C <= 2^q
    if not isinstance(draws, int) or draws < 1:
        raise ValueError(f"draws must be a positive integer, got {draws!r}")
    rng = np.random.default_rng(seed)
    random_part = not is_power_of_two(bits) or classes > 2 * bits
    best, best_key = None, None
    for _ in range(draws if random_part else 1):
        h = hadamard_start(classes, bits, rng)
        dmin, dmean, _ = distance_stats(h)
        if best_key is None or (dmin, dmean) > best_key:
            best, best_key = h, (dmin, dmean)
    if best_key[0] < d:
        if strict or best_key[0] == 0:
            verify_centers(best, classes, bits, d if strict else 1, "csq")  # raises with the numbers
        warnings.warn(f"csq: minimum pairwise distance {best_key[0]} < Gilbert-Varshamov d = {d} "
                      f"for {classes} classes at {bits} bits (use mds or shc centers to guarantee d)",
                      stacklevel=2)
    return verify_centers(best, classes, bits, min(d, best_key[0]), "csq")
