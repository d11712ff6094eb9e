"""Numba inner loops of the MDS and SHC optimisers (rows are centers: h is C × q float64 of ±1).

Products are explicit loops (_mv, _mtv, _mm), not BLAS: the matrices are small (≤ 555 × 64) and a threaded BLAS
call costs milliseconds of thread hand-off on a busy machine (measured 16 ms for a 100 × 64 Gram matrix at load 5
on 2 cores), which dominated the run time.
No random numbers are drawn in here: every random choice is made in Python from the caller's `seed`, so the
kernels are deterministic functions of their inputs and a run is reproducible from one seed.
"""
from __future__ import annotations

import numpy as np
from numba import njit


@njit(cache=True)
def _mv(a, x):
    """a @ x"""
    out = np.zeros(a.shape[0])
    for i in range(a.shape[0]):
        acc = 0.0
        for k in range(a.shape[1]):
            acc += a[i, k] * x[k]
        out[i] = acc
    return out


@njit(cache=True)
def _mtv(a, x):
    """a.T @ x"""
    out = np.zeros(a.shape[1])
    for i in range(a.shape[0]):
        xi = x[i]
        for k in range(a.shape[1]):
            out[k] += a[i, k] * xi
    return out


@njit(cache=True)
def _mm(a, b):
    """a @ b"""
    out = np.zeros((a.shape[0], b.shape[1]))
    for i in range(a.shape[0]):
        for k in range(a.shape[1]):
            aik = a[i, k]
            if aik != 0.0:
                for j in range(b.shape[1]):
                    out[i, j] += aik * b[k, j]
    return out


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
    z3 = np.maximum(dprime - _mv(others, b), 0.0)
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
            rhs = rho * (z1 + z2) - y1 - y2 - cbar + _mtv(others, rho * (dprime - z3) - y3)
            b = _mv(vec, _mtv(vec, rhs) / (rho * (2.0 + lam)))
            z1 = np.minimum(np.maximum(b + y1 / rho, -1.0), 1.0)
            v = b + y2 / rho
            z2 = sqrt_q * v / np.sqrt(np.sum(v * v))
            ob = _mv(others, b)
            z3 = np.maximum(dprime - ob - y3 / rho, 0.0)
            y1 += gamma * rho * (b - z1)
            y2 += gamma * rho * (b - z2)
            y3 += gamma * rho * (ob + z3 - dprime)
        rho = min(rho * rho_growth, rho_max)
        if max(np.sqrt(np.sum((b - z1) ** 2)), np.sqrt(np.sum((b - z2) ** 2))) < tol:
            return _sign(b)
        s = _sign(b)
        dots = _mv(others, s)
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
    gram = _mm(h, h.T.copy())
    hth = _mm(h.T.copy(), h)
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
            dots = _mv(h, new)
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
            g = _mv(mmt, h[i]) - ms[i] + lam[i] + rho * (h[i] - m[i]) + penalty_scale * _mtv(h, w)
            cand = _sign(h[i] - g / eta)
            if np.all(cand == h[i]):
                continue
            dots = _mv(h, cand)
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
def flip_bit(h, gram, i, k):
    """Flip bit k of center i in place, keeping the Gram matrix HHᵀ in step (O(C))."""
    hik = h[i, k]
    for j in range(h.shape[0]):
        if j != i:
            gram[i, j] -= 2.0 * hik * h[j, k]
            gram[j, i] = gram[i, j]
    h[i, k] = -hik


@njit(cache=True)
def flip_keeps_distance(h, gram, i, k, dprime):
    """Whether flipping bit k of center i keeps every h_iᵀh_j ≤ q − 2d (distance ≥ d), j ≠ i."""
    hik = h[i, k]
    for j in range(h.shape[0]):
        if j != i and gram[i, j] - 2.0 * hik * h[j, k] > dprime:
            return False
    return True


@njit(cache=True)
def flip_loss_change(s, h, gram, i, k):
    """Change of Σ_j (s_ij − G_ij/q)² over row i (j ≠ i) if bit k of center i flipped."""
    q = h.shape[1]
    hik = h[i, k]
    change = 0.0
    for j in range(h.shape[0]):
        if j != i:
            g = gram[i, j] - 2.0 * hik * h[j, k]
            r_new = s[i, j] - g / q
            r_old = s[i, j] - gram[i, j] / q
            change += r_new * r_new - r_old * r_old
    return change


