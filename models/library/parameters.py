"""Parameters shared by the library's models, with units and literature-based default priors.

Sources are those collected in the project's literature note (section 6, "suggested weakly
informative priors"); log-normal priors are given by median and sigma of the log. Production
gains (k_T, k_I, k_IT, k_C) were calibrated so that the prior-median subject reproduces the
human 2 ng/kg endotoxin challenge: TNF peak ~300 pg/mL at ~1.5 h, IL-6 peak ~800 pg/mL at 2-3 h,
cortisol peak at ~3 h (Janum cohort, Brady et al. 2018; literature note section 8).
"""

from ..spec import Beta, FlipFlop, Input, LogNormal, Parameter, Ridge, State

ENDOTOXIN = State("L", "ng/kg", "circulating endotoxin (LPS)")
MONOCYTES = State("M", "ng/kg", "monocyte activation, in endotoxin-equivalents")
TNF = State("T", "pg/mL", "plasma TNF-alpha")
IL6 = State("I", "pg/mL", "plasma IL-6")
CORTISOL = State("C", "nmol/L", "plasma total cortisol")

DOSE = Input("dose", "ng/kg", "endotoxin bolus at t = 0", default=2.0)

k_L = Parameter(
    "k_L", "1/h", "endotoxin clearance (it activates monocytes as it is cleared)",
    LogNormal(1.0, 0.35),
    source="fitted 1.01-1.08/h (Windoloski 2024; Dobreva 2021); rat LPS t1/2 ~1 h. Kept informative "
    "(0.5-2/h): with d_M it forms a flip-flop pair that one challenge cannot order",
)
d_M = Parameter(
    "d_M", "1/h", "decay of monocyte activation", LogNormal(1.5, 0.6),
    source="2.5-3.5/h in Olufsen-lab fits; 1.5/h puts the TNF peak at ~1.3 h here",
)
k_T = Parameter(
    "k_T", "pg/mL/h per ng/kg", "TNF-alpha synthesis per unit monocyte activation",
    LogNormal(1800.0, 0.82), source="calibrated to TNF peak ~300 pg/mL; lab-to-lab spread",
)
d_T = Parameter(
    "d_T", "1/h", "TNF-alpha clearance", LogNormal(2.0, 0.3),
    source="rhTNF t1/2 ~20 min (Chapman 1987); post-peak fall >= 1.2/h (Janum). Informative "
    "(1.1-3.6/h), as the literature note advises, so the slow TNF tail is not given to d_T",
)
k_I = Parameter(
    "k_I", "pg/mL/h per ng/kg", "IL-6 synthesis driven directly by monocyte activation",
    LogNormal(100.0, 1.0), source="calibrated: the IL-6 peak at ~2 h needs most IL-6 TNF-driven",
)
k_IT = Parameter(
    "k_IT", "1/h", "IL-6 synthesis driven by TNF-alpha (pg/mL IL-6 per h per pg/mL TNF)",
    LogNormal(6.5, 0.82), source="calibrated to IL-6 peak ~700-800 pg/mL at ~2 h",
)
d_I = Parameter(
    "d_I", "1/h", "IL-6 clearance", LogNormal(1.5, 0.47),
    source="post-peak fall >= 1.4/h (Janum); rat beta phase 1.8/h",
)
k_C = Parameter(
    "k_C", "nmol/L/h per pg/mL", "cortisol secretion driven by IL-6 (HPA axis)",
    LogNormal(0.45, 0.71),
    source="calibrated to a cortisol peak ~700 nmol/L at ~3 h (rise of a few hundred)",
)
d_C = Parameter(
    "d_C", "1/h", "cortisol clearance", LogNormal(0.55, 0.31),
    source="i.v. hydrocortisone t1/2 76 min (Hindmarsh 2015); 1.15-1.5 h (Toothaker 1981)",
)
K_C = Parameter(
    "K_C", "nmol/L", "cortisol concentration for half-maximal suppression",
    LogNormal(500.0, 0.82), source="monocyte IC50 ~1 uM (Waage 1988); endogenous peaks do not abolish TNF",
)
T_b = Parameter(
    "T_b", "pg/mL", "TNF-alpha baseline", LogNormal(1.5, 0.82), source="1.1 +/- 0.3 pg/mL (Janum)",
)
I_b = Parameter(
    "I_b", "pg/mL", "IL-6 baseline", LogNormal(1.0, 0.82), source="1.05 +/- 0.52 pg/mL (Janum)",
)
C_b = Parameter(
    "C_b", "nmol/L", "cortisol baseline", LogNormal(350.0, 0.42),
    source="morning-weighted 150-800 nmol/L; time-of-day dependent",
)
r = Parameter(
    "r", "1", "glucocorticoid resistance: fraction of cortisol suppression lost", Beta(2.0, 5.0),
    upper=1.0, source="no verified fold-change; 100-fold IC50 spread in healthy PBMC",
)

# Subject-level variation a cohort fit allows by default: production gains, HPA gain and cortisol
# baseline (the literature note's between-subject spreads are largest there), plus a model's own
# GC resistance where it is a parameter.
COHORT_RANDOM_EFFECTS = ("k_T", "k_IT", "k_C", "C_b")

# k_L and d_M enter only through M(t) = dose k_L (e^{-d_M t} - e^{-k_L t}) / (k_L - d_M), times the
# gains k_T and k_I: one challenge fixes the slower rate, not which of the two it is.
FLIP_FLOP = FlipFlop(("k_L", "d_M"), ("k_T", "k_I"))

# Literature note, section 7: suppression depends on r and K_C only through K_C / (1 - r).
SUPPRESSION_RIDGE = Ridge(
    ("r", "K_C"),
    "cortisol suppression depends on r and K_C only through K_C / (1 - r), so with K_C free the "
    "absolute level of r rests partly on the priors; differences between groups (same K_C) are better "
    "determined than the levels. An ex-vivo cortisol dose-response per subject would pin K_C.",
)

CYTOKINE_EQUATIONS = """\
dL/dt = -k_L L                                                  [ng/kg/h]
dM/dt = k_L L - d_M M                                           [ng/kg/h]
dT/dt = d_T (T_b - T) + k_T M h                                 [pg/mL/h]
dI/dt = d_I (I_b - I) + (k_I M + k_IT T) h                      [pg/mL/h]
(I_b is IL-6 at t = 0; baseline TNF keeps driving IL-6 at k_IT T_b h, so without endotoxin
IL-6 drifts slowly towards I_b + k_IT T_b h / d_I.)"""


def cytokine_rates(s, p, h) -> dict:
    """Time derivatives of L, M, T and I (``CYTOKINE_EQUATIONS``) under cortisol suppression ``h``."""
    return {
        "L": -p.k_L * s.L,
        "M": p.k_L * s.L - p.d_M * s.M,
        "T": p.d_T * (p.T_b - s.T) + p.k_T * s.M * h,
        "I": p.d_I * (p.I_b - s.I) + (p.k_I * s.M + p.k_IT * s.T) * h,
    }
