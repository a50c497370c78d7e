"""Dormand-Prince 5(4) with dense output and forward sensitivities (the "explicit" method).

The sensitivities S = dy/dtheta are advanced with the same Runge-Kutta stages as the states,
with the Jacobians evaluated at the stage values: this is the exact derivative of the discrete
solution for the accepted step sizes (internal differentiation), so the gradient HMC sees matches
its log density. The step size is controlled on the states. Outputs between steps come from the
same dense output (Hairer's 4th-order continuous extension of DOPRI5) applied to y and S.
"""

import numba
import numpy as np

from .common import (
    MAX_STEPS,
    NOT_FINITE,
    STEP_TOO_SMALL,
    SUCCESS,
    first_step,
    first_step_guess,
    make_driver,
    rms_norm,
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
SAFETY = 0.9
MIN_FACTOR = 0.2
MAX_FACTOR = 10.0


@numba.njit(cache=True)
def _dense(theta, h, x_old, x_new, k, out):
    """Dense output of one component array (y or S) at fraction ``theta`` of the step."""
    for idx in np.ndindex(x_old.shape):
        diff = x_new[idx] - x_old[idx]
        b = h * k[(0,) + idx] - diff
        c = diff - h * k[(6,) + idx] - b
        d = 0.0
        for i in range(7):
            d += D[i] * k[(i,) + idx]
        d *= h
        out[idx] = x_old[idx] + theta * (diff + (1 - theta) * (b + theta * (c + (1 - theta) * d)))


def make_explicit(rhs, sens_rhs, initial, initial_jac, n_states, n_theta):
    """Build the batched Dormand-Prince kernel for one model's generated functions."""

    @numba.njit(cache=True)
    def integrate(t0, t1, y, S, th, t_out, k_out, k_end, Y, SY, rtol, atol, max_steps):
        n, q = n_states, n_theta
        ks = np.empty((7, n))
        zs = np.empty((7, n))
        KS = np.empty((7, n, q))
        ZS = np.empty((n, q))
        y_new = np.empty(n)
        S_new = np.empty((n, q))
        err = np.empty(n)
        t = t0
        rhs(t, y, th, ks[0])
        h, d1 = first_step_guess(y, ks[0], rtol, atol)
        h = min(h, t1 - t0)
        for i in range(n):
            zs[1, i] = y[i] + h * ks[0, i]
        rhs(t + h, zs[1], th, ks[1])
        h = first_step(h, d1, y, ks[0], ks[1], rtol, atol, ORDER - 1, t1 - t0)
        sens_rhs(t, y, th, S, KS[0])
        steps = 0
        while t < t1:
            if steps >= max_steps:
                return MAX_STEPS, steps
            if h <= 1e-14 * max(1.0, abs(t)):
                return STEP_TOO_SMALL, steps
            last = h >= t1 - t
            if last:
                h = t1 - t
            steps += 1
            zs[0] = y
            for s in range(1, 7):
                for i in range(n):
                    acc = 0.0
                    for j in range(s):
                        acc += A[s, j] * ks[j, i]
                    zs[s, i] = y[i] + h * acc
                rhs(t + C[s] * h, zs[s], th, ks[s])
            y_new[:] = zs[6]
            for i in range(n):
                acc = 0.0
                for j in range(7):
                    acc += E[j] * ks[j, i]
                err[i] = h * acc
            e = rms_norm(err, y, y_new, rtol, atol)
            if not np.isfinite(e):
                h *= MIN_FACTOR
                last = False
                continue
            if e > 1.0:
                h *= max(MIN_FACTOR, SAFETY * e ** (-1.0 / ORDER))
                continue
            # Accepted: advance the sensitivities through the same stages.
            for s in range(1, 7):
                for i in range(n):
                    for p in range(q):
                        acc = 0.0
                        for j in range(s):
                            acc += A[s, j] * KS[j, i, p]
                        ZS[i, p] = S[i, p] + h * acc
                sens_rhs(t + C[s] * h, zs[s], th, ZS, KS[s])
                if s == 6:
                    S_new[:] = ZS
            if not np.all(np.isfinite(y_new)):
                return NOT_FINITE, steps
            t_new = t1 if last else t + h
            while k_out < k_end and t_out[k_out] <= t_new:
                frac = (t_out[k_out] - t) / h
                _dense(frac, h, y, y_new, ks, Y[k_out])
                _dense(frac, h, S, S_new, KS, SY[k_out])
                k_out += 1
            t = t_new
            y[:] = y_new
            S[:] = S_new
            ks[0] = ks[6]
            KS[0] = KS[6]
            h *= min(MAX_FACTOR, SAFETY * max(e, 1e-10) ** (-1.0 / ORDER))
        return SUCCESS, steps

    return make_driver(integrate, initial, initial_jac, n_states, n_theta)
