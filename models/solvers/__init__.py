"""Compiled ODE solvers with forward sensitivities, swappable by name (see ``registry.METHODS``).

Every method shares one interface (see :func:`solve`): a batch of subjects, each with its own
``theta`` (parameters then inputs), sample times and events, in one call. The default, "auto",
starts explicit and switches a subject to the stiff Rodas5 method when it detects stiffness.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ..codegen import compile_model
from ..spec import ModelError, OdeModel
from .common import (
    EVENT_BOLUS,
    EVENT_SET,
    FACTORIZATIONS,
    REJECTED,
    STATUS_MESSAGES,
    STEPS,
    SUCCESS,
    SWITCHED,
    make_driver,
)
from .registry import METHODS, Method

__all__ = [
    "METHODS",
    "Event",
    "EventArrays",
    "Method",
    "Solution",
    "SolverSettings",
    "kernel",
    "pack_events",
    "pack_times",
    "solve",
]


@dataclass(frozen=True)
class SolverSettings:
    """Solver method and tolerances (tolerances apply to every state, in its own unit)."""

    method: str = "auto"
    rtol: float = 1e-6
    atol: float = 1e-6
    max_steps: int = 20_000

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ModelError(f"unknown solver method {self.method!r}; choose one of {list(METHODS)}")
        if not (0 < self.rtol < 1 and self.atol > 0):
            raise ModelError(f"need 0 < rtol < 1 and atol > 0, got rtol={self.rtol}, atol={self.atol}")
        if self.max_steps < 1:
            raise ModelError(f"max_steps must be positive, got {self.max_steps}")


@dataclass(frozen=True)
class Event:
    """A dose or a change of input at ``time`` (h).

    ``kind="bolus"`` adds ``value`` to state ``target`` (e.g. a second endotoxin dose into ``L``);
    ``kind="set"`` sets input ``target`` to ``value`` from ``time`` on (a piecewise-constant
    infusion or stress level). A sample taken at an event's time sees the state before it.
    """

    time: float
    kind: str
    target: str
    value: float


@dataclass(frozen=True)
class Solution:
    """Solver output for a batch of subjects.

    Attributes
    ----------
    states : ndarray, shape (n_rows, n_states)
        States at the sample times, subjects stacked in order (NaN where a subject failed).
    sensitivities : ndarray, shape (n_rows, n_states, n_theta)
        d state / d theta at the same rows.
    status : ndarray of int, shape (n_subjects,)
        0 on success, else a code of ``STATUS_MESSAGES``.
    counts : ndarray of int, shape (n_subjects, 4)
        Work per subject, as the kernel returns it: see ``steps``, ``rejected``,
        ``factorizations`` and ``switched``.
    """

    states: np.ndarray
    sensitivities: np.ndarray
    status: np.ndarray
    counts: np.ndarray

    @property
    def steps(self) -> np.ndarray:
        """Accepted plus rejected steps per subject."""
        return self.counts[:, STEPS]

    @property
    def rejected(self) -> np.ndarray:
        """Rejected steps per subject."""
        return self.counts[:, REJECTED]

    @property
    def factorizations(self) -> np.ndarray:
        """LU factorisations per subject (0 for the explicit method)."""
        return self.counts[:, FACTORIZATIONS]

    @property
    def switched(self) -> np.ndarray:
        """True where "auto" found the subject stiff and switched to its stiff method."""
        return self.counts[:, SWITCHED].astype(bool)

    @property
    def success(self) -> bool:
        """True when every subject solved."""
        return bool(np.all(self.status == SUCCESS))

    @property
    def messages(self) -> list[str]:
        """Status message per subject."""
        return [STATUS_MESSAGES[int(s)] for s in self.status]


@dataclass(frozen=True)
class EventArrays:
    """Events of a batch in the kernel's flat layout (subject s owns rows ptr[s]:ptr[s+1])."""

    time: np.ndarray
    kind: np.ndarray
    index: np.ndarray
    value: np.ndarray
    ptr: np.ndarray


