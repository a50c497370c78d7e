"""Step-size control shared by every method: first step, acceptance, growth and shrinkage.

An elementary error-per-step controller (Hairer, Norsett & Wanner I, II.4): after a step with
weighted error norm ``e`` (accepted when e <= 1) of a method whose error estimate has order
``order``, the next step is ``h * clamp(SAFETY * e**(-1/order))``. Methods differ only in the
order they pass and in how far a step may grow (``max_factor``).
"""

import numpy as np

from .common import njit

SAFETY = 0.9
MIN_FACTOR = 0.2


@njit
def rms_norm(err, y_old, y_new, rtol, atol):
    """Weighted RMS norm of a local error estimate (Hairer, Norsett & Wanner II.4)."""
    total = 0.0
    for i in range(err.shape[0]):
        scale = atol + rtol * max(abs(y_old[i]), abs(y_new[i]))
        total += (err[i] / scale) ** 2
    return np.sqrt(total / err.shape[0])


@njit
def first_step_guess(y0, f0, rtol, atol):
    """First trial step from y0 and f0 (Hairer's heuristic, part one); also returns |f0|."""
    d0 = 0.0
    d1 = 0.0
    for i in range(y0.shape[0]):
        scale = atol + rtol * abs(y0[i])
        d0 += (y0[i] / scale) ** 2
        d1 += (f0[i] / scale) ** 2
    d0 = np.sqrt(d0 / y0.shape[0])
    d1 = np.sqrt(d1 / y0.shape[0])
    if d0 < 1e-5 or d1 < 1e-5:
        return 1e-6, d1
    return 0.01 * d0 / d1, d1


@njit
def first_step(h0, d1, y0, f0, f1, rtol, atol, order, span):
    """First step from the change of f over a trial step h0 (Hairer's heuristic, part two)."""
    d2 = 0.0
    for i in range(y0.shape[0]):
        scale = atol + rtol * abs(y0[i])
        d2 += ((f1[i] - f0[i]) / scale) ** 2
    d2 = np.sqrt(d2 / y0.shape[0]) / h0
    if max(d1, d2) <= 1e-15:
        h1 = max(1e-6, h0 * 1e-3)
    else:
        h1 = (0.01 / max(d1, d2)) ** (1.0 / (order + 1))
    return min(100 * h0, h1, span)


@njit
def too_small(h, t):
    """Return True when the step has underflowed (or is NaN) relative to the current time."""
    return not h > 1e-14 * max(1.0, abs(t))


@njit
def after_rejection(h, e, order):
    """Step to retry with after a step of size ``h`` was rejected with error norm ``e`` (> 1 or NaN)."""
    if not np.isfinite(e):
        return h * MIN_FACTOR
    return h * max(MIN_FACTOR, SAFETY * e ** (-1.0 / order))


@njit
def after_acceptance(h, e, order, max_factor):
    """Next step after a step of size ``h`` was accepted with error norm ``e`` (<= 1)."""
    return h * min(max_factor, SAFETY * max(e, 1e-10) ** (-1.0 / order))
