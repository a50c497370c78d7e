"""Dormand-Prince 5(4) with dense output and forward sensitivities (the "explicit" method).

The sensitivities S = dy/dtheta are advanced with the same Runge-Kutta stages as the states,
with the Jacobians evaluated at the stage values: this is the exact derivative of the discrete
solution for the accepted step sizes (internal differentiation), so the gradient HMC sees matches
its log density. The step size is controlled on the states. Outputs between steps come from the
same dense output (Hairer's 4th-order continuous extension of DOPRI5) applied to y and S.

Built with ``detect_stiffness=True`` (as "auto" does) the integrator also runs DOPRI5's
stiffness test, with the spectral radius of the exact Jacobian in place of Hairer's estimate from
the last two stages, and stops, returning ``STIFFNESS_DETECTED``, once steps are held by stability.
"""

import numpy as np

from .common import (
    MAX_STEPS,
    NOT_FINITE,
    REJECTED,
    STEP_TOO_SMALL,
    STEPS,
    STIFFNESS_DETECTED,
    SUCCESS,
    all_finite,
    compile_kernel,
    njit,
)
from .control import (
    after_acceptance,
    after_rejection,
    first_step,
    first_step_guess,
    rms_norm,
    too_small,
)

C = np.array([0.0, 1 / 5, 3 / 10, 4 / 5, 8 / 9, 1.0, 1.0])
A = np.array(
    [
        [0.0, 0.0, 0.0, 0.0, 0.0, 0.0],
        [1 / 5, 0.0, 0.0, 0.0, 0.0, 0.0],
        [3 / 40, 9 / 40, 0.0, 0.0, 0.0, 0.0],
        [44 / 45, -56 / 15, 32 / 9, 0.0, 0.0, 0.0],
        [19372 / 6561, -25360 / 2187, 64448 / 6561, -212 / 729, 0.0, 0.0],
        [9017 / 3168, -355 / 33, 46732 / 5247, 49 / 176, -5103 / 18656, 0.0],
        [35 / 384, 0.0, 500 / 1113, 125 / 192, -2187 / 6784, 11 / 84],
    ]
)
# Error weights: 5th-order minus embedded 4th-order solution.
E = np.array([71 / 57600, 0.0, -71 / 16695, 71 / 1920, -17253 / 339200, 22 / 525, -1 / 40])
# Dense output coefficients (Hairer, Norsett & Wanner, DOPRI5 CONTD5).
D = np.array(
    [
        -12715105075 / 11282082432,
        0.0,
        87487479700 / 32700410799,
        -10690763975 / 1880347072,
        701980252875 / 199316789632,
        -1453857185 / 822651844,
        69997945 / 29380423,
    ]
)
ORDER = 5
MAX_FACTOR = 10.0
# Stiffness test of Hairer's DOPRI5, counting steps with h * rho past STIFF_BOUND: stiff after
# STIFF_STEPS such accepted steps, unless NONSTIFF_STEPS steps in a row below the bound intervene.
# Hairer estimates rho by |f(z7) - f(z6)| / |z7 - z6| and takes 3.25; that estimate is a power
# iteration through the steps and converged only after ~250 steps on gc_receptor (prior medians),
# whose rho = 60/h is constant from t = 0. Here rho = |J w|, one power-iteration step per accepted
# step on the exact Jacobian (n^2 operations), continued from the previous step's unit vector w.
# DOPRI5's stability interval on the negative real axis ends at 3.31; on gc_receptor the steps held
# by stability measured h * rho = 3.0-3.3, and a bound of 3.0 missed some of them, each miss
# delaying the switch. The bound is 2.5 (a step of at least 75% of the stability limit);
# acute_inflammation, not stiff, has 3 of its 65 steps past it.
STIFF_BOUND = 2.5
STIFF_STEPS = 15
NONSTIFF_STEPS = 6


@njit
def _dense(theta, h, x_old, x_new, k, out, row):
    """Dense output of flat x (y or S) at fraction ``theta`` of the step, into ``out[row]``."""
    for i in range(x_old.shape[0]):
        diff = x_new[i] - x_old[i]
        b = h * k[0, i] - diff
        c = diff - h * k[6, i] - b
        d = 0.0
        for j in range(7):
            d += D[j] * k[j, i]
        d *= h
        out[row, i] = x_old[i] + theta * (diff + (1 - theta) * (b + theta * (c + (1 - theta) * d)))


@njit
def _stage(x, h, k, s, out):
    """Argument of stage ``s``: out = x + h * sum_{j<s} A[s, j] k[j], for a flat x (y or S).

    One loop per stage with the sum written out, added in the order j = 0, 1, ...: LLVM
    vectorises these loops over x, but not a loop over x around a loop over j.
    """
    a0, a1, a2, a3, a4, a5 = A[s, 0], A[s, 1], A[s, 2], A[s, 3], A[s, 4], A[s, 5]
    if s == 1:
        for i in range(x.shape[0]):
            out[i] = x[i] + h * (a0 * k[0, i])
    elif s == 2:
        for i in range(x.shape[0]):
            out[i] = x[i] + h * (a0 * k[0, i] + a1 * k[1, i])
    elif s == 3:
        for i in range(x.shape[0]):
            out[i] = x[i] + h * (a0 * k[0, i] + a1 * k[1, i] + a2 * k[2, i])
    elif s == 4:
        for i in range(x.shape[0]):
            out[i] = x[i] + h * (a0 * k[0, i] + a1 * k[1, i] + a2 * k[2, i] + a3 * k[3, i])
    elif s == 5:
        for i in range(x.shape[0]):
            out[i] = x[i] + h * (a0 * k[0, i] + a1 * k[1, i] + a2 * k[2, i] + a3 * k[3, i] + a4 * k[4, i])
    else:
        for i in range(x.shape[0]):
            out[i] = x[i] + h * (
                a0 * k[0, i] + a1 * k[1, i] + a2 * k[2, i] + a3 * k[3, i] + a4 * k[4, i] + a5 * k[5, i]
            )


