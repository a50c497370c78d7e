"""The reference model: endotoxin challenge, TNF-alpha, IL-6 and cortisol with static GC resistance."""

from ..spec import Observable, OdeModel, Resistance
from . import parameters as P

EQUATIONS = P.CYTOKINE_EQUATIONS + """
dC/dt = d_C (C_b - C) + k_C (I - I_b)                           [nmol/L/h]
h(C)  = 1 - (1 - r) C / (C + K_C)      cortisol suppression; r in [0, 1] is GC resistance
L(0) = dose, M(0) = 0, T(0) = T_b, I(0) = I_b, C(0) = C_b       (time in h)"""


def rhs(s, p, u, m):
    """Right-hand side of the acute-inflammation model (see ``EQUATIONS``)."""
    h = 1 - (1 - p.r) * s.C / (s.C + p.K_C)
    return {**P.cytokine_rates(s, p, h), "C": p.d_C * (p.C_b - s.C) + p.k_C * (s.I - p.I_b)}


def initial(p, u, m):
    """State at t = 0: the endotoxin dose on top of resting baselines."""
    return {"L": u.dose, "M": 0.0, "T": p.T_b, "I": p.I_b, "C": p.C_b}


MODEL = OdeModel(
    name="acute_inflammation",
    title="Endotoxin challenge with cortisol feedback and static glucocorticoid resistance r",
    equations=EQUATIONS,
    states=(P.ENDOTOXIN, P.MONOCYTES, P.TNF, P.IL6, P.CORTISOL),
    parameters=(P.k_L, P.d_M, P.k_T, P.d_T, P.k_I, P.k_IT, P.d_I, P.k_C, P.d_C, P.K_C, P.r,
                P.T_b, P.I_b, P.C_b),
    inputs=(P.DOSE,),
    observables=(
        Observable("TNF", "T", "pg/mL"),
        Observable("IL6", "I", "pg/mL"),
        Observable("cortisol", "C", "nmol/L"),
    ),
    rhs=rhs,
    initial=initial,
    cohort_random_effects=P.COHORT_RANDOM_EFFECTS + ("r",),
    ridges=(P.SUPPRESSION_RIDGE,),
    flip_flop=P.FLIP_FLOP,
    resistance=Resistance(parameter="r"),
)
