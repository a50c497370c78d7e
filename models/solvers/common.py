"""Parts every solver kernel shares: status codes, error norm, LU, first step, the subject loop.

Kernels are numba closures built around a model's generated functions. They never raise: a
failure is returned as a status code per subject, and that subject's outputs are NaN.
"""

import numba
import numpy as np

SUCCESS = 0
MAX_STEPS = 1
STEP_TOO_SMALL = 2
NOT_FINITE = 3
NEWTON_FAILED = 4
STATUS_MESSAGES = {
    SUCCESS: "success",
    MAX_STEPS: "max_steps reached before the last sample time",
    STEP_TOO_SMALL: "step size underflow",
    NOT_FINITE: "non-finite state",
    NEWTON_FAILED: "Newton iteration did not converge even at the smallest step",
}

# Compilation options of every kernel function (the generated model functions use the same).
# Numba lets a function that leaves ``fastmath`` or ``error_model`` unset inherit them from the
# function that first calls it; PyTensor's NUMBA mode compiles with fastmath flags, under which
# the kernel ran 1.7x slower and could return results that depend on the caller. Pinning the
# flags gives one compiled kernel whatever calls it.
# The numpy error model makes a division by zero give inf or NaN, which the kernels turn into a
# failure status, instead of raising (a kernel never raises: see the module docstring).
JIT_OPTIONS = {"cache": True, "fastmath": False, "error_model": "numpy"}


def compile_kernel(py_func, key: str):
    """Compile a kernel closure so that numba's disk cache finds it again in a new process.

    Numba keys a closure's cache entry by its pickled closure variables, and a pickled dispatcher
    carries a random id unless it was given one: without a stable id every process recompiled
    each kernel (seconds per model and method) and left a dead cache entry behind. ``key`` is
    the generated module's name (a hash of the model and the solver sources) plus the function's
    name, so it names exactly one compiled code.
    """
    dispatcher = numba.njit(**JIT_OPTIONS)(py_func)
    dispatcher._set_uuid(key)
    return dispatcher


def njit(py_func):
    """Compile a module-level solver function with a stable identity (see ``compile_kernel``).

    A kernel's cache key pickles the functions it calls too, so they need stable ids as well.
    """
    return compile_kernel(py_func, f"{py_func.__module__}.{py_func.__qualname__}")

# Bolus events add to a state; input events set theta[index] from their time on.
EVENT_BOLUS = 0
EVENT_SET = 1


@njit
def rms_norm(err, y_old, y_new, rtol, atol):
    """Weighted RMS norm of a local error estimate (Hairer, Norsett & Wanner II.4)."""
    total = 0.0
    for i in range(err.shape[0]):
        scale = atol + rtol * max(abs(y_old[i]), abs(y_new[i]))
        total += (err[i] / scale) ** 2
    return np.sqrt(total / err.shape[0])


@njit
def all_finite(x):
    """Return True when every entry of the vector ``x`` is finite (no temporary array)."""
    for i in range(x.shape[0]):
        if not np.isfinite(x[i]):
            return False
    return True


@njit
def lu_factor(a, piv):
    """In-place LU factorisation with partial pivoting; returns False if ``a`` is singular."""
    n = a.shape[0]
    for k in range(n):
        p = k
        for i in range(k + 1, n):
            if abs(a[i, k]) > abs(a[p, k]):
                p = i
        piv[k] = p
        if a[p, k] == 0.0:
            return False
        if p != k:
            for j in range(n):
                a[k, j], a[p, j] = a[p, j], a[k, j]
        for i in range(k + 1, n):
            a[i, k] /= a[k, k]
            for j in range(k + 1, n):
                a[i, j] -= a[i, k] * a[k, j]
    return True


@njit
def lu_solve(lu, piv, b):
    """Solve ``lu_factor``'s system in place for the vector ``b``."""
    n = lu.shape[0]
    for k in range(n):
        p = piv[k]
        if p != k:
            b[k], b[p] = b[p], b[k]
    for i in range(1, n):
        acc = b[i]
        for k in range(i):
            acc -= lu[i, k] * b[k]
        b[i] = acc
    for i in range(n - 1, -1, -1):
        acc = b[i]
        for k in range(i + 1, n):
            acc -= lu[i, k] * b[k]
        b[i] = acc / lu[i, i]


