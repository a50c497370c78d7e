"""What the body does and how to compute it: cytokine-balance ODE models and their solvers."""

from .library import MODELS, get_model
from .simulate import SolverError, simulate
from .solvers import Event, Solution, SolverSettings, solve
from .spec import (
    Beta,
    FlipFlop,
    Gamma,
    HalfNormal,
    Input,
    LogNormal,
    MathNamespace,
    ModelError,
    ModelSource,
    Normal,
    Observable,
    OdeModel,
    Parameter,
    Prior,
    State,
    TruncatedNormal,
)

__all__ = [
    "MODELS",
    "Beta",
    "Event",
    "FlipFlop",
    "Gamma",
    "HalfNormal",
    "Input",
    "LogNormal",
    "MathNamespace",
    "ModelError",
    "ModelSource",
    "Normal",
    "Observable",
    "OdeModel",
    "Parameter",
    "Prior",
    "Solution",
    "SolverError",
    "SolverSettings",
    "State",
    "TruncatedNormal",
    "get_model",
    "simulate",
    "solve",
]
