"""Model specification: validation errors, parameter packing, priors and the library's metadata."""

import math

import numpy as np
import pytest

from models import (
    MODELS,
    Beta,
    Input,
    LogNormal,
    ModelError,
    Normal,
    Observable,
    OdeModel,
    Parameter,
    Prior,
    SolverSettings,
    State,
    get_model,
    solve,
)


def _decay_rhs(s, p, u, m):
    return {"X": -p.k * s.X}


def _decay_initial(p, u, m):
    return {"X": u.x0}


def make_model(**changes) -> OdeModel:
    """A one-state decay model; keyword arguments replace its parts."""
    parts = {
        "name": "decay",
        "title": "linear decay",
        "equations": "dX/dt = -k X",
        "states": (State("X", "ng/mL", "amount"),),
        "parameters": (Parameter("k", "1/h", "decay rate", LogNormal(1.0, 0.5), upper=100.0),),
        "inputs": (Input("x0", "ng/mL", "initial amount", default=2.0),),
        "observables": (Observable("X_obs", "X", "ng/mL"),),
        "rhs": _decay_rhs,
        "initial": _decay_initial,
    }
    parts.update(changes)
    return OdeModel(**parts)


ACUTE = get_model("acute_inflammation")


# ---- OdeModel validation ---------------------------------------------------------------------
def test_rhs_missing_a_state_raises():
    two_states = (State("X", "1", "x"), State("Y", "1", "y"))
    with pytest.raises(ModelError, match=r"model decay: rhs must return exactly the states \['X', 'Y'\]"):
        make_model(
            states=two_states,
            initial=lambda p, u, m: {"X": 1.0, "Y": 0.0},
        )


def test_initial_missing_a_state_raises():
    with pytest.raises(
        ModelError, match=r"model decay: initial must return exactly the states \['X'\], got \[\]"
    ):
        make_model(initial=lambda p, u, m: {})


def test_rhs_with_an_extra_state_raises():
    with pytest.raises(ModelError, match=r"rhs must return exactly the states \['X'\], got \['X', 'Z'\]"):
        make_model(rhs=lambda s, p, u, m: {"X": -p.k * s.X, "Z": 0.0})


def test_observable_of_unknown_state_raises():
    with pytest.raises(ModelError, match="observable X_obs reads unknown state Q"):
        make_model(observables=(Observable("X_obs", "Q", "ng/mL"),))


def test_name_used_twice_raises():
    with pytest.raises(ModelError, match=r"names used twice: \['X'\]"):
        make_model(inputs=(Input("X", "ng/mL", "clashes with the state"),))


def test_parameter_bounds_must_be_ordered():
    with pytest.raises(ModelError, match="parameter k: lower bound must be below upper bound"):
        Parameter("k", "1/h", "rate", LogNormal(1.0, 0.5), lower=2.0, upper=1.0)


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: LogNormal(0.0, 1.0), "LogNormal needs median > 0 and sigma > 0"),
        (lambda: LogNormal(1.0, -1.0), "LogNormal needs median > 0 and sigma > 0"),
        (lambda: Beta(0.0, 2.0), "Beta needs alpha > 0 and beta > 0"),
        (lambda: Normal(0.0, 0.0), "Normal needs sigma > 0"),
    ],
)
def test_invalid_prior_raises(make, message):
    with pytest.raises(ModelError, match=message):
        make()


def test_model_error_is_a_value_error():
    assert issubclass(ModelError, ValueError)


# ---- theta packing ---------------------------------------------------------------------------
def test_theta_packs_parameters_then_inputs_with_defaults():
    params = {name: float(i + 1) / 20 for i, name in enumerate(ACUTE.parameter_names)}
    theta = ACUTE.theta(params)
    assert ACUTE.theta_names == (*ACUTE.parameter_names, "dose")
    np.testing.assert_array_equal(theta[:-1], [params[n] for n in ACUTE.parameter_names])
    assert theta[-1] == 2.0  # the dose input's default (ng/kg)
    assert ACUTE.theta(params, {"dose": 4.0})[-1] == 4.0


