"""Small real fits shared by the diagnostics, predictive and report tests (one per test process).

They are cached here rather than in a conftest fixture so that the three test modules share them:
each costs a nutpie compile (~20 s) plus a few seconds of sampling on two cores.
"""

from functools import lru_cache

import models
from inference.build import ModelOptions
from inference.data import load_dataset
from inference.fit import fit

SINGLE = "data/single_subject/observations.csv"
COHORT = "data/cohort/observations.csv"
MODEL = models.get_model("acute_inflammation")
# Parameters the single-subject design pins down well (no r-K_C ridge), so that a short run
# converges: TNF production and clearance, cortisol clearance.
SINGLE_FREE = ("k_T", "d_T", "d_C")
# Two subjects per group, GC resistance varying by subject and group, everything else fixed.
COHORT_SUBJECTS = ("S01", "S02", "S03", "S04")


def _fixed(free):
    return {name: value for name, value in MODEL.defaults().items() if name not in free}


@lru_cache(maxsize=1)
def single_fit():
    """The shipped single-subject example, three free parameters, 4 chains x 500 draws."""
    dataset = load_dataset(SINGLE)
    options = ModelOptions(fixed=_fixed(SINGLE_FREE))
    return fit(MODEL, dataset, options, draws=500, tune=400, chains=4, seed=7, progress=False)


@lru_cache(maxsize=1)
def cohort_fit():
    """Four subjects of the shipped cohort with r by subject and group (short run, not converged)."""
    dataset = load_dataset(COHORT).select(COHORT_SUBJECTS)
    options = ModelOptions(fixed=_fixed(("r",)), random_effects=("r",), group_effects=("r",))
    return fit(MODEL, dataset, options, draws=100, tune=150, chains=2, seed=5, progress=False)