@njit
def lu_solve_columns(lu, piv, b):
    """Solve ``lu_factor``'s system in place for every column of the n x m matrix ``b``.

    Row operations on whole rows of ``b`` (the same arithmetic as ``lu_solve`` per column, in
    the same order), so that the innermost loop runs along contiguous memory.
    """
    n, m = b.shape
    for k in range(n):
        p = piv[k]
        if p != k:
            for j in range(m):
                b[k, j], b[p, j] = b[p, j], b[k, j]
    for i in range(1, n):
        for k in range(i):
            for j in range(m):
                b[i, j] -= lu[i, k] * b[k, j]
    for i in range(n - 1, -1, -1):
        for k in range(i + 1, n):
            for j in range(m):
                b[i, j] -= lu[i, k] * b[k, j]
        for j in range(m):
            b[i, j] /= lu[i, i]


@njit
def first_step_guess(y0, f0, rtol, atol):
    """First trial step from y0 and f0 (Hairer's heuristic, part one); 0.0 means 'no scale'."""
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


def make_driver(integrate, initial, initial_jac, n_states, n_theta, key):
    """Build the kernel that loops over subjects and events around a segment integrator.

    ``integrate(t0, t1, y, S, th, active, t_out, k, k_end, Y, SY, rtol, atol, max_steps)``
    advances state ``y`` and sensitivities ``S`` from t0 to t1, writes every output with time in
    (t0, t1] and returns ``(status, steps)``. ``active[j]`` is 1 until an event sets ``th[j]``,
    then 0: from then on ``th[j]`` no longer depends on its original value, so df/dtheta_j stops
    feeding the sensitivities (only through the states does the earlier value still act).
    """

    def solve(theta, t_out, row_ptr, ev_time, ev_kind, ev_index, ev_value, ev_ptr,
              rtol, atol, max_steps):
        n_subjects = theta.shape[0]
        n_rows = t_out.shape[0]
        Y = np.empty((n_rows, n_states))
        SY = np.empty((n_rows, n_states, n_theta))
        status = np.zeros(n_subjects, dtype=np.int64)
        steps = np.zeros(n_subjects, dtype=np.int64)
        y = np.empty(n_states)
        S = np.empty((n_states, n_theta))
        th = np.empty(n_theta)
        active = np.empty(n_theta)
        for s in range(n_subjects):
            th[:] = theta[s]
            active[:] = 1.0
            initial(th, y)
            initial_jac(th, S)
            k = row_ptr[s]
            k_end = row_ptr[s + 1]
            e = ev_ptr[s]
            e_end = ev_ptr[s + 1]
            t_final = t_out[k_end - 1] if k_end > k else 0.0
            t = 0.0
            # Samples at t = 0 are taken before any dose given at t = 0.
            while k < k_end and t_out[k] <= t:
                Y[k] = y
                SY[k] = S
                k += 1
            st = SUCCESS
            used = 0
            while True:
                has_event = e < e_end and ev_time[e] < t_final
                t_stop = ev_time[e] if has_event else t_final
                if t_stop > t:
                    st, n_used = integrate(t, t_stop, y, S, th, active, t_out, k, k_end, Y, SY,
                                           rtol, atol, max_steps - used)
                    used += n_used
                    if st != SUCCESS:
                        break
                    while k < k_end and t_out[k] <= t_stop:
                        k += 1
                    t = t_stop
                if not has_event:
                    break
                if ev_kind[e] == EVENT_BOLUS:
                    y[ev_index[e]] += ev_value[e]
                else:
                    th[ev_index[e]] = ev_value[e]
                    active[ev_index[e]] = 0.0
                e += 1
            if st != SUCCESS:
                Y[row_ptr[s]:k_end] = np.nan
                SY[row_ptr[s]:k_end] = np.nan
            status[s] = st
            steps[s] = used
        return Y, SY, status, steps

    return compile_kernel(solve, f"{key}.solve")
