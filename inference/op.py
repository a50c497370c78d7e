"""The PyTensor Op that solves a batch of subjects and returns observables with sensitivities.

One Op call solves every subject of a cohort. It has three outputs: the observables at the
sample rows, their sensitivities d observable / d theta, and a per-subject solver status. The
gradient (``L_op``) is the vector-Jacobian product with the sensitivities, done in the graph, so
the log density and its gradient cost one solver call. A numba implementation is registered so
that nutpie compiles the whole log density, solver included.

The module also registers a numba ``erfcx`` (see :func:`numba_funcify_erfcx`): the censored
log-normal likelihood needs it, and without it PyTensor cannot cache the compiled log density.
"""

from __future__ import annotations

import hashlib
import inspect
import math
import multiprocessing
from collections.abc import Callable, Sequence

import numba
import numpy as np
import pytensor.tensor as pt
from pytensor.gradient import DisconnectedType, grad_not_implemented
from pytensor.graph.basic import Apply
from pytensor.graph.op import Op
from pytensor.link.numba.dispatch.basic import (
    numba_njit,
    register_funcify_and_cache_key,
    register_funcify_default_op_cache_key,
)
from pytensor.link.numba.dispatch.scalar import scalar_op_cache_key
from pytensor.scalar.math import Erfcx

from models.codegen import compile_model
from models.solvers import SolverSettings, kernel
from models.solvers.common import SUCCESS
from models.spec import OdeModel

# The solver inside a fit (the default of ModelOptions, solve_ode, hypotheses and the CLI): "auto", rtol 1e-4,
# atol 1e-6 (each state in its own unit). Measured (README, "Solver tolerance in fits"): at the
# posterior draws of the shipped single subject fitted at 1e-6, the log-likelihood moves by 0.003
# (sd; at most 0.015) at rtol = atol = 1e-4, so that posterior is the 1e-6 one reweighted by at most
# exp(0.015): the error on the log scale (< 1e-3) is a hundredth of an assay's sd (0.1-0.3). The
# absolute tolerance stays at 1e-6: a log-normal likelihood needs relative accuracy down to the
# smallest concentration, and atol 1e-4 gave a decaying tracer near 1e-3 pg/mL a spurious mode.
# Simulation keeps SolverSettings' default rtol 1e-6.
FIT_SOLVER = SolverSettings(rtol=1e-4, atol=1e-6)


class FailureCounter:
    """Counts solver failures (subjects whose solve failed) across all Op calls of a model.

    The count lives in shared memory, so increments made by sampler threads (nutpie) and by
    forked worker processes (``pm.sample`` on Linux) all reach the parent process. A counter
    pickled into a spawned process starts again from zero there.
    """

    def __init__(self) -> None:
        self._value = multiprocessing.Value("q", 0)

    def __reduce__(self):
        return (FailureCounter, ())

    @property
    def count(self) -> int:
        """Failures recorded so far."""
        return int(self._value.value)

    def add(self, n: int) -> None:
        """Record ``n`` more failures."""
        with self._value.get_lock():
            self._value.value += int(n)

    def reset(self) -> int:
        """Return the count and start again from zero."""
        with self._value.get_lock():
            n, self._value.value = self._value.value, 0
            return int(n)


# One counter per compiled kernel identity, reachable from numba's object mode by key.
_COUNTERS: dict[str, FailureCounter] = {}
# The compiled kernel per (model_key, method), for ``perform``.
_KERNELS: dict[tuple[str, str], Callable] = {}


def _record_failures(key: str, n: int) -> None:
    _COUNTERS[key].add(n)


