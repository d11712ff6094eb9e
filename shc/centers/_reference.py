"""Plain NumPy baselines with the public code's structure — the yardstick for tests and bench/, not for use.

MDS: every center in every sweep, the b-step matrix built and inverted explicitly in every inner iteration,
no early stop per center. SHC: Python loops over centers, explicit inverse in the M-step. Both take the same
start and hyper-parameters as the fast versions (shc.centers.mds / semantic) and use the same fixed conventions
(seeded start, float α over all pairs, correct penalty gradient, per-center acceptance test), so the fast
versions can be checked against them on small cases.
"""
from __future__ import annotations

import numpy as np

from .bounds import distance_stats, semantic_loss
from .mds import MDS_DEFAULTS
from .semantic import SHC_DEFAULTS


def _sign(x):
    return np.where(x >= 0, 1.0, -1.0)


def admm_center_reference(h, others, dprime, rho0, rho_growth, rho_max, gamma, inner_iters, max_outer, tol,
                          cap_patience):
    """ℓp-box ADMM for one center: min ĉᵀb, b ∈ {±1}^q, others @ b ≤ q − 2d. Returns the new ±1 center."""
    q = h.size
    cbar = others.mean(axis=0)
    b = h.astype(np.float64).copy()
    z1, z2 = b.copy(), b.copy()
    z3 = np.maximum(dprime - others @ b, 0.0)
    y1, y2, y3 = np.zeros(q), np.zeros(q), np.zeros(len(others))
    rho, cap_iters, best, best_score = rho0, 0, None, -np.inf
    for _ in range(max_outer):
        for _ in range(inner_iters):
            a = rho * (2.0 * np.eye(q) + others.T @ others)
            rhs = rho * z1 + rho * z2 + rho * others.T @ (dprime - z3) - y1 - y2 - others.T @ y3 - cbar
            b = np.linalg.inv(a) @ rhs
            z1 = np.clip(b + y1 / rho, -1.0, 1.0)
            v = b + y2 / rho
            z2 = np.sqrt(q) * v / np.linalg.norm(v)
            ob = others @ b
            z3 = np.maximum(dprime - ob - y3 / rho, 0.0)
            y1 = y1 + gamma * rho * (b - z1)
            y2 = y2 + gamma * rho * (b - z2)
            y3 = y3 + gamma * rho * (ob + z3 - dprime)
        rho = min(rho * rho_growth, rho_max)
        if max(np.linalg.norm(b - z1), np.linalg.norm(b - z2)) < tol:
            return _sign(b)
        if rho >= rho_max:
            s = _sign(b)
            dist = (q - others @ s) / 2
            score = dist.mean() + dist.min() - dist.var()
            if score > best_score:
                best, best_score = s, score
            cap_iters += 1
            if cap_iters >= cap_patience:
                break
    return best if best is not None else _sign(b)


def mds_reference(start: np.ndarray, d: int, **hyper) -> np.ndarray:
    """Gauss–Seidel sweeps of the per-center ADMM over all centers until the minimum distance reaches d."""
    p = {**MDS_DEFAULTS, **hyper}
    h = np.asarray(start, dtype=np.float64).copy()
    classes, q = h.shape
    for _ in range(p["max_sweeps"]):
        if distance_stats(h)[0] >= d:
            break
        for i in range(classes):
            others = np.delete(h, i, axis=0)
            h[i] = admm_center_reference(h[i], others, q - 2 * d, p["rho0"], p["rho_growth"], p["rho_max"],
                                         p["gamma"], p["inner_iters"], p["max_outer"], p["tol"],
                                         p["cap_patience"])
    return h.astype(np.int8)


def shc_reference(similarity: np.ndarray, start: np.ndarray, d: int, **hyper) -> np.ndarray:
    """The SHC M / K / H / multiplier iteration written out with Python loops (see shc.centers.semantic)."""
    p = {**SHC_DEFAULTS, **hyper}
    s = np.asarray(similarity, dtype=np.float64)
    s = (s + s.T) / 2
    h = np.asarray(start, dtype=np.float64).T.copy()  # q × C, the paper's layout
    q, classes = h.shape
    dprime = q - 2 * d
    rho, beta, mu, eta, scale = p["rho"], p["beta"], p["mu"], p["eta"], p["penalty_scale"]
    lam = np.full((q, classes), float(p["lambda0"]))
    alpha = np.full((classes, classes), float(p["alpha0"]))
    best, best_loss = h.copy(), semantic_loss(s, h.T)
    for _ in range(p["epochs"]):
        m = np.linalg.inv(2.0 / q**2 * h @ h.T + rho * np.eye(q)) @ (2.0 / q * h @ s + lam + rho * h)
        k = np.maximum(dprime - h.T @ h + alpha / beta, 0.0)
        for _ in range(p["sweeps"]):
            for i in range(classes):
                g = 2.0 / q**2 * m @ m.T @ h[:, i] - 2.0 / q * m @ s[:, i] + lam[:, i] + rho * (h[:, i] - m[:, i])
                pen = np.zeros(q)
                for j in range(classes):
                    if j != i:
                        pen += (2 * mu * h[:, j] - 2 * alpha[i, j] * h[:, j]
                                + beta * (2 * h[:, j] * (h[:, j] @ h[:, i]) - 2 * (dprime - k[i, j]) * h[:, j]))
                g = g + scale * pen
                cand = _sign(h[:, i] - g / eta)
                others = np.delete(h, i, axis=1)
                if np.all(cand @ others <= dprime):
                    h[:, i] = cand
        lam = lam + rho * (h - m)
        alpha = alpha + beta * (dprime - h.T @ h - k)
        loss = semantic_loss(s, h.T)
        if loss < best_loss:
            best, best_loss = h.copy(), loss
    return best.T.astype(np.int8)