def test_theta_unknown_parameter_raises():
    params = {**ACUTE.defaults(), "k_Z": 1.0}
    with pytest.raises(ModelError, match=r"model acute_inflammation: unknown parameters \['k_Z'\]; expected"):
        ACUTE.theta(params)


def test_theta_missing_parameter_raises():
    params = ACUTE.defaults()
    del params["d_C"]
    with pytest.raises(ModelError, match=r"missing parameters \['d_C'\]"):
        ACUTE.theta(params)


def test_theta_unknown_input_raises():
    with pytest.raises(ModelError, match=r"unknown inputs \['stress'\]; expected \['dose'\]"):
        ACUTE.theta(ACUTE.defaults(), {"stress": 1.0})


@pytest.mark.parametrize(
    ("name", "value", "bounds"),
    [
        ("r", 1.5, r"\[0.0, 1.0\]"),
        ("r", -0.1, r"\[0.0, 1.0\]"),
        ("k_L", -1.0, r"\[0.0, inf\]"),
        ("d_T", math.nan, r"\[0.0, inf\]"),
        ("k_T", math.inf, r"\[0.0, inf\]"),
    ],
)
def test_theta_out_of_bounds_parameter_raises(name, value, bounds):
    params = {**ACUTE.defaults(), name: value}
    with pytest.raises(ModelError, match=rf"parameter {name}={value} is outside {bounds}"):
        ACUTE.theta(params)


def test_parameter_lookup_by_name():
    assert ACUTE.parameter("k_T").unit == "pg/mL/h per ng/kg"
    with pytest.raises(ModelError, match="model acute_inflammation has no parameter 'k_Z'; parameters:"):
        ACUTE.parameter("k_Z")


def test_observable_states_index_the_observed_states():
    idx = ACUTE.observable_states()
    assert [ACUTE.state_names[i] for i in idx] == ["T", "I", "C"]
    assert ACUTE.analytes == ("TNF", "IL6", "cortisol")


# ---- float evaluation ------------------------------------------------------------------------
def test_evaluate_rhs_and_initial_follow_the_equations():
    params = ACUTE.defaults()
    theta = ACUTE.theta(params, {"dose": 3.0})
    y0 = ACUTE.evaluate_initial(theta)
    np.testing.assert_array_equal(y0, [3.0, 0.0, params["T_b"], params["I_b"], params["C_b"]])
    y = np.array([0.5, 0.7, 100.0, 200.0, 600.0])
    h = 1 - (1 - params["r"]) * 600.0 / (600.0 + params["K_C"])  # cortisol suppression, 1
    expected = [
        -params["k_L"] * 0.5,
        params["k_L"] * 0.5 - params["d_M"] * 0.7,
        params["d_T"] * (params["T_b"] - 100.0) + params["k_T"] * 0.7 * h,
        params["d_I"] * (params["I_b"] - 200.0) + (params["k_I"] * 0.7 + params["k_IT"] * 100.0) * h,
        params["d_C"] * (params["C_b"] - 600.0) + params["k_C"] * (200.0 - params["I_b"]),
    ]
    np.testing.assert_allclose(ACUTE.evaluate_rhs(y, theta), expected, rtol=1e-14)


@pytest.mark.parametrize("model", list(MODELS.values()), ids=list(MODELS))
def test_resting_subject_moves_only_by_the_documented_tnf_drive_of_il6(model):
    # With no endotoxin every state is at rest except IL-6: as the reference equations are
    # written, baseline TNF drives IL-6 at k_IT T_b h (documented in the model's equations).
    theta = model.theta(model.defaults(), {"dose": 0.0})
    y0 = model.evaluate_initial(theta)
    rates = model.evaluate_rhs(y0, theta)
    p = model.defaults()
    i = model.state_names.index("I")
    if "r" in p:
        h = 1 - (1 - p["r"]) * p["C_b"] / (p["C_b"] + p["K_C"])
    else:
        h = 1 - y0[model.state_names.index("G")]
    assert rates[i] == pytest.approx(p["k_IT"] * p["T_b"] * h, rel=1e-12)
    np.testing.assert_allclose(np.delete(rates, i), 0.0, atol=1e-12)