class OdeSolveOp(Op):
    """Solve a model for a batch of subjects: ``(theta, times, events) -> (obs, d obs/d theta, status)``.

    Parameters
    ----------
    model
        The ODE model.
    settings
        Solver method and tolerances.
    outputs
        Indices of the states returned, in order; by default the states the model's observables
        read (``model.observable_states()``).

    Notes
    -----
    Inputs, in order: ``theta`` (n_subjects x n_theta: parameters then inputs), ``t_out`` (flat
    sample times), ``row_ptr`` (subject s owns rows ``row_ptr[s]:row_ptr[s+1]``), and the packed
    events ``ev_time, ev_kind, ev_index, ev_value, ev_ptr`` (see ``models.solvers.pack_events``).
    Outputs: ``obs`` (n_rows x n_outputs), ``sens`` (n_rows x n_outputs x n_theta) and
    ``status`` (n_subjects, 0 = success). A failed subject's rows are NaN, which makes the log
    density non-finite so the sampler rejects the proposal; the Op never raises on a numerical
    failure and counts failures in :attr:`failures`.
    """

    __props__ = ("model_key", "method", "rtol", "atol", "max_steps", "outputs")

    def __init__(
        self, model: OdeModel, settings: SolverSettings, outputs: Sequence[int] | None = None
    ) -> None:
        self.model = model
        self.model_key = compile_model(model).SOURCE_HASH
        self.method = settings.method
        self.rtol = float(settings.rtol)
        self.atol = float(settings.atol)
        self.max_steps = int(settings.max_steps)
        # Part of the Op's identity: two models may share equations but observe different states.
        self.outputs = tuple(int(i) for i in (model.observable_states() if outputs is None else outputs))
        self.observed = np.array(self.outputs, dtype=np.int64)
        self.failures = _COUNTERS.setdefault(self.counter_key, FailureCounter())

    @property
    def counter_key(self) -> str:
        """Identity of this Op's kernel and settings (the failure counter is shared by it)."""
        return f"{self.model_key}|{self.method}|{self.rtol}|{self.atol}|{self.max_steps}"

    def make_node(self, theta, t_out, row_ptr, ev_time, ev_kind, ev_index, ev_value, ev_ptr):  # noqa: D102
        theta = pt.as_tensor_variable(theta).astype("float64")
        floats = [pt.as_tensor_variable(x).astype("float64") for x in (t_out, ev_time, ev_value)]
        ints = [pt.as_tensor_variable(x).astype("int64") for x in (row_ptr, ev_kind, ev_index, ev_ptr)]
        if theta.ndim != 2:
            raise TypeError(f"theta must be a matrix (subjects x theta), got ndim={theta.ndim}")
        if any(x.ndim != 1 for x in floats + ints):
            raise TypeError("times, row pointers and event arrays must be vectors")
        t_out, ev_time, ev_value = floats
        row_ptr, ev_kind, ev_index, ev_ptr = ints
        inputs = [theta, t_out, row_ptr, ev_time, ev_kind, ev_index, ev_value, ev_ptr]
        outputs = [pt.dmatrix(), pt.dtensor3(), pt.lvector()]
        return Apply(self, inputs, outputs)

    def perform(self, node, inputs, output_storage):  # noqa: D102
        theta, t_out, row_ptr, ev_time, ev_kind, ev_index, ev_value, ev_ptr = inputs
        solve = _KERNELS.get((self.model_key, self.method))
        if solve is None:  # looked up once: ``kernel`` hashes the whole model (~10 us a call)
            solve = _KERNELS[self.model_key, self.method] = kernel(self.model, self.method)
        y, sens, status, _ = solve(
            np.ascontiguousarray(theta), t_out, row_ptr, ev_time, ev_kind, ev_index, ev_value, ev_ptr,
            self.rtol, self.atol, self.max_steps,
        )
        failed = int(np.count_nonzero(status != SUCCESS))
        if failed:
            self.failures.add(failed)
        output_storage[0][0] = y[:, self.observed]
        output_storage[1][0] = sens[:, self.observed, :]
        output_storage[2][0] = status

    def infer_shape(self, fgraph, node, shapes):  # noqa: D102
        n_subjects, n_theta = shapes[0]
        n_rows = shapes[1][0]
        k = len(self.observed)
        return [(n_rows, k), (n_rows, k, n_theta), (n_subjects,)]

    def connection_pattern(self, node):  # noqa: D102
        return [[True, True, False]] + [[False, False, False]] * 7

    def L_op(self, inputs, outputs, output_grads):  # noqa: D102
        theta, row_ptr = inputs[0], inputs[2]
        g_obs, g_sens = output_grads[0], output_grads[1]
        if not isinstance(g_sens.type, DisconnectedType):
            return [grad_not_implemented(self, 0, theta, "second derivatives of the ODE solution")]
        grads = [DisconnectedType()() for _ in inputs[1:]]
        if isinstance(g_obs.type, DisconnectedType):
            return [DisconnectedType()(), *grads]
        # Vector-Jacobian product per row, then summed over each subject's rows.
        per_row = (g_obs[:, :, None] * outputs[1]).sum(axis=1)
        subject_of_row = pt.repeat(pt.arange(theta.shape[0]), pt.diff(row_ptr))
        theta_grad = pt.zeros_like(theta)[subject_of_row].inc(per_row)
        return [theta_grad, *grads]


