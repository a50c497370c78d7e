"""A two-parameter exponential decay, written as the library models are: small enough for many fits."""

from models import LogNormal, Observable, OdeModel, Parameter, State

EQUATIONS = """
dX/dt = -k X                       [pg/mL/h]
X(0) = X0                          (time in h)"""


def rhs(s, p, u, m):
    """Right-hand side: first-order elimination."""
    return {"X": -p.k * s.X}


def initial(p, u, m):
    """State at t = 0: the initial concentration."""
    return {"X": p.X0}


DECAY = OdeModel(
    name="decay",
    title="Exponential decay X(t) = X0 exp(-k t)",
    equations=EQUATIONS,
    states=(State("X", "pg/mL", "tracer concentration"),),
    parameters=(
        Parameter("k", "1/h", "elimination rate", LogNormal(0.5, 0.4)),
        Parameter("X0", "pg/mL", "initial concentration", LogNormal(100.0, 0.4)),
    ),
    inputs=(),
    observables=(Observable("tracer", "X", "pg/mL"),),
    rhs=rhs,
    initial=initial,
)
