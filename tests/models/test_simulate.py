"""Forward simulation of one subject: the table it returns, its errors, and literature sanity checks."""

import numpy as np
import pytest

import models
from models import Event, ModelError, SolverError, SolverSettings, get_model, simulate, solve

ACUTE = get_model("acute_inflammation")


@pytest.fixture(scope="module")
def typical_subject():
    """The prior-median subject after 2 ng/kg endotoxin, every 0.01 h for 12 h."""
    return simulate(
        "acute_inflammation", inputs={"dose": 2.0}, times=np.arange(0.0, 12.0001, 0.01), rtol=1e-8, atol=1e-10
    )


def test_simulate_returns_time_and_state_columns():
    times = [0.0, 1.0, 2.0, 6.0]
    frame = simulate("acute_inflammation", times=times)
    assert list(frame.columns) == ["time", "L", "M", "T", "I", "C"]
    np.testing.assert_array_equal(frame["time"], times)
    defaults = ACUTE.defaults()
    np.testing.assert_array_equal(
        frame.iloc[0, 1:], [2.0, 0.0, defaults["T_b"], defaults["I_b"], defaults["C_b"]]
    )


def test_simulate_is_solve_with_defaults_filled_in():
    times = np.array([0.5, 1.0, 3.0, 8.0])
    frame = simulate(ACUTE, params={"k_T": 2500.0, "r": 0.6}, inputs={"dose": 1.0}, times=times)
    theta = ACUTE.theta({**ACUTE.defaults(), "k_T": 2500.0, "r": 0.6}, {"dose": 1.0})
    expected = solve(ACUTE, theta[None, :], [times], settings=SolverSettings()).states
    np.testing.assert_array_equal(frame[list(ACUTE.state_names)].to_numpy(), expected)


def test_simulate_methods_agree():
    times = np.linspace(0.0, 24.0, 13)
    explicit = simulate("acute_inflammation", times=times, method="explicit", rtol=1e-8, atol=1e-10)
    stiff = simulate("acute_inflammation", times=times, method="stiff", rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(stiff.to_numpy(), explicit.to_numpy(), rtol=1e-5, atol=1e-8)


def test_simulate_applies_events():
    times = [2.0, 4.0]
    plain = simulate("acute_inflammation", times=times)
    dosed = simulate("acute_inflammation", times=times, events=[Event(3.0, "bolus", "L", 2.0)])
    assert dosed["L"].iloc[0] == pytest.approx(plain["L"].iloc[0], rel=1e-5)
    k_L = ACUTE.defaults()["k_L"]
    assert dosed["L"].iloc[1] == pytest.approx(plain["L"].iloc[1] + 2.0 * np.exp(-k_L), rel=1e-5)


def test_simulate_raises_solver_error_naming_model_and_reason():
    # Fast TNF clearance makes the system too stiff for the explicit method within 500 steps.
    with pytest.raises(
        SolverError,
        match=r"model acute_inflammation, method explicit: max_steps reached before the last sample "
        r"time after 500 steps",
    ):
        simulate("acute_inflammation", params={"d_T": 1e4}, method="explicit", max_steps=500)
    # The default method detects the stiffness and switches to Rodas5.
    frame = simulate("acute_inflammation", params={"d_T": 1e4}, max_steps=500)
    assert np.all(np.isfinite(frame.to_numpy()))
    assert models.SolverError is SolverError


def test_simulate_rejects_bad_parameters():
    with pytest.raises(ModelError, match=r"unknown parameters \['k_X'\]"):
        simulate("acute_inflammation", params={"k_X": 1.0})
    with pytest.raises(ModelError, match=r"parameter r=2.0 is outside \[0.0, 1.0\]"):
        simulate("acute_inflammation", params={"r": 2.0})
    with pytest.raises(ModelError, match="unknown solver method 'euler'"):
        simulate("acute_inflammation", method="euler")


# ---- literature sanity checks of the prior-median subject (2 ng/kg endotoxin) ----------------
def _peak(frame, column):
    i = frame[column].idxmax()
    return frame["time"][i], frame[column][i]


def test_tnf_peaks_between_one_and_two_hours(typical_subject):
    time, value = _peak(typical_subject, "T")
    assert 1.0 < time < 2.0
    assert 150.0 < value < 600.0  # ~300 pg/mL in the human challenge (Janum cohort)


def test_il6_peaks_after_tnf_and_cortisol_after_il6(typical_subject):
    t_tnf, _ = _peak(typical_subject, "T")
    t_il6, il6 = _peak(typical_subject, "I")
    t_cortisol, cortisol = _peak(typical_subject, "C")
    assert t_tnf < t_il6 < t_cortisol < 6.0
    assert 400.0 < il6 < 1600.0  # ~700-800 pg/mL
    assert 500.0 < cortisol < 1000.0  # ~700 nmol/L from a baseline of 350


def test_gc_receptor_stress_lowers_receptor_availability():
    frame = simulate(
        "gc_receptor",
        times=[0.0, 24.0, 168.0],
        events=[Event(24.0, "set", "stress", 300.0)],
    )
    assert frame["R"].iloc[2] < frame["R"].iloc[1] - 0.05
    assert frame["C"].iloc[2] > frame["C"].iloc[1] + 300.0
