"""The compiled, differentiable ODE solution as one call inside any PyMC model.

:func:`solve_ode` is to our solvers what ``pm.ode.DifferentialEquation`` is to scipy's: the user
writes the ODE once as an :class:`~models.spec.OdeModel`, builds a PyMC model by hand and calls
``solve_ode`` where the solution is needed. It packs the arguments for
:class:`~inference.op.OdeSolveOp`, so the gradient comes from the solver's forward sensitivities
and nutpie's numba backend compiles the solver into the log density.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pytensor.tensor as pt
from pytensor.tensor.variable import TensorVariable

from models import Event, ModelError, OdeModel, SolverSettings
from models.solvers import pack_events

from .op import FIT_SOLVER, OdeSolveOp


def _columns(model: OdeModel, values, argument: str, defaults=None) -> list:
    """Split ``values`` (a mapping by name, or a vector / matrix in ``names`` order) into columns.

    Each column is a scalar (one subject) or a vector over subjects. ``defaults`` fills names
    missing from a mapping; without it a missing name is an error.
    """
    what, names = (("parameters", model.parameter_names) if argument == "params"
                   else ("inputs", model.input_names))
    if isinstance(values, Mapping):
        unknown = sorted(set(values) - set(names))
        if unknown:
            raise ModelError(
                f"{argument}: unknown names {unknown}; model {model.name} has {what} {list(names)}"
            )
        missing = [n for n in names if n not in values and (defaults is None or n not in defaults)]
        if missing:
            raise ModelError(f"{argument}: missing {what} {missing} of model {model.name}")
        columns = []
        for name in names:
            value = pt.as_tensor_variable(values[name] if name in values else defaults[name])
            if value.ndim > 1:
                raise ModelError(
                    f"{argument}[{name!r}] must be a scalar or a vector over subjects, "
                    f"got ndim={value.ndim}"
                )
            columns.append(value.astype("float64"))
        return columns
    values = pt.as_tensor_variable(values).astype("float64")
    if values.ndim not in (1, 2) or values.type.shape[-1] not in (None, len(names)):
        raise ModelError(
            f"{argument}: expected a mapping by name, a vector of {len(names)} values "
            f"({', '.join(names)}) or a (subjects x {len(names)}) matrix, got shape {values.type.shape}"
        )
    values = pt.specify_shape(values, (None,) * (values.ndim - 1) + (len(names),))
    return [values[..., i] for i in range(len(names))]


def _outputs(model: OdeModel, outputs: Sequence[str] | None) -> tuple[int, ...]:
    """State indices of the requested observables (by analyte) or states (by name)."""
    if outputs is None:
        return tuple(int(i) for i in model.observable_states())
    if isinstance(outputs, str) or len(outputs) == 0:
        raise ModelError(f"outputs: expected a non-empty list of names, got {outputs!r}")
    index = {**{s: i for i, s in enumerate(model.state_names)},
             **{o.analyte: model.state_names.index(o.state) for o in model.observables}}
    unknown = [name for name in outputs if name not in index]
    if unknown:
        raise ModelError(
            f"outputs: model {model.name} has no observable or state {unknown}; observables: "
            f"{list(model.analytes)}, states: {list(model.state_names)}"
        )
    return tuple(index[name] for name in outputs)


def _times(times) -> np.ndarray:
    if isinstance(times, pt.Variable):
        raise ModelError("times: expected numbers (a numpy array), not a PyTensor variable")
    t = np.asarray(times, dtype=float)
    if t.ndim != 1 or t.size == 0:
        raise ModelError(f"times: expected a non-empty vector of sample times, got shape {t.shape}")
    if not np.all(np.isfinite(t)) or t[0] < 0 or np.any(np.diff(t) < 0):
        raise ModelError(f"times: sample times must be finite, >= 0 and sorted, got {t.tolist()}")
    return t


def solve_ode(
    model: OdeModel,
    params: Mapping[str, object] | object,
    times: Sequence[float] | np.ndarray,
    *,
    inputs: Mapping[str, object] | object | None = None,
    events: Sequence[Event] | Sequence[Sequence[Event]] = (),
    settings: SolverSettings | None = None,
    outputs: Sequence[str] | None = None,
) -> TensorVariable:
    """Solve ``model`` inside a PyMC model: states or observables at ``times``, differentiable.

    The solution's gradient with respect to parameters and inputs comes from the solver's forward
    sensitivities (one solver call gives the log density and its gradient). It works with
    ``pm.sample``, ``pm.sample_posterior_predictive`` and nutpie's numba backend
    (``nutpie.compile_pymc_model(model, backend="numba")``), which compiles the solver into the
    log density. A solve that fails (step limit, non-finite state) gives NaN, so the sampler
    rejects that proposal; it never raises during sampling.

    Parameters
    ----------
    model
        The ODE model (:class:`~models.spec.OdeModel`).
    params
        Every parameter of ``model``: a mapping ``{name: value}`` or a vector in the order of
        ``model.parameter_names``. Values are PyTensor variables (PyMC random variables, their
        transforms) or numbers. A scalar per parameter solves one subject; a vector over subjects
        (or a subjects x parameters matrix) solves a batch. Scalars are shared by all subjects.
    times
        Sample times in ``model.time_unit``: numbers, sorted, >= 0 (the model starts at 0),
        shared by all subjects. For subjects sampled at different times, solve at the union
        and index the result.
    inputs
        The model's inputs in the same forms as ``params``; inputs not given take their
        defaults (:attr:`~models.spec.Input.default`).
    events
        Doses and input changes after t = 0 (:class:`~models.solvers.Event`): one list shared
        by all subjects, or for a batch one list per subject.
    settings
        Solver method and tolerances (:class:`~models.solvers.SolverSettings`; default those of
        fits, :data:`~inference.op.FIT_SOLVER`: method ``auto``, rtol 1e-4, atol 1e-6).
    outputs
        Names of observables (analytes) or states to return, in order; by default every
        observable of ``model``.

    Returns
    -------
    TensorVariable
        Shape ``(len(times), len(outputs))`` for one subject, ``(n_subjects, len(times),
        len(outputs))`` for a batch.

    Raises
    ------
    ModelError
        Unknown or missing parameters or inputs, values of the wrong shape, times that are not
        sorted, negative or not finite, unknown outputs, events that do not fit the model or the
        batch. The message names the argument.

    Examples
    --------
    Exponential decay, its rate and the noise estimated from five noisy samples:

    >>> import numpy as np
    >>> import pymc as pm
    >>> from models import LogNormal, Observable, OdeModel, Parameter, State
    >>> from inference import solve_ode
    >>> decay = OdeModel(
    ...     name="decay", title="First-order decay", equations="dX/dt = -k X, X(0) = X0",
    ...     states=(State("X", "mg/L", "amount"),),
    ...     parameters=(Parameter("k", "1/h", "rate", LogNormal(0.5, 1.0)),
    ...                 Parameter("X0", "mg/L", "initial amount", LogNormal(10.0, 1.0))),
    ...     inputs=(), observables=(Observable("X", "X", "mg/L"),),
    ...     rhs=lambda s, p, u, m: {"X": -p.k * s.X}, initial=lambda p, u, m: {"X": p.X0})
    >>> times = np.array([0.5, 1.0, 2.0, 4.0, 8.0])
    >>> with pm.Model() as pm_model:
    ...     k = pm.LogNormal("k", mu=np.log(0.5), sigma=1.0)
    ...     x = solve_ode(decay, {"k": k, "X0": 10.0}, times)  # shape (5, 1)
    ...     sigma = pm.HalfNormal("sigma", 0.2)
    ...     y = pm.LogNormal("y", mu=pm.math.log(x[:, 0]), sigma=sigma,
    ...                      observed=10 * np.exp(-0.3 * times))
    >>> x.eval({k: 0.3}).round(3).ravel().tolist()
    [8.607, 7.408, 5.488, 3.012, 0.907]
    """
    times = _times(times)
    settings = settings or FIT_SOLVER
    columns = _columns(model, params, "params")
    columns += _columns(model, {} if inputs is None else inputs, "inputs",
                        defaults={i.name: i.default for i in model.inputs})
    lengths = {c.type.shape[0] for c in columns if c.ndim == 1} - {None}
    if len(lengths) > 1:
        raise ModelError(f"params and inputs: vectors over subjects have different lengths {sorted(lengths)}")
    batch = any(c.ndim == 1 for c in columns)
    theta = pt.stack(pt.broadcast_arrays(*columns), axis=-1)

    events = list(events)
    per_subject = bool(events) and all(
        isinstance(e, Sequence) and all(isinstance(x, Event) for x in e) for e in events
    )
    if not per_subject and not all(isinstance(e, Event) for e in events):
        raise ModelError("events: expected models.Event objects, or for a batch one list of them per subject")
    if per_subject and not batch:
        raise ModelError("events: one list per subject needs a batch (parameters given per subject)")
    if per_subject and lengths and lengths != {len(events)}:
        raise ModelError(f"events: {len(events)} lists for {lengths.pop()} subjects")
    try:
        packed = pack_events(model, events if per_subject else [events])
    except ModelError as error:
        raise ModelError(f"events: {error}") from None

    op = OdeSolveOp(model, settings, _outputs(model, outputs))
    n_times = times.size
    if not batch:
        row_ptr = np.array([0, n_times])
        result = op(theta[None, :], times, row_ptr, packed.time, packed.kind, packed.index,
                    packed.value, packed.ptr)[0]
        return pt.specify_shape(result, (n_times, len(op.outputs)))
    subjects = theta.shape[0]

    def repeat(x):  # the same rows for every subject, stacked
        return pt.broadcast_to(x, (subjects, x.size)).ravel()

    if per_subject:
        theta = pt.specify_shape(theta, (len(events), None))
        ev = (packed.time, packed.kind, packed.index, packed.value, packed.ptr)
    else:
        ev = (*(repeat(x) for x in (packed.time, packed.kind, packed.index, packed.value)),
              pt.arange(subjects + 1) * packed.time.size)
    result = op(theta, repeat(times), pt.arange(subjects + 1) * n_times, *ev)[0]
    return pt.specify_shape(result.reshape((subjects, n_times, len(op.outputs))),
                            (len(events) if per_subject else None, n_times, len(op.outputs)))
