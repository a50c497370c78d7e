"""Forward simulation of one subject."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from .library import get_model
from .solvers import Event, SolverSettings, solve
from .spec import OdeModel


class SolverError(RuntimeError):
    """The solver could not integrate the model (the message says why)."""


def simulate(
    model: str | OdeModel,
    params: Mapping[str, float] | None = None,
    inputs: Mapping[str, float] | None = None,
    times: Sequence[float] | np.ndarray = (0, 1, 2, 3, 4, 6, 8, 12, 24),
    method: str = "auto",
    rtol: float = 1e-6,
    atol: float = 1e-6,
    max_steps: int = 20_000,
    events: Sequence[Event] = (),
) -> pd.DataFrame:
    """Simulate one subject and return its states at ``times``.

    Parameters
    ----------
    model
        A library name such as ``"acute_inflammation"`` or an :class:`~models.spec.OdeModel`.
    params
        Parameter values by name; missing ones take the model's defaults (prior medians).
    inputs
        Input values by name (e.g. ``{"dose": 2.0}`` in ng/kg); missing ones take their defaults.
    times
        Sample times in hours, sorted, >= 0.
    method, rtol, atol, max_steps
        Solver settings (see :class:`~models.solvers.SolverSettings`).
    events
        Doses and input changes after t = 0 (see :class:`~models.solvers.Event`).

    Returns
    -------
    pandas.DataFrame
        A ``time`` column and one column per state, in the states' units.

    Raises
    ------
    SolverError
        The integration failed (step limit, step size underflow, non-finite state).
    """
    model = get_model(model)
    theta = model.theta({**model.defaults(), **dict(params or {})}, inputs)
    times = np.asarray(times, dtype=float)
    settings = SolverSettings(method, rtol, atol, max_steps)
    sol = solve(model, theta[None, :], [times], [list(events)], settings)
    if not sol.success:
        raise SolverError(
            f"model {model.name}, method {method}: {sol.messages[0]} after {sol.steps[0]} steps"
        )
    frame = pd.DataFrame(sol.states, columns=list(model.state_names))
    frame.insert(0, "time", times)
    return frame