def make_advance(fn, n_states, n_theta, key, detect_stiffness=False):
    """Build the Dormand-Prince segment integrator for one model's generated functions ``fn``."""
    rhs, sens_rhs = fn.rhs, fn.sens_rhs
    jac = fn.jac  # only with detect_stiffness ("auto" has it generated)

    def advance(t0, t1, h0, y, S, th, active, t_out, k_out, k_end, Y, SY, rtol, atol, max_steps,
                counts):
        # The step loop takes no slices or rows of arrays: numba counts the references to each
        # array view with atomic operations, which took a quarter of the kernel's time. Stage
        # values pass through preallocated buffers instead (z, f for y; Z, dS for S), and the
        # sensitivities are handled as flat vectors of n * q numbers.
        n, m = n_states, n_states * n_theta
        ks = np.empty((7, n))  # stage derivatives of y
        zs = np.empty((7, n))  # stage values of y (the sensitivity stages need them)
        KS = np.empty((7, m))  # stage derivatives of S, flattened
        z = np.empty(n)
        f = np.empty(n)
        y_new = np.empty(n)
        err = np.empty(n)
        Z = np.empty((n, n_theta))  # stage value of S; after stage 6 the new sensitivities
        dS = np.empty((n, n_theta))
        S_flat, Z_flat, dS_flat = S.reshape(m), Z.reshape(m), dS.reshape(m)
        SY_flat = SY.reshape((SY.shape[0], m))
        t = t0
        while k_out < k_end and t_out[k_out] <= t0:
            k_out += 1
        rhs(t, y, th, f)
        if not (all_finite(y) and all_finite(f)):
            return NOT_FINITE, t, h0
        for i in range(n):
            ks[0, i] = f[i]
        if h0 > 0.0:
            h = min(h0, t1 - t0)
        else:
            h, d1 = first_step_guess(y, f, rtol, atol)
            h = min(h, t1 - t0)
            for i in range(n):
                z[i] = y[i] + h * f[i]
            rhs(t + h, z, th, f)
            h = first_step(h, d1, y, ks[0], f, rtol, atol, ORDER - 1, t1 - t0)
        sens_rhs(t, y, th, active, S, dS)
        KS[0] = dS_flat
        stiff_steps = 0
        nonstiff_steps = 0
        J = np.empty((n, n))
        unit = 1.0 / np.sqrt(n)
        w = np.full(n, unit)  # power-iteration vector of the stiffness test, |w| = 1
        Jw = np.empty(n)
        while t < t1:
            if counts[STEPS] >= max_steps:
                return MAX_STEPS, t, h
            if too_small(h, t):
                return STEP_TOO_SMALL, t, h
            last = h >= t1 - t
            if last:
                h = t1 - t
            counts[STEPS] += 1
            for s in range(1, 7):
                _stage(y, h, ks, s, z)
                for i in range(n):
                    zs[s, i] = z[i]
                rhs(t + C[s] * h, z, th, f)
                for i in range(n):
                    ks[s, i] = f[i]
            for i in range(n):
                y_new[i] = z[i]
                acc = 0.0
                for j in range(7):
                    acc += E[j] * ks[j, i]
                err[i] = h * acc
            e = rms_norm(err, y, y_new, rtol, atol)
            if not e <= 1.0:  # too large, or NaN
                counts[REJECTED] += 1
                h = after_rejection(h, e, ORDER)
                continue
            # Accepted: advance the sensitivities through the same stages.
            for s in range(1, 7):
                _stage(S_flat, h, KS, s, Z_flat)
                for i in range(n):
                    z[i] = zs[s, i]
                sens_rhs(t + C[s] * h, z, th, active, Z, dS)
                for i in range(m):
                    KS[s, i] = dS_flat[i]
            if not all_finite(y_new):
                return NOT_FINITE, t, h
            t_new = t1 if last else t + h
            while k_out < k_end and t_out[k_out] <= t_new:
                frac = (t_out[k_out] - t) / h
                _dense(frac, h, y, y_new, ks, Y, k_out)
                _dense(frac, h, S_flat, Z_flat, KS, SY_flat, k_out)
                k_out += 1
            if detect_stiffness:
                jac(t_new, y_new, th, J)
                rho = 0.0
                for i in range(n):
                    acc = 0.0
                    for j in range(n):
                        acc += J[i, j] * w[j]
                    Jw[i] = acc
                    rho += acc * acc
                rho = np.sqrt(rho)  # |J w| with |w| = 1
                for i in range(n):
                    w[i] = Jw[i] / rho if rho > 0.0 else unit
                if h * rho > STIFF_BOUND:
                    nonstiff_steps = 0
                    stiff_steps += 1
                else:
                    nonstiff_steps += 1
                    if nonstiff_steps == NONSTIFF_STEPS:
                        stiff_steps = 0
            t = t_new
            for i in range(n):
                y[i] = y_new[i]
                ks[0, i] = ks[6, i]
            for i in range(m):
                S_flat[i] = Z_flat[i]
                KS[0, i] = KS[6, i]
            h = after_acceptance(h, e, ORDER, MAX_FACTOR)
            if stiff_steps == STIFF_STEPS and t < t1:
                return STIFFNESS_DETECTED, t, h
        return SUCCESS, t, h

    name = "explicit_detecting" if detect_stiffness else "explicit"
    return compile_kernel(advance, f"{key}.{name}.advance")
