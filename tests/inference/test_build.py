"""The PyMC model builder: parameters, cohort structure, censoring, events."""

import dataclasses

import numpy as np
import pandas as pd
import pytest
import scipy.stats

import models
from inference.build import SIGMA_PRIOR_SCALE, ModelOptions, build_model, default_options, layout
from inference.data import DataError, load_dataset
from inference.op import FIT_SOLVER
from models import ModelError

SINGLE = "data/single_subject/observations.csv"
COHORT = "data/cohort/observations.csv"
MODEL = models.get_model("acute_inflammation")


@pytest.fixture(scope="module")
def single():
    return load_dataset(SINGLE)


@pytest.fixture(scope="module")
def cohort():
    return load_dataset(COHORT).select(["S01", "S02", "S03", "S04", "S15"])


@pytest.fixture(scope="module")
def truth():
    return pd.read_csv("data/single_subject/truth.csv").iloc[0]


def _evaluate(pm_model, expressions, point):
    """Evaluate model expressions at a point of the value variables (RVs replaced by values)."""
    single = not isinstance(expressions, list)
    outputs = pm_model.replace_rvs_by_values([expressions] if single else expressions)
    fn = pm_model.compile_fn(outputs, inputs=pm_model.value_vars, on_unused_input="ignore")
    values = fn(point)
    return values[0] if single else values


def test_pointwise_censored_loglik_matches_direct_computation(single, truth):
    """M3 censoring: log-density for quantified samples, log-CDF at the LLOQ for censored ones."""
    fixed = {k: float(truth[k]) for k in MODEL.parameter_names if k != "r"}
    pm_model = build_model(MODEL, single, ModelOptions(fixed=fixed))
    point = pm_model.initial_point()
    point["r_logodds__"] = np.array(np.log(0.4 / 0.6))
    sigma = np.array([0.12, 0.2, 0.08])
    point["sigma_log__"] = np.log(sigma)
    loglik = _evaluate(pm_model, pm_model.logp(vars=[pm_model["log_y"]], sum=False)[0], point)

    obs = single.observations
    theta = MODEL.theta({**fixed, "r": 0.4}, {"dose": 2.0})
    times = np.unique(obs["time"])
    sol = models.solve(MODEL, theta[None], [times], settings=FIT_SOLVER)  # the fit's solver
    state = {
        a: MODEL.state_names.index(o.state) for a, o in zip(MODEL.analytes, MODEL.observables, strict=False)
    }
    mu = np.array(
        [
            sol.states[np.searchsorted(times, t), state[a]]
            for t, a in zip(obs["time"], obs["analyte"], strict=False)
        ]
    )
    sd = sigma[[MODEL.analytes.index(a) for a in obs["analyte"]]]
    log_value = np.log(obs["value"].to_numpy())
    left = obs["censored"].to_numpy() == "left"
    expected = np.where(
        left,
        scipy.stats.norm.logcdf(log_value, np.log(mu), sd),
        scipy.stats.norm.logpdf(log_value, np.log(mu), sd),
    )
    assert left.sum() == 5
    np.testing.assert_allclose(loglik, expected, rtol=1e-6)


def test_student_t_likelihood_has_heavier_tails(single, truth):
    fixed = {k: float(truth[k]) for k in MODEL.parameter_names}
    normal = build_model(MODEL, single, ModelOptions(fixed=fixed))
    student = build_model(MODEL, single, ModelOptions(fixed=fixed, likelihood="student_t", nu=3))
    point = {"sigma_log__": np.log([0.01, 0.01, 0.01])}
    ln = _evaluate(normal, normal.logp(vars=[normal["log_y"]], sum=False)[0], point)
    ls = _evaluate(student, student.logp(vars=[student["log_y"]], sum=False)[0], point)
    # With a tiny sigma, far-off points are penalised quadratically by the normal, not by Student-t.
    assert ls.min() > ln.min() + 10


def test_single_subject_parameters_use_library_priors(single):
    pm_model = build_model(MODEL, single)
    free = {rv.name for rv in pm_model.free_RVs}
    # The flip-flop pair and its gains are sampled as one vector (tests/inference/test_fold.py).
    assert free == set(MODEL.parameter_names) - set(MODEL.flip_flop.parameters) | {"flip_flop", "sigma"}
    assert pm_model["theta"].type.shape[1] in (None, len(MODEL.theta_names))
    # The prior of d_T is the library's LogNormal(2, 0.3).
    point = pm_model.initial_point()
    point["d_T_log__"] = np.log(2.5)
    # logp on the log scale includes the Jacobian: log pdf(x) + log x.
    expected = scipy.stats.lognorm(0.3, scale=2.0).logpdf(2.5) + np.log(2.5)
    assert _evaluate(pm_model, pm_model.logp(vars=[pm_model["d_T"]]), point) == pytest.approx(
        expected, rel=1e-9
    )


