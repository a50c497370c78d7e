"""Stress-driven glucocorticoid-receptor down-regulation: resistance that develops dynamically.

Cortisol binds the receptor within minutes (k_G ~ 60/h) while receptor availability recovers over
about a day (k_R ~ 0.05/h, cf. free GR t1/2 ~12 h in Ramakrishnan et al. 2002): time scales four
orders of magnitude apart make the system stiff. Sustained cortisol, from a chronic-stress input,
lowers receptor availability R and with it cortisol's suppression of TNF-alpha and IL-6.
"""

from ..spec import Input, LogNormal, Observable, OdeModel, Parameter, Resistance, State
from . import parameters as P

EQUATIONS = P.CYTOKINE_EQUATIONS + """
dC/dt = d_C (C_b - C) + k_C (I - I_b) + stress                  [nmol/L/h]
dG/dt = k_G (R C / (C + K_C) - G)                                [1/h]
dR/dt = k_R (1 - R) - k_D G                                      [1/h]
h     = 1 - G        suppression by activated (cortisol-bound) receptors
R_b   = k_R / (k_R + k_D C_b / (C_b + K_C))     receptor availability at rest
L(0) = dose, M(0) = 0, T(0) = T_b, I(0) = I_b, C(0) = C_b,
G(0) = R_b C_b / (C_b + K_C), R(0) = R_b                        (time in h)
Effective GC resistance at any time: 1 - R."""

k_G = Parameter(
    "k_G", "1/h", "cortisol-receptor binding equilibration", LogNormal(60.0, 0.3),
    source="binding equilibrates within minutes (assumed)",
)
k_R = Parameter(
    "k_R", "1/h", "receptor recovery (resynthesis)", LogNormal(0.05, 0.5),
    source="free GR loss 0.057/h, t1/2 ~12 h (Ramakrishnan 2002, rat liver)",
)
k_D = Parameter(
    "k_D", "1/h", "receptor down-regulation per activated receptor", LogNormal(0.03, 0.8),
    source="GR mRNA repression by occupied receptor (Ramakrishnan 2002); scale assumed",
)
STRESS = Input("stress", "nmol/L/h", "extra cortisol secretion from chronic stress", default=0.0)
ACTIVATED = State("G", "1", "fraction of receptors activated by cortisol")
RECEPTOR = State("R", "1", "glucocorticoid-receptor availability (1 = unstressed maximum)")


def rhs(s, p, u, m):
    """Right-hand side of the receptor model (see ``EQUATIONS``)."""
    h = 1 - s.G
    return {
        **P.cytokine_rates(s, p, h),
        "C": p.d_C * (p.C_b - s.C) + p.k_C * (s.I - p.I_b) + u.stress,
        "G": p.k_G * (s.R * s.C / (s.C + p.K_C) - s.G),
        "R": p.k_R * (1 - s.R) - p.k_D * s.G,
    }


def initial(p, u, m):
    """Resting steady state (no stress) plus the endotoxin dose."""
    occupancy = p.C_b / (p.C_b + p.K_C)
    R_b = p.k_R / (p.k_R + p.k_D * occupancy)
    return {"L": u.dose, "M": 0.0, "T": p.T_b, "I": p.I_b, "C": p.C_b,
            "G": R_b * occupancy, "R": R_b}


MODEL = OdeModel(
    name="gc_receptor",
    title="Endotoxin challenge with glucocorticoid-receptor down-regulation under stress (stiff)",
    equations=EQUATIONS,
    states=(P.ENDOTOXIN, P.MONOCYTES, P.TNF, P.IL6, P.CORTISOL, ACTIVATED, RECEPTOR),
    parameters=(P.k_L, P.d_M, P.k_T, P.d_T, P.k_I, P.k_IT, P.d_I, P.k_C, P.d_C, P.K_C,
                k_G, k_R, k_D, P.T_b, P.I_b, P.C_b),
    inputs=(P.DOSE, STRESS),
    observables=(
        Observable("TNF", "T", "pg/mL"),
        Observable("IL6", "I", "pg/mL"),
        Observable("cortisol", "C", "nmol/L"),
    ),
    rhs=rhs,
    initial=initial,
    cohort_random_effects=P.COHORT_RANDOM_EFFECTS,
    flip_flop=P.FLIP_FLOP,
    resistance=Resistance(one_minus_state="R"),
)