@register_funcify_default_op_cache_key(OdeSolveOp)
def numba_funcify_ode_solve(op, node, **kwargs):
    """Numba implementation of :class:`OdeSolveOp`: the model's batch kernel, no Python in the loop."""
    solve = kernel(op.model, op.method)
    observed = op.observed.copy()
    rtol, atol, max_steps = op.rtol, op.atol, op.max_steps
    key = op.counter_key

    @numba.njit
    def ode_solve(theta, t_out, row_ptr, ev_time, ev_kind, ev_index, ev_value, ev_ptr):
        y, sens, status, _ = solve(np.ascontiguousarray(theta), t_out, row_ptr, ev_time, ev_kind,
                                   ev_index, ev_value, ev_ptr, rtol, atol, max_steps)
        failed = 0
        for s in status:
            if s != SUCCESS:
                failed += 1
        if failed:
            with numba.objmode():
                _record_failures(key, failed)
        return y[:, observed], sens[:, observed, :], status

    # PyTensor caches the compiled graph by the Op's props (which hash the model and solver code)
    # plus this version: a hash of this function, so an edit here can never reuse stale code.
    version = int(hashlib.sha256(inspect.getsource(numba_funcify_ode_solve).encode()).hexdigest()[:12], 16)
    return ode_solve, version


# ---- erfcx: the censored likelihood's special function, cacheable ------------------------------
# PyMC's normal log-CDF (the M3 term of a value below the LLOQ) calls erfcx. PyTensor 2.38's numba
# backend has no erfcx of its own: it calls scipy's Cython erfcx through a function pointer, whose
# address changes between processes, so it refuses to cache the compiled log density, and every
# fit compiled the whole graph again (about 7 s of a 19 s nutpie compile, measured on one
# subject). PyTensor implements erf and erfc the same way (math.erf, math.erfc).
_INV_SQRT_PI = 1.0 / math.sqrt(math.pi)
_ERFCX_ASYMPTOTIC = 26.0  # exp(x^2) overflows near 26.6; the series below is exact to ~1e-15 there


@numba.njit(cache=True)
def erfcx(x: float) -> float:
    """Return the scaled complementary error function exp(x^2) erfc(x) (relative error < 1e-13).

    Below 26 it is computed as written (math.erfc keeps its relative accuracy far into the tail;
    the rounding of x^2 costs at most x^2 * 1.1e-16). From 26 on, five terms of the asymptotic
    series 1 / (x sqrt(pi)) * sum (-1)^n (2n-1)!! / (2x^2)^n, whose first omitted term is below
    2e-15. For x below about -26.6 the true value overflows and the result is inf.
    """
    if x < _ERFCX_ASYMPTOTIC:
        return math.exp(x * x) * math.erfc(x)
    r = 0.5 / (x * x)
    series = 1.0 - r * (1.0 - 3.0 * r * (1.0 - 5.0 * r * (1.0 - 7.0 * r * (1.0 - 9.0 * r))))
    return _INV_SQRT_PI / x * series


@register_funcify_and_cache_key(Erfcx)
def numba_funcify_erfcx(op, node, **kwargs):
    """Numba implementation of PyTensor's ``Erfcx`` scalar Op that PyTensor can cache."""

    @numba_njit
    def erfcx_op(x):
        return erfcx(x)

    return erfcx_op, scalar_op_cache_key(op, implementation="inference.op.erfcx v1")
