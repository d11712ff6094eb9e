"""Numba inner loops of the MDS and SHC optimisers (rows are centers: h is C × q float64 of ±1).

No random numbers are drawn in here: every random choice is made in Python from the caller's `seed`, so the
kernels are deterministic functions of their inputs and a run is reproducible from one seed.
"""
from __future__ import annotations

import numpy as np
from numba import njit


@njit(cache=True)
def _sign(x):
    out = np.empty(x.size)
    for k in range(x.size):
        out[k] = 1.0 if x[k] >= 0.0 else -1.0
    return out


@njit(cache=True)
def admm_center(h_i, others, others_gram, dprime, rho0, rho_growth, rho_max, gamma, inner_iters, max_outer,
                tol, cap_patience, stable_checks):
    """ℓp-box ADMM for one center: min ĉᵀb over b ∈ [−1,1]^q ∩ {‖b‖² = q}, others @ b ≤ q − 2d.

    Same iteration as the public code, two changes for speed:
    - the b-step matrix ρ(2I + H_oᵀH_o) has the eigenvectors of H_oᵀH_o whatever ρ is, so one eigh per center
      replaces an inverse per inner iteration: b = V diag(1 / (ρ(2 + λ))) Vᵀ rhs, O(q²) per iteration;
    - the center stops as soon as sign(b) satisfies every distance constraint and has stayed the same for
      `stable_checks` outer iterations (the public code runs on to the residual tolerance or the ρ cap).
    Returns the new ±1 center.
    """
    q = h_i.size
    n = others.shape[0]
    cbar = np.zeros(q)
    for j in range(n):
        cbar += others[j]
    cbar /= n
    lam, vec = np.linalg.eigh(others_gram)
    b = h_i.copy()
    z1 = b.copy()
    z2 = b.copy()
    z3 = np.maximum(dprime - others @ b, 0.0)
    y1 = np.zeros(q)
    y2 = np.zeros(q)
    y3 = np.zeros(n)
    rho = rho0
    sqrt_q = np.sqrt(q)
    cap_iters = 0
    best = _sign(b)
    best_score = -np.inf
    have_best = False
    stable = 0
    last = _sign(b)
    for _ in range(max_outer):
        for _ in range(inner_iters):
            rhs = rho * (z1 + z2) - y1 - y2 - cbar + others.T @ (rho * (dprime - z3) - y3)
            b = vec @ ((vec.T @ rhs) / (rho * (2.0 + lam)))
            z1 = np.minimum(np.maximum(b + y1 / rho, -1.0), 1.0)
            v = b + y2 / rho
            z2 = sqrt_q * v / np.sqrt(np.sum(v * v))
            ob = others @ b
            z3 = np.maximum(dprime - ob - y3 / rho, 0.0)
            y1 += gamma * rho * (b - z1)
            y2 += gamma * rho * (b - z2)
            y3 += gamma * rho * (ob + z3 - dprime)
        rho = min(rho * rho_growth, rho_max)
        if max(np.sqrt(np.sum((b - z1) ** 2)), np.sqrt(np.sum((b - z2) ** 2))) < tol:
            return _sign(b)
        s = _sign(b)
        dots = others @ s
        if np.all(dots <= dprime) and np.all(s == last):
            stable += 1
            if stable >= stable_checks:
                return s
        else:
            stable = 0
        last = s
        if rho >= rho_max:
            dist = (q - dots) / 2.0
            score = dist.mean() + dist.min() - dist.var()
            if score > best_score:
                best, best_score, have_best = s, score, True
            cap_iters += 1
            if cap_iters >= cap_patience:
                break
    return best if have_best else _sign(b)