def pack_events(model: OdeModel, events: Sequence[Sequence[Event]]) -> EventArrays:
    """Validate events per subject and pack them for the kernel (sorted by time)."""
    rows, ptr = [], [0]
    n_p = len(model.parameters)
    for subject, evs in enumerate(events):
        for ev in sorted(evs, key=lambda e: e.time):
            if not (np.isfinite(ev.time) and ev.time >= 0 and np.isfinite(ev.value)):
                raise ModelError(f"subject {subject}: event {ev} needs a finite time >= 0 and value")
            if ev.kind == "bolus" and ev.target in model.state_names:
                rows.append((ev.time, EVENT_BOLUS, model.state_names.index(ev.target), ev.value))
            elif ev.kind == "set" and ev.target in model.input_names:
                rows.append((ev.time, EVENT_SET, n_p + model.input_names.index(ev.target), ev.value))
            else:
                raise ModelError(
                    f"subject {subject}: event {ev}: a 'bolus' targets a state "
                    f"{list(model.state_names)}, a 'set' targets an input {list(model.input_names)}"
                )
        ptr.append(len(rows))
    table = np.array(rows, dtype=float).reshape(-1, 4)
    return EventArrays(
        time=np.ascontiguousarray(table[:, 0]),
        kind=table[:, 1].astype(np.int64),
        index=table[:, 2].astype(np.int64),
        value=np.ascontiguousarray(table[:, 3]),
        ptr=np.array(ptr, dtype=np.int64),
    )


def pack_times(times: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Stack per-subject sample times (each non-decreasing, >= 0) into (flat times, row_ptr)."""
    flat, ptr = [], [0]
    for subject, t in enumerate(times):
        t = np.asarray(t, dtype=float).ravel()
        if t.size and (not np.all(np.isfinite(t)) or t[0] < 0 or np.any(np.diff(t) < 0)):
            raise ModelError(f"subject {subject}: sample times must be finite, >= 0 and sorted")
        flat.append(t)
        ptr.append(ptr[-1] + t.size)
    return np.concatenate(flat) if flat else np.zeros(0), np.array(ptr, dtype=np.int64)


_KERNELS: dict[tuple[str, str], object] = {}


def kernel(model: OdeModel, method: str):
    """Return the compiled batch kernel of ``model`` for ``method``.

    ``kernel(theta, t_out, row_ptr, ev_time, ev_kind, ev_index, ev_value, ev_ptr, rtol, atol,
    max_steps) -> (states, sensitivities, status, counts)``; see ``common.make_driver``.
    """
    if method not in METHODS:
        raise ModelError(f"unknown solver method {method!r}; choose one of {list(METHODS)}")
    module = compile_model(model)
    key = (module.__name__, method)
    if key not in _KERNELS:
        advance = METHODS[method].make_advance(module, module.N_STATES, module.N_THETA, module.__name__)
        _KERNELS[key] = make_driver(advance, module.initial, module.initial_jac, module.N_STATES,
                                    module.N_THETA, f"{module.__name__}.{method}")
    return _KERNELS[key]


def solve(
    model: OdeModel,
    theta: np.ndarray,
    times: Sequence[np.ndarray],
    events: Sequence[Sequence[Event]] | None = None,
    settings: SolverSettings | None = None,
) -> Solution:
    """Solve a batch of subjects; ``theta`` has shape (n_subjects, n_theta)."""
    settings = settings or SolverSettings()
    theta = np.ascontiguousarray(np.atleast_2d(theta), dtype=float)
    if theta.shape[1] != len(model.theta_names):
        raise ModelError(
            f"theta has {theta.shape[1]} columns; model {model.name} needs {len(model.theta_names)} "
            f"({', '.join(model.theta_names)})"
        )
    if len(times) != theta.shape[0]:
        raise ModelError(f"{len(times)} time arrays for {theta.shape[0]} subjects")
    t_flat, row_ptr = pack_times(times)
    ev = pack_events(model, events if events is not None else [[]] * theta.shape[0])
    y, sens, status, counts = kernel(model, settings.method)(
        theta, t_flat, row_ptr, ev.time, ev.kind, ev.index, ev.value, ev.ptr,
        settings.rtol, settings.atol, settings.max_steps,
    )
    return Solution(y, sens, status, counts)
