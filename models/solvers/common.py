"""Parts every solver kernel shares: status codes, work counters, LU, the subject loop.

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
# Internal: the explicit method of "auto" found the problem stiff and hands over (never returned).
STIFFNESS_DETECTED = -1

# Work counters per subject (columns of the kernels' fourth output): steps tried (accepted plus
# rejected), rejected steps, LU factorisations, and 1 once "auto" switched to its stiff method.
STEPS = 0
REJECTED = 1
FACTORIZATIONS = 2
SWITCHED = 3
N_COUNTS = 4

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

    ``key`` also becomes the function's qualified name. Numba names compiled code by qualified
    name plus a per-process counter, and links a cached kernel to its callees by that name: two
    models' closures of the same source (say each model's explicit integrator) compiled in
    different processes could carry the same name, and a process loading both linked one model's
    kernel to the other's integrator (seen: "total size of new array must be unchanged"). A
    unique name also gives each kernel its own cache index file, which concurrent processes
    then no longer rewrite in turn.
    """
    py_func.__qualname__ = key
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
def lu_solve_columns(lu, piv, b, row):
    """Solve ``lu_factor``'s system in place for every column of the n x m matrix ``b``.

    Row operations on whole rows of ``b`` (the same arithmetic as ``lu_solve`` per column, in
    the same order), accumulated in the buffer ``row`` (length m): the innermost loops run along
    contiguous memory that LLVM knows is not written through another name (2x faster).
    """
    n, m = b.shape
    for k in range(n):
        p = piv[k]
        if p != k:
            for j in range(m):
                b[k, j], b[p, j] = b[p, j], b[k, j]
    for i in range(1, n):
        for j in range(m):
            row[j] = b[i, j]
        for k in range(i):
            a = lu[i, k]
            for j in range(m):
                row[j] -= a * b[k, j]
        for j in range(m):
            b[i, j] = row[j]
    for i in range(n - 1, -1, -1):
        for j in range(m):
            row[j] = b[i, j]
        for k in range(i + 1, n):
            a = lu[i, k]
            for j in range(m):
                row[j] -= a * b[k, j]
        d = lu[i, i]
        for j in range(m):
            b[i, j] = row[j] / d


def make_driver(advance, initial, initial_jac, n_states, n_theta, key):
    """Build the kernel that loops over subjects and events around a segment integrator.

    ``advance(t0, t1, h0, y, S, th, active, t_out, k, k_end, Y, SY, rtol, atol, max_steps,
    counts)`` advances state ``y`` and sensitivities ``S`` from t0 towards t1, writes every output
    with time in (t0, t reached], adds its work to ``counts`` (see ``STEPS``...) and returns
    ``(status, t reached, next step)``; ``h0 = 0`` asks it to choose the first step. ``active[j]``
    is 1 until an event sets ``th[j]``, then 0: from then on ``th[j]`` no longer depends on its
    original value, so df/dtheta_j stops feeding the sensitivities (only through the states does
    the earlier value still act).

    The kernel returns ``(Y, SY, status, counts)``: states and sensitivities at the sample times,
    a status per subject and the work counters, shape (n_subjects, N_COUNTS).
    """

    def solve(theta, t_out, row_ptr, ev_time, ev_kind, ev_index, ev_value, ev_ptr,
              rtol, atol, max_steps):
        n_subjects = theta.shape[0]
        n_rows = t_out.shape[0]
        Y = np.empty((n_rows, n_states))
        SY = np.empty((n_rows, n_states, n_theta))
        status = np.zeros(n_subjects, dtype=np.int64)
        counts = np.zeros((n_subjects, N_COUNTS), dtype=np.int64)
        work = np.zeros(N_COUNTS, dtype=np.int64)
        y = np.empty(n_states)
        S = np.empty((n_states, n_theta))
        th = np.empty(n_theta)
        active = np.empty(n_theta)
        for s in range(n_subjects):
            th[:] = theta[s]
            active[:] = 1.0
            work[:] = 0
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
            while True:
                has_event = e < e_end and ev_time[e] < t_final
                t_stop = ev_time[e] if has_event else t_final
                if t_stop > t:
                    st, _, _ = advance(t, t_stop, 0.0, y, S, th, active, t_out, k, k_end, Y, SY,
                                       rtol, atol, max_steps, work)
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
            counts[s] = work
        return Y, SY, status, counts

    return compile_kernel(solve, f"{key}.solve")