@njit(cache=True)
def mds_sweeps(h, d, max_sweeps, rho0, rho_growth, rho_max, gamma, inner_iters, max_outer, tol, cap_patience,
               stable_checks):
    """Gauss–Seidel over centers, in place on h, until every pair is ≥ d apart. Returns (sweeps, ADMM runs).

    Only centers that currently violate a constraint are re-optimised (a feasible center is left alone: the
    objective it would improve, the mean distance, is already ≈ q/2 for balanced centers), and the sweep stops
    the moment the last violation disappears — the public code re-solves every center every sweep. A new center
    is accepted unless it has more violations than the one it replaces. Pair violations are tracked
    incrementally from the Gram matrix (O(Cq) per accepted center).
    """
    classes, q = h.shape
    dprime = q - 2 * d
    gram = h @ h.T
    hth = h.T @ h
    nviol = np.zeros(classes, dtype=np.int64)
    for i in range(classes):
        for j in range(classes):
            if j != i and gram[i, j] > dprime:
                nviol[i] += 1
    total = nviol.sum() // 2
    others = np.empty((classes - 1, q))
    runs = 0
    sweeps = 0
    changed = True
    # A sweep that changes no center would be repeated identically (the kernel is deterministic): stop then.
    while sweeps < max_sweeps and total > 0 and changed:
        sweeps += 1
        changed = False
        for i in range(classes):
            if nviol[i] == 0:
                continue
            r = 0
            for j in range(classes):
                if j != i:
                    others[r] = h[j]
                    r += 1
            old = h[i].copy()
            new = admm_center(old, others, hth - np.outer(old, old), dprime, rho0, rho_growth, rho_max, gamma,
                              inner_iters, max_outer, tol, cap_patience, stable_checks)
            runs += 1
            dots = h @ new
            new_viol = 0
            for j in range(classes):
                if j != i and dots[j] > dprime:
                    new_viol += 1
            if new_viol > nviol[i] or np.all(new == old):
                continue
            changed = True
            for j in range(classes):
                if j == i:
                    continue
                was, now = gram[i, j] > dprime, dots[j] > dprime
                if was != now:
                    nviol[j] += 1 if now else -1
                    total += 1 if now else -1
                gram[i, j] = dots[j]
                gram[j, i] = dots[j]
            nviol[i] = new_viol
            hth += np.outer(new, new) - np.outer(old, old)
            h[i] = new
            if total == 0:
                break
    return sweeps, runs


@njit(cache=True)
def shc_h_step(h, gram, mmt, ms, m, lam, alpha, k, dprime, rho, mu, beta, eta, penalty_scale, sweeps):
    """SHC H-step in place on h (and its Gram matrix): `sweeps` Gauss–Seidel passes over the centers.

    g_i = mmt h_i − ms_i + Λ_i + ρ(h_i − m_i) + penalty_scale · Σ_{j≠i} w_ij h_j with
    w_ij = 2μ − 2α_ij + 2β(h_iᵀh_j − (q − 2d − K_ij)) — the correct gradient of β(h_iᵀh_j − …)², i.e. 2β h_j h_jᵀh_i
    (the public code's expression evaluates to 2q·h_i). mmt = (2/q²) MᵀM, ms_i = (2/q) Σ_j S_ij m_j.
    h_i⁺ = sign(h_i − g_i/η) is accepted only if it keeps every pair (i, j) ≥ d apart — the pairs that involve
    center i, not the global minimum, so infeasible starting pairs do not freeze every update.
    Returns the number of accepted changes.
    """
    classes, q = h.shape
    changed = 0
    for _ in range(sweeps):
        for i in range(classes):
            w = 2.0 * mu - 2.0 * alpha[i] + 2.0 * beta * (gram[i] - (dprime - k[i]))
            w[i] = 0.0
            g = mmt @ h[i] - ms[i] + lam[i] + rho * (h[i] - m[i]) + penalty_scale * (h.T @ w)
            cand = _sign(h[i] - g / eta)
            if np.all(cand == h[i]):
                continue
            dots = h @ cand
            ok = True
            for j in range(classes):
                if j != i and dots[j] > dprime:
                    ok = False
                    break
            if not ok:
                continue
            h[i] = cand
            for j in range(classes):
                gram[i, j] = dots[j]
                gram[j, i] = dots[j]
            gram[i, i] = q
            changed += 1
    return changed


@njit(cache=True)
def mds_polish(h, d, max_passes):
    """Exact coordinate descent on the MDS objective once the constraint holds, in place on h.

    Σ_i ĉ_iᵀh_i = (‖Σ_i h_i‖² − Cq)/(C − 1): the objective is the bit balance over centers. Flipping bit k of h_i
    lowers ‖s‖² (s = Σ_i h_i) by 4(h_ik s_k − 1), so the flip is taken when h_ik s_k ≥ 2 and every distance to h_i
    stays ≥ d. The objective strictly decreases with each flip and the constraint is never broken; this replaces
    the public code's further full sweeps of the ADMM over already-feasible centers. Returns the number of flips.
    """
    classes, q = h.shape
    dprime = q - 2 * d
    s = np.zeros(q)
    for i in range(classes):
        s += h[i]
    gram = h @ h.T
    flips = 0
    for _ in range(max_passes):
        before = flips
        for i in range(classes):
            for k in range(q):
                hik = h[i, k]
                if hik * s[k] < 2.0:
                    continue
                ok = True
                for j in range(classes):
                    if j != i and gram[i, j] - 2.0 * hik * h[j, k] > dprime:
                        ok = False
                        break
                if not ok:
                    continue
                for j in range(classes):
                    if j != i:
                        gram[i, j] -= 2.0 * hik * h[j, k]
                        gram[j, i] = gram[i, j]
                s[k] -= 2.0 * hik
                h[i, k] = -hik
                flips += 1
        if flips == before:
            break
    return flips
