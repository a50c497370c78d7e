"""The scaling benchmark's cohorts and figures: real values, not timings."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from inference.bench import scaling_logp_row
from inference.data import load_dataset
from inference.synthetic import simulate_cohort

DATA = Path(__file__).resolve().parents[2] / "data"


def test_simulated_cohort_of_20_is_the_shipped_cohort():
    truth, dataset = simulate_cohort(20)
    shipped = load_dataset(DATA / "cohort" / "observations.csv")
    pd.testing.assert_frame_equal(dataset.observations.reset_index(drop=True),
                                  shipped.observations.reset_index(drop=True),
                                  check_exact=False, rtol=1e-12, check_dtype=False)
    shipped_truth = pd.read_csv(DATA / "cohort" / "truth.csv")
    np.testing.assert_allclose(truth["k_T"], shipped_truth["k_T"], rtol=1e-12)


def test_larger_cohorts_keep_the_design():
    _, dataset = simulate_cohort(40)
    obs = dataset.observations
    assert len(dataset.subject_ids) == 40 and set(dataset.groups) == {"control", "chronic_stress"}
    assert obs.loc[obs["analyte"] == "cortisol", "subject"].nunique() == 28  # 14 of 20, scaled
    with pytest.raises(ValueError, match="n_subjects"):
        simulate_cohort(0)


def test_scaling_row_is_the_models_log_density():
    row = scaling_logp_row(2, repeat=5)
    assert row["subjects"] == 2 and row["samples"] == 52
    # The NUMBA graph that is timed computes PyMC's own (C mode) log density and gradient.
    assert row["logp"] == pytest.approx(row["logp_c"], rel=1e-10)
    np.testing.assert_allclose(row["grad"], row["grad_c"], rtol=1e-8, atol=1e-8)
    assert row["grad"].size == row["free"]
    assert row["solver_steps"] > 2 * 30  # both subjects solved (one alone takes ~60 steps)
    assert row["graph_per_subject_us"] == pytest.approx(row["graph_us"] / 2)
    assert row["solver_per_subject_us"] == pytest.approx(row["solver_us"] / 2)