@pytest.mark.parametrize("model", list(MODELS.values()), ids=list(MODELS))
def test_the_declared_flip_flop_pair_is_exact(model):
    # Swapping k_L and d_M and scaling the gains k_T, k_I by k_L / d_M leaves every observable
    # unchanged, so no data can order the pair (README, Scaling: the two-armed posterior).
    assert model.flip_flop.parameters == ("k_L", "d_M", "k_T", "k_I")
    p = model.defaults()
    k1, k2 = model.flip_flop.rates
    ratio = p[k1] / p[k2]
    swapped = {**p, k1: p[k2], k2: p[k1], **{g: p[g] * ratio for g in model.flip_flop.gains}}
    times = np.linspace(0.0, 24.0, 25)
    settings = SolverSettings(method="rodas5", rtol=1e-10, atol=1e-10)
    observed = [model.state_names.index(o.state) for o in model.observables]
    a, b = (solve(model, model.theta(q)[None], [times], settings=settings).states[:, observed]
            for q in (p, swapped))
    np.testing.assert_allclose(a, b, rtol=1e-7)
    assert abs(p["k_L"] - p["d_M"]) > 0.1


# ---- priors ----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("prior", "median"),
    [(LogNormal(350.0, 0.42), 350.0), (Beta(2.0, 5.0), 0.26445), (Normal(-1.0, 2.0), -1.0)],
)
def test_prior_draws_have_the_prior_median(prior, median, rng):
    draws = prior.sample(rng, 40_000)
    assert draws.shape == (40_000,)
    assert prior.typical() == pytest.approx(median, rel=1e-4)
    # The sample median of 40k draws is within ~1% of the median for these spreads.
    assert np.median(draws) == pytest.approx(median, rel=0.02, abs=0.02)


def test_prior_descriptions():
    assert LogNormal(2.0, 0.47).describe() == "LogNormal(median=2, sigma=0.47)"
    assert Beta(2.0, 5.0).describe() == "Beta(alpha=2, beta=5)"
    assert Normal(0.0, 1.0).describe() == "Normal(mu=0, sigma=1)"


# ---- the library -----------------------------------------------------------------------------
@pytest.mark.parametrize("model", list(MODELS.values()), ids=list(MODELS))
def test_library_model_documents_every_part(model):
    for p in model.parameters:
        assert p.unit.strip(), f"{model.name}.{p.name} has no unit"
        assert p.description.strip(), f"{model.name}.{p.name} has no description"
        assert p.source.strip(), f"{model.name}.{p.name} has no source for its prior"
        assert isinstance(p.prior, Prior), f"{model.name}.{p.name} has no prior"
        assert p.lower <= p.prior.typical() <= p.upper, f"{model.name}.{p.name}: median outside bounds"
    for part in (*model.states, *model.inputs):
        assert part.unit.strip() and part.description.strip(), f"{model.name}.{part.name}"
    for obs in model.observables:
        assert obs.unit == next(s.unit for s in model.states if s.name == obs.state)
    assert model.time_unit == "h"
    assert model.equations.strip()
    # The prior-median subject is a valid parameter vector.
    assert np.all(np.isfinite(model.theta(model.defaults())))


def test_get_model_by_name_and_passthrough():
    assert get_model("gc_receptor") is MODELS["gc_receptor"]
    assert get_model(ACUTE) is ACUTE
    with pytest.raises(ModelError, match=r"unknown model 'sepsis'; library models: \['acute_inflammation'"):
        get_model("sepsis")
