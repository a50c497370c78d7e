"""A model of your own, in a file: a depot and a central compartment (e.g. a tracer given at 0 h).

    dS/dt = -ka S              [pg/mL/h]   depot
    dy/dt = ka S - th y        [pg/mL/h]   central compartment, measured as "tracer"
    S(0) = dose0, y(0) = 0

Fit it with ``cytokine-balance fit DATA.csv --model examples/two_compartments.py:TWO``. Any
identifier names a state or parameter (``S``, ``y``, ``th`` included).

``ka`` and ``th`` are a flip-flop pair: swapping them and scaling ``dose0`` by ka / th gives the
same curve. With log-normal priors on all three, ``flip_flop=FlipFlop(("ka", "th"), ("dose0",))``
in ``OdeModel`` makes fits sample the pair folded (README, Models: the flip-flop pair).
"""

from models import HalfNormal, LogNormal, Observable, OdeModel, Parameter, State


def rhs(s, p, u, m):
    """Right-hand side: first-order absorption from the depot, first-order elimination."""
    return {"S": -p.ka * s.S, "y": p.ka * s.S - p.th * s.y}


def initial(p, u, m):
    """State at 0 h: the whole dose in the depot."""
    return {"S": p.dose0, "y": 0.0}


TWO = OdeModel(
    name="two_compartments",
    title="depot and central compartment",
    equations="dS/dt = -ka S; dy/dt = ka S - th y; S(0) = dose0, y(0) = 0   (time in h)",
    states=(State("S", "pg/mL", "depot"), State("y", "pg/mL", "central compartment")),
    parameters=(
        Parameter("ka", "1/h", "absorption rate", LogNormal(1.0, 0.3)),
        Parameter("th", "1/h", "elimination rate", HalfNormal(0.5)),
        Parameter("dose0", "pg/mL", "depot at 0 h", LogNormal(100.0, 0.3)),
    ),
    inputs=(),
    observables=(Observable("tracer", "y", "pg/mL"),),
    rhs=rhs,
    initial=initial,
)
