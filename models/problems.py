"""Classic stiff test problems as model specifications, for solver tests and benchmarks.

Robertson's chemical kinetics and HIRES, as given in Hairer & Wanner, *Solving Ordinary Differential
Equations II* (IV.1, IV.10) and the IVP test set of Mazzia & Magherini. Their rate constants are
parameters (log-normal priors around the published values, so sensitivities can be taken); they are
not cytokine models and are not in the model library. The Van der Pol oscillator with mu = 1000 is
not here: scipy's Radau, the independent reference, did not finish its solve over [0, 3000] within
minutes even at rtol 1e-6.
"""

from __future__ import annotations

from dataclasses import dataclass

from .spec import LogNormal, OdeModel, Parameter, State


@dataclass(frozen=True)
class StiffProblem:
    """A test problem: its model, end time and the absolute tolerance its states' scale needs."""

    model: OdeModel
    t_end: float
    atol: float


def _parameters(values: dict[str, float], unit: str = "1") -> tuple[Parameter, ...]:
    return tuple(Parameter(name, unit, "rate constant", LogNormal(value, 0.1))
                 for name, value in values.items())


def _states(names: str) -> tuple[State, ...]:
    return tuple(State(name, "1", "concentration") for name in names.split())


def _robertson_rhs(s, p, u, m):
    return {
        "y1": -p.k1 * s.y1 + p.k3 * s.y2 * s.y3,
        "y2": p.k1 * s.y1 - p.k3 * s.y2 * s.y3 - p.k2 * s.y2**2,
        "y3": p.k2 * s.y2**2,
    }


ROBERTSON = OdeModel(
    name="robertson",
    title="Robertson's autocatalytic reaction (stiff chemical kinetics)",
    equations="y1' = -k1 y1 + k3 y2 y3; y2' = k1 y1 - k3 y2 y3 - k2 y2^2; y3' = k2 y2^2",
    states=_states("y1 y2 y3"),
    parameters=_parameters({"k1": 0.04, "k2": 3e7, "k3": 1e4}),
    inputs=(),
    observables=(),
    rhs=_robertson_rhs,
    initial=lambda p, u, m: {"y1": 1.0, "y2": 0.0, "y3": 0.0},
)


def _hires_rhs(s, p, u, m):
    return {
        "y1": -p.k1 * s.y1 + p.k2 * s.y2 + p.k3 * s.y3 + p.k4,
        "y2": p.k1 * s.y1 - p.k5 * s.y2,
        "y3": -p.k6 * s.y3 + p.k2 * s.y4 + p.k7 * s.y5,
        "y4": p.k3 * s.y2 + p.k1 * s.y3 - p.k8 * s.y4,
        "y5": -p.k9 * s.y5 + p.k2 * s.y6 + p.k2 * s.y7,
        "y6": -p.k10 * s.y6 * s.y8 + p.k11 * s.y4 + p.k1 * s.y5 - p.k2 * s.y6 + p.k11 * s.y7,
        "y7": p.k10 * s.y6 * s.y8 - p.k12 * s.y7,
        "y8": -p.k10 * s.y6 * s.y8 + p.k12 * s.y7,
    }


HIRES = OdeModel(
    name="hires",
    title="HIRES: growth and differentiation of plant tissue under light (Schaefer 1975)",
    equations="8 linear and bilinear reactions; see Hairer & Wanner II, IV.10",
    states=_states("y1 y2 y3 y4 y5 y6 y7 y8"),
    parameters=_parameters({
        "k1": 1.71, "k2": 0.43, "k3": 8.32, "k4": 0.0007, "k5": 8.75, "k6": 10.03, "k7": 0.035,
        "k8": 1.12, "k9": 1.745, "k10": 280.0, "k11": 0.69, "k12": 1.81,
    }),
    inputs=(),
    observables=(),
    rhs=_hires_rhs,
    initial=lambda p, u, m: {"y1": 1.0, "y2": 0.0, "y3": 0.0, "y4": 0.0, "y5": 0.0, "y6": 0.0,
                             "y7": 0.0, "y8": 0.0057},
)


PROBLEMS: dict[str, StiffProblem] = {
    "robertson": StiffProblem(ROBERTSON, t_end=4e5, atol=1e-14),
    "hires": StiffProblem(HIRES, t_end=321.8122, atol=1e-12),
}
