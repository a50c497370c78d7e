"""Kvaerno's ESDIRK 3(2) with forward sensitivities (the "stiff" method).

A-L stable, stiffly accurate, 4 stages with an explicit first stage (Kvaerno 2004, BIT 44:489).
Each implicit stage z_i = y_n + h * sum_j a_ij k_j + h * gamma * k_i, k_i = f(z_i), is solved by
full Newton iteration. Sensitivities follow the staggered direct method: with J_i and P_i the
exact Jacobians df/dy and df/dtheta at the converged stage,

    (I - h gamma J_i) Z_i = S_n + h * sum_{j<i} a_ij K_j + h gamma P_i,   K_i = J_i Z_i + P_i,

which is the exact derivative of the discrete scheme. Steps end exactly on output times, so
outputs carry no interpolation error.
"""

import numpy as np

from .common import (
    FACTORIZATIONS,
    MAX_STEPS,
    NOT_FINITE,
    REJECTED,
    STEP_TOO_SMALL,
    STEPS,
    SUCCESS,
    all_finite,
    compile_kernel,
    lu_factor,
    lu_solve,
    lu_solve_columns,
)
from .control import (
    after_acceptance,
    after_rejection,
    first_step,
    first_step_guess,
    rms_norm,
    too_small,
)

GAMMA = 0.43586652150
_a31 = (-4 * GAMMA**2 + 6 * GAMMA - 1) / (4 * GAMMA)
_a32 = (-2 * GAMMA + 1) / (4 * GAMMA)
_a41 = (6 * GAMMA - 1) / (12 * GAMMA)
_a42 = -1 / ((24 * GAMMA - 12) * GAMMA)
_a43 = (-6 * GAMMA**2 + 6 * GAMMA - 1) / (6 * GAMMA - 3)
C = np.array([0.0, 2 * GAMMA, 1.0, 1.0])
A = np.array(
    [
        [0.0, 0.0, 0.0],
        [GAMMA, 0.0, 0.0],
        [_a31, _a32, 0.0],
        [_a41, _a42, _a43],
    ]
)
# Newton starting guesses from the stages already known (as in diffrax's Kvaerno3).
PREDICT = np.array(
    [
        [0.0, 0.0, 0.0],
        [1.0, 0.0, 0.0],
        [1.0 - 1 / (2 * GAMMA), 1 / (2 * GAMMA), 0.0],
        [_a31, _a32, GAMMA],
    ]
)
# Error weights: 3rd-order solution (stage 4) minus the embedded 2nd-order one (stage 3).
E = np.array([_a41 - _a31, _a42 - _a32, _a43 - GAMMA, GAMMA])
ORDER = 3
MAX_FACTOR = 5.0
NEWTON_TOL = 1e-5  # weighted RMS of the Newton update, in units of the error tolerance
NEWTON_MAX_ITER = 8