@njit(cache=True)
def flip_improves(s, h, gram, balance, i, k, semantic):
    """Whether flipping bit k of center i lowers the objective: SHC's ‖s − HHᵀ/q‖² / C² (semantic), else the MDS
    one. Σ_i ĉ_iᵀh_i = (‖b‖² − Cq)/(C − 1) with b = Σ_i h_i (``balance``): the MDS objective is the bit balance
    over centers, and the flip lowers ‖b‖² by 4(h_ik b_k − 1), i.e. strictly when h_ik b_k ≥ 2."""
    if semantic:
        return 2.0 * flip_loss_change(s, h, gram, i, k) / h.shape[0] ** 2 < -1e-12  # row and column: twice
    return h[i, k] * balance[k] >= 2.0


@njit(cache=True)
def flip_descent(h, d, max_passes, s, semantic):
    """Feasible coordinate descent, in place on h (C × q ±1 float64): in (center, bit) order, every flip that lowers
    the objective (``flip_improves``) and keeps each distance to the center ≥ d is taken, until a pass changes
    nothing or after ``max_passes``. The objective strictly decreases with each flip and the constraint is never
    broken. Each flip is O(C): a pass is O(C² q). Returns the number of flips."""
    classes, q = h.shape
    dprime = q - 2 * d
    gram = _mm(h, h.T.copy())
    balance = np.zeros(q)
    for i in range(classes):
        balance += h[i]
    flips = 0
    for _ in range(max_passes):
        before = flips
        for i in range(classes):
            for k in range(q):
                if not flip_improves(s, h, gram, balance, i, k, semantic):
                    continue
                if not flip_keeps_distance(h, gram, i, k, dprime):
                    continue
                balance[k] -= 2.0 * h[i, k]
                flip_bit(h, gram, i, k)
                flips += 1
        if flips == before:
            break
    return flips


@njit(cache=True)
def mds_polish(h, d, max_passes):
    """Descent on the MDS objective once the constraint holds (``flip_descent``): this replaces the public
    code's further full sweeps of the ADMM over already-feasible centers. Returns the number of flips."""
    return flip_descent(h, d, max_passes, np.zeros((1, 1)), False)


@njit(cache=True)
def shc_polish(s, h, d, max_passes):
    """Descent on ‖s − HHᵀ/q‖² after the ADMM (``flip_descent``; s symmetric). The public H-step moves few bits
    (on Fashion-MNIST's S: 3–5 of 160 at 16 bits, none at 64 — docs/compare.md), so its result is a poor minimiser
    of the very objective SHC states. Returns the number of flips."""
    return flip_descent(h, d, max_passes, s, True)


@njit(cache=True)
def shc_run(s, h, d, rho, mu, lambda0, alpha0, beta, eta, penalty_scale, epochs, sweeps):
    """The SHC epochs (see semantic.py) from start h (C × q ±1 float64, not modified).

    s must be symmetric. Returns (best H, its loss ‖s − HHᵀ/q‖²_F / C²) over the epochs, the start included.
    """
    classes, q = h.shape
    dprime = q - 2 * d
    h = h.copy()
    lam = np.full((classes, q), lambda0)
    alpha = np.full((classes, classes), alpha0)
    gram = _mm(h, h.T.copy())
    best = h.copy()
    best_loss = _loss(s, gram, q)
    eye = np.eye(q)
    for _ in range(epochs):
        # M-step (rows): ((2/q²) HᵀH + ρI) Mᵀ = ((2/q) S H + Λ + ρH)ᵀ — a q × q solve, no explicit inverse
        a = 2.0 / q**2 * _mm(h.T.copy(), h) + rho * eye
        m = np.linalg.solve(a, (2.0 / q * _mm(s, h) + lam + rho * h).T.copy()).T.copy()
        k = np.maximum(dprime - gram + alpha / beta, 0.0)
        shc_h_step(h, gram, 2.0 / q**2 * _mm(m.T.copy(), m), 2.0 / q * _mm(s, m), m, lam, alpha, k, dprime, rho,
                   mu, beta, eta, penalty_scale, sweeps)
        lam += rho * (h - m)
        alpha += beta * (dprime - gram - k)
        loss = _loss(s, gram, q)
        if loss < best_loss:
            best[:] = h
            best_loss = loss
    return best, best_loss


@njit(cache=True)
def _loss(s, gram, q):
    classes = s.shape[0]
    acc = 0.0
    for i in range(classes):
        for j in range(classes):
            r = s[i, j] - gram[i, j] / q
            acc += r * r
    return acc / classes**2


def cached() -> bool:
    """Whether numba's on-disk cache holds machine code for every kernel of this source (else the first call
    compiles them: ~15 s). Reads numba's cache index; False when that cannot be read."""
    kernels = [obj for obj in globals().values() if hasattr(obj, "_cache") and hasattr(obj, "py_func")]
    try:
        return all(kernel._cache._cache_file._load_index() for kernel in kernels)
    except Exception:  # numba's cache layout is internal: when it changes, assume a compile
        return False