def test_cohort_structure_random_group_and_covariate_effects(cohort):
    options = ModelOptions(
        random_effects=("k_T", "r"),
        group_effects=("r",),
        covariates={"r": ("stress_score",)},
        fixed={"K_C": 500.0},
    )
    pm_model = build_model(MODEL, cohort, options)
    free = {rv.name for rv in pm_model.free_RVs}
    assert {"k_T_sd", "k_T_z", "r_mu", "r_sd", "r_z", "r_group", "r_beta"} <= free
    assert "k_T_mu" not in free  # a deterministic of the flip-flop fold (tests/inference/test_fold.py)
    assert "K_C" not in free and "k_T" not in free
    assert pm_model.named_vars_to_dims["r"] == ("subject",)
    assert list(pm_model.coords["group_effect"]) == ["chronic_stress"]
    assert list(pm_model.coords["subject"]) == ["S01", "S02", "S03", "S04", "S15"]

    point = pm_model.initial_point()
    point["r_mu"] = np.array(-1.0)
    point["r_group"] = np.array([0.8])
    point["r_beta"] = np.array([0.3])
    point["r_z"] = np.array([0.5, -0.5, 0.0, 1.0, -1.0])
    point["r_sd_log__"] = np.log(0.2)
    r, theta = _evaluate(pm_model, [pm_model["r"], pm_model["theta"]], point)
    score = cohort.subjects["stress_score"].to_numpy()
    z = (score - score.mean()) / score.std()
    group = (cohort.subjects["group"] == "chronic_stress").to_numpy()
    eta = -1.0 + 0.8 * group + 0.3 * z + 0.2 * point["r_z"]
    np.testing.assert_allclose(r, 1 / (1 + np.exp(-eta)), rtol=1e-12)
    np.testing.assert_allclose(theta[:, MODEL.theta_names.index("K_C")], 500.0)
    np.testing.assert_allclose(theta[:, MODEL.theta_names.index("dose")], 2.0)


def test_subset_of_observables_and_untidy_cohort(cohort):
    # S15 has no cortisol: the layout maps only what was measured.
    lay = layout(MODEL, cohort)
    s15 = cohort.observations["subject"] == "S15"
    assert set(cohort.observations.loc[s15, "analyte"]) == {"TNF", "IL6"}
    assert len(lay.obs_row) == len(cohort.observations)
    assert sum(len(t) for t in lay.times) == lay.obs_row.max() + 1

    tnf_only = load_dataset(
        cohort.observations[cohort.observations["analyte"] == "TNF"]
        .drop(columns=["censored"])
        .assign(unit="pg/mL")
    )
    pm_model = build_model(MODEL, tnf_only, ModelOptions(fixed={"K_C": 500.0}))
    assert list(pm_model.coords["analyte"]) == ["TNF"]


def test_bolus_event_shifts_prediction(single, truth):
    fixed = {k: float(truth[k]) for k in MODEL.parameter_names}
    events = pd.DataFrame(
        {"subject": ["S01"], "time": [6.0], "kind": ["bolus"], "target": ["L"], "value": [2.0]}
    )
    with_dose = load_dataset(SINGLE, events=events)
    # The second dose raises TNF after 6 h; the likelihood sees it only in later samples.
    expected = models.simulate(
        MODEL, fixed, {"dose": 2.0}, [0, 6, 8], events=[models.Event(6.0, "bolus", "L", 2.0)]
    )
    plain = models.simulate(MODEL, fixed, {"dose": 2.0}, [0, 6, 8])
    assert expected["T"].iloc[2] > 5 * plain["T"].iloc[2]
    tight = ModelOptions(fixed=fixed, solver=models.SolverSettings(rtol=1e-8, atol=1e-8))
    pm_model = build_model(MODEL, with_dose, tight)
    point = pm_model.initial_point()
    loglik = _evaluate(pm_model, pm_model.logp(vars=[pm_model["log_y"]], sum=False)[0], point)
    plain_model = build_model(MODEL, single, tight)
    plain_loglik = _evaluate(plain_model, plain_model.logp(vars=[plain_model["log_y"]], sum=False)[0], point)
    late = (single.observations["time"] > 6).to_numpy()
    # Up to the solver tolerance (the event ends an integration segment at 6 h).
    np.testing.assert_allclose(loglik[~late], plain_loglik[~late], atol=1e-5)
    times = single.observations["time"].to_numpy()
    soon_after = (times > 6) & (times <= 12)
    assert np.all(np.abs(loglik - plain_loglik)[soon_after] > 1.0)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (
            ModelOptions(fixed={"nope": 1.0}),
            r"fixed: model acute_inflammation has no parameter\(s\) \['nope'\]",
        ),
        (ModelOptions(random_effects=("k_X",)), r"random_effects: .* no parameter\(s\) \['k_X'\]"),
        (ModelOptions(fixed={"r": 1.5}), r"fixed: r=1.5 is outside \[0.0, 1.0\]"),
        (ModelOptions(fixed={"r": 0.0}, group_effects=("r",)), r"\['r'\] are fixed"),
        (
            ModelOptions(group_effects=("r",)),
            r"group_effects \['r'\] need a dataset with at least two groups",
        ),
        (ModelOptions(covariates={"r": ("stress",)}), r"covariates: r uses columns \['stress'\] absent"),
    ],
)
def test_bad_options_name_the_problem(single, options, message):
    with pytest.raises(ModelError, match=message):
        build_model(MODEL, single, options)