def make_advance(fn, n_states, n_theta, key):
    """Build the Kvaerno3 segment integrator for one model's generated functions ``fn``."""
    rhs, jac, jac_theta = fn.rhs, fn.jac, fn.jac_theta

    def newton(t, h, base, z, th, f, J, M, piv, delta, rtol, atol, counts):
        """Solve z = base + h*gamma*f(t, z) in place; return False if it does not converge."""
        n = z.shape[0]
        previous = np.inf
        for _ in range(NEWTON_MAX_ITER):
            rhs(t, z, th, f)
            jac(t, z, th, J)
            for i in range(n):
                for j in range(n):
                    M[i, j] = -h * GAMMA * J[i, j]
                M[i, i] += 1.0
                delta[i] = base[i] + h * GAMMA * f[i] - z[i]
            counts[FACTORIZATIONS] += 1
            if not lu_factor(M, piv):
                return False
            lu_solve(M, piv, delta)
            for i in range(n):
                z[i] += delta[i]
            size = rms_norm(delta, z, z, rtol, atol)
            if not np.isfinite(size) or size > 2.0 * previous:
                return False
            if size <= NEWTON_TOL:
                return True
            previous = size
        return False

    newton = compile_kernel(newton, f"{key}.stiff.newton")

    def advance(t0, t1, h0, y, S, th, active, t_out, k_out, k_end, Y, SY, rtol, atol, max_steps,
                counts):
        # As in the explicit kernel, the step loop takes no slices or rows of arrays (numba
        # counts references to views atomically) and allocates nothing: stage values pass
        # through the buffers z (states) and Z (sensitivities).
        n, q = n_states, n_theta
        ks = np.empty((4, n))
        zs = np.empty((4, n))
        KS = np.empty((4, n, q))
        base = np.empty(n)
        baseS = np.empty((n, q))
        z = np.empty(n)
        y_new = np.empty(n)
        Z = np.empty((n, q))
        f = np.empty(n)
        J = np.empty((n, n))
        P = np.empty((n, q))
        M = np.empty((n, n))
        piv = np.empty(n, dtype=np.int64)
        delta = np.empty(n)
        err = np.empty(n)
        row = np.empty(q)
        t = t0
        while k_out < k_end and t_out[k_out] <= t0:
            k_out += 1
        rhs(t, y, th, ks[0])
        if not (all_finite(y) and all_finite(ks[0])):
            return NOT_FINITE, t, h0
        if h0 > 0.0:
            h = h0
        else:
            h, d1 = first_step_guess(y, ks[0], rtol, atol)
            h = min(h, t1 - t0)
            for i in range(n):
                zs[1, i] = y[i] + h * ks[0, i]
            rhs(t + h, zs[1], th, ks[1])
            h = first_step(h, d1, y, ks[0], ks[1], rtol, atol, ORDER - 1, t1 - t0)
        jac(t, y, th, J)
        jac_theta(t, y, th, active, P)
        KS[0] = J @ S + P
        while t < t1:
            if counts[STEPS] >= max_steps:
                return MAX_STEPS, t, h
            if too_small(h, t):
                return STEP_TOO_SMALL, t, h
            # End the step on the next output time (or the segment end).
            t_target = t1
            if k_out < k_end and t_out[k_out] < t1:
                t_target = t_out[k_out]
            h_step = min(h, t_target - t)
            hits = h_step >= t_target - t
            counts[STEPS] += 1
            ok = True
            for s in range(1, 4):
                for i in range(n):
                    acc = 0.0
                    guess = 0.0
                    for j in range(s):
                        acc += A[s, j] * ks[j, i]
                        guess += PREDICT[s, j] * ks[j, i]
                    base[i] = y[i] + h_step * acc
                    z[i] = y[i] + h_step * guess
                if not newton(t + C[s] * h_step, h_step, base, z, th, f, J, M, piv, delta,
                              rtol, atol, counts):
                    ok = False
                    break
                for i in range(n):
                    zs[s, i] = z[i]
                    ks[s, i] = (z[i] - base[i]) / (h_step * GAMMA)
            if not ok:
                counts[REJECTED] += 1
                h = h_step * 0.25
                continue
            for i in range(n):
                y_new[i] = zs[3, i]  # stiffly accurate: the last stage is the new state
                acc = 0.0
                for j in range(4):
                    acc += E[j] * ks[j, i]
                err[i] = h_step * acc
            e = rms_norm(err, y, y_new, rtol, atol)
            if not e <= 1.0:  # too large, or NaN
                counts[REJECTED] += 1
                h = after_rejection(h_step, e, ORDER)
                continue
            if not all_finite(y_new):
                return NOT_FINITE, t, h
            # Accepted: sensitivities through the same stages (staggered direct method).
            for s in range(1, 4):
                ts = t + C[s] * h_step
                for i in range(n):
                    z[i] = zs[s, i]
                jac(ts, z, th, J)
                jac_theta(ts, z, th, active, P)
                for i in range(n):
                    for j in range(n):
                        M[i, j] = -h_step * GAMMA * J[i, j]
                    M[i, i] += 1.0
                    for p in range(q):
                        acc = 0.0
                        for j in range(s):
                            acc += A[s, j] * KS[j, i, p]
                        baseS[i, p] = S[i, p] + h_step * acc
                counts[FACTORIZATIONS] += 1
                lu_factor(M, piv)
                hg = h_step * GAMMA
                for i in range(n):
                    for p in range(q):
                        Z[i, p] = baseS[i, p] + hg * P[i, p]
                lu_solve_columns(M, piv, Z, row)
                for i in range(n):
                    for p in range(q):
                        KS[s, i, p] = (Z[i, p] - baseS[i, p]) / (h_step * GAMMA)
            t = t_target if hits else t + h_step
            for i in range(n):
                y[i] = y_new[i]
                ks[0, i] = ks[3, i]
                for p in range(q):
                    S[i, p] = Z[i, p]
                    KS[0, i, p] = KS[3, i, p]
            while k_out < k_end and t_out[k_out] <= t:
                Y[k_out] = y
                SY[k_out] = S
                k_out += 1
            # A step shortened to hit an output time does not shrink the next one.
            h_next = after_acceptance(h_step, e, ORDER, MAX_FACTOR)
            h = max(h, h_next) if hits else h_next
        return SUCCESS, t, h

    return compile_kernel(advance, f"{key}.stiff.advance")