def test_unknown_analyte_is_a_data_error():
    frame = pd.DataFrame(
        {
            "subject": ["A", "A"],
            "time": [0.0, 1.0],
            "analyte": ["IL10", "IL10"],
            "value": [3.0, 40.0],
            "unit": ["pg/mL", "pg/mL"],
        }
    )
    dataset = load_dataset(frame, analytes={"IL10": "pg/mL"})
    with pytest.raises(DataError, match=r"analytes \['IL10'\] are not observables of model"):
        build_model(MODEL, dataset)


def test_options_round_trip_through_json():
    options = ModelOptions(
        priors={"r": models.Beta(1.5, 6.0), "k_T": models.LogNormal(900.0, 0.5)},
        fixed={"K_C": 400.0},
        random_effects=("k_T",),
        group_effects=("r",),
        covariates={"r": ("stress_score",)},
        likelihood="student_t",
        nu=4.0,
        solver=models.SolverSettings("stiff", 1e-7, 1e-8, 5000),
    )
    assert ModelOptions.from_json(options.to_json()) == options


def test_default_options(single, cohort):
    assert default_options(MODEL, single) == ModelOptions()
    cohort_defaults = default_options(MODEL, cohort)
    assert cohort_defaults.group_effects == ("r",)
    assert "r" in cohort_defaults.random_effects


def test_cohort_defaults_come_from_the_model_facts(cohort):
    receptor = models.get_model("gc_receptor")
    defaults = default_options(receptor, cohort)
    assert defaults.random_effects == ("k_T", "k_IT", "k_C", "C_b")
    assert defaults.group_effects == ()  # resistance is 1 - R, a state: no parameter to shift by group
    assert receptor.resistance.describe() == "1 - R"
    # A model with other facts gets other defaults, with nothing in inference/ to edit.
    declared = dataclasses.replace(MODEL, name="declared", cohort_random_effects=("d_T",),
                                   resistance=models.spec.Resistance(parameter="k_C"))
    assert default_options(declared, cohort) == ModelOptions(random_effects=("d_T",), group_effects=("k_C",))


@pytest.mark.parametrize(("facts", "match"), [
    ({"cohort_random_effects": ("k_X",)}, r"unknown parameters or states \['k_X'\]"),
    ({"resistance": models.spec.Resistance(one_minus_state="Q")}, r"unknown parameters or states \['Q'\]"),
])
def test_model_facts_must_name_the_model_parts(facts, match):
    with pytest.raises(ModelError, match=match):
        dataclasses.replace(MODEL, **facts)


@pytest.mark.parametrize("name", ["acute_inflammation", "gc_receptor"])
def test_fit_tolerance_error_is_a_hundredth_of_the_assay_error(name):
    """At the fit's default tolerances, the observables' error on the log scale over 24 h, at the
    prior median and 30 prior draws, stays below 1 % of the smallest assay sd prior scale."""
    model = models.get_model(name)
    rng = np.random.default_rng(5)
    theta = np.array([model.theta(model.defaults())] + [
        model.theta({p.name: float(p.prior.sample(rng)) for p in model.parameters}) for _ in range(30)])
    times = [np.array([0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0, 8.0, 12.0, 24.0])] * len(theta)
    observed = model.observable_states()
    tight = models.solve(model, theta, times, settings=models.SolverSettings("rodas5", 1e-11, 1e-11, 10**6))
    fit = models.solve(model, theta, times, settings=FIT_SOLVER)
    assert (tight.status == 0).all() and (fit.status == 0).all()
    error = np.abs(np.log(fit.states[:, observed]) - np.log(tight.states[:, observed])).max()
    assert error < 0.01 * min(SIGMA_PRIOR_SCALE.values())
