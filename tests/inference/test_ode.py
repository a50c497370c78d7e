"""The public ODE function inside hand-written PyMC models: values, gradients, batches, errors, posteriors."""

import doctest
import warnings

import arviz as az
import numpy as np
import pandas as pd
import pymc as pm
import pytensor
import pytensor.tensor as pt
import pytest

import inference.ode
from inference import solve_ode
from inference.build import ModelOptions, build_model
from inference.data import load_dataset
from inference.fit import fit
from models import Event, ModelError, SolverSettings, get_model, simulate

ACUTE = get_model("acute_inflammation")
DEFAULTS = ACUTE.defaults()
TIGHT = SolverSettings("explicit", rtol=1e-10, atol=1e-10, max_steps=10**6)
MODES = ("FAST_RUN", "NUMBA")
TIMES = np.array([0.0, 0.5, 1.0, 2.0, 3.0, 6.0])


def simulated(params, dose=2.0, events=(), columns=("T", "I", "C")):
    """Reference: ``models.simulate`` at the same tolerances."""
    frame = simulate(ACUTE, params, {"dose": dose}, TIMES, rtol=TIGHT.rtol, atol=TIGHT.atol,
                     max_steps=TIGHT.max_steps, events=events)
    return frame[list(columns)].to_numpy()


# ---- values -----------------------------------------------------------------------------------
def test_one_subject_equals_simulate():
    events = [Event(1.5, "bolus", "L", 0.5), Event(2.5, "set", "dose", 0.0)]
    k_T = pt.dscalar("k_T")
    observables = solve_ode(ACUTE, {**DEFAULTS, "k_T": k_T}, TIMES, inputs={"dose": 2.0},
                            events=events, settings=TIGHT)
    states = solve_ode(ACUTE, {**DEFAULTS, "k_T": k_T}, TIMES, inputs={"dose": 2.0}, events=events,
                       settings=TIGHT, outputs=["cortisol", "L", "M"])
    assert observables.type.shape == (TIMES.size, 3) and states.type.shape == (TIMES.size, 3)
    # One function holding both: Ops that differ only in their outputs must not be merged.
    got, got_states = pytensor.function([k_T], [observables, states])(2500.0)
    params = {**DEFAULTS, "k_T": 2500.0}
    np.testing.assert_allclose(got, simulated(params, events=events), rtol=1e-12)
    np.testing.assert_allclose(got_states, simulated(params, events=events, columns=("C", "L", "M")),
                               rtol=1e-12)


def test_parameter_vector_and_default_inputs_equal_the_mapping():
    vector = pt.dvector("theta")
    from_vector = solve_ode(ACUTE, vector, TIMES, settings=TIGHT)  # dose at its default
    values = np.array([DEFAULTS[n] for n in ACUTE.parameter_names]) * 1.1
    got = from_vector.eval({vector: values})
    expected = simulated(dict(zip(ACUTE.parameter_names, values, strict=True)),
                         dose=ACUTE.inputs[0].default)
    np.testing.assert_allclose(got, expected, rtol=1e-12)


def test_batch_shapes_and_values():
    k_T, dose = pt.dvector("k_T"), pt.dvector("dose")
    shared = solve_ode(ACUTE, {**DEFAULTS, "k_T": k_T}, TIMES, inputs={"dose": dose},
                       events=[Event(1.0, "bolus", "L", 0.5)], settings=TIGHT)
    per_subject = [[], [Event(2.0, "bolus", "L", 1.0)], [Event(0.5, "set", "dose", 4.0)]]
    own = solve_ode(ACUTE, {**DEFAULTS, "k_T": k_T}, TIMES, inputs={"dose": dose}, events=per_subject,
                    settings=TIGHT, outputs=["T"])
    assert shared.type.ndim == 3 and shared.type.shape[1:] == (TIMES.size, 3)
    k_T_values, doses = np.array([1500.0, 1800.0, 2500.0]), np.array([1.0, 2.0, 3.0])
    got_shared, got_own = pytensor.function([k_T, dose], [shared, own])(k_T_values, doses)
    assert got_shared.shape == (3, TIMES.size, 3) and got_own.shape == (3, TIMES.size, 1)
    for s in range(3):
        params = {**DEFAULTS, "k_T": k_T_values[s]}
        np.testing.assert_allclose(
            got_shared[s], simulated(params, doses[s], [Event(1.0, "bolus", "L", 0.5)]), rtol=1e-12
        )
        np.testing.assert_allclose(got_own[s], simulated(params, doses[s], per_subject[s], ("T",)),
                                   rtol=1e-12)


def test_batch_from_a_parameter_matrix():
    matrix = pt.dmatrix("theta")
    result = solve_ode(ACUTE, matrix, TIMES, inputs={"dose": 2.0}, settings=TIGHT)
    values = np.array([[DEFAULTS[n] * f for n in ACUTE.parameter_names] for f in (0.8, 1.0, 1.2, 1.4)])
    got = result.eval({matrix: values})
    assert got.shape == (4, TIMES.size, 3)
    np.testing.assert_allclose(
        got[2], simulated(dict(zip(ACUTE.parameter_names, values[2], strict=True))), rtol=1e-12
    )


def test_docstring_example():
    finder = doctest.DocTestFinder()
    runner = doctest.DocTestRunner()
    for test in finder.find(inference.ode.solve_ode, "solve_ode", globs={}):
        runner.run(test)
    assert runner.summarize(verbose=False) == doctest.TestResults(failed=0, attempted=8)


# ---- gradient against central finite differences -----------------------------------------------
@pytest.mark.parametrize("mode", MODES)
def test_gradient_matches_central_differences(mode):
    """d/d(log theta) of a weighted sum of log observables of a two-subject batch."""
    log_theta = pt.dmatrix("log_theta")  # subjects x (parameters, dose)
    n_p = len(ACUTE.parameters)
    theta = pt.exp(log_theta)
    result = solve_ode(ACUTE, theta[:, :n_p], TIMES[1:], inputs={"dose": theta[:, n_p]},
                       events=[Event(2.0, "bolus", "L", 0.5)], settings=TIGHT)
    weights = np.linspace(0.5, 2.0, result.type.shape[1] * 3).reshape(-1, 3)
    value = (pt.log(result) * weights).sum()
    f = pytensor.function([log_theta], [value, pytensor.grad(value, log_theta)], mode=mode)
    point = np.log([[*ACUTE.theta(DEFAULTS)[:n_p], 2.0], [*ACUTE.theta(DEFAULTS)[:n_p] * 1.3, 1.0]])
    _, grad = f(point)

    def central(h):
        out = np.empty_like(point)
        for index in np.ndindex(point.shape):
            step = np.zeros_like(point)
            step[index] = h
            out[index] = (f(point + step)[0] - f(point - step)[0]) / (2 * h)
        return out

    coarse, fine = central(1e-3), central(1e-4)
    # The two step sizes agree with each other (truncation error ~h^2), and with the gradient.
    np.testing.assert_allclose(fine, coarse, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(grad, fine, rtol=1e-5, atol=1e-7)
    assert np.abs(grad).max() > 1.0  # the check is not vacuous


def test_numba_backend_needs_no_object_mode():
    nutpie = pytest.importorskip("nutpie")
    with pm.Model() as model:
        k_T = pm.LogNormal("k_T", np.log(1800.0), 0.5)
        dose = pm.LogNormal("dose", np.log(2.0), 0.1, shape=2)
        tnf = solve_ode(ACUTE, {**DEFAULTS, "k_T": k_T}, TIMES, inputs={"dose": dose}, outputs=["TNF"])
        pm.Normal("y", pt.log(tnf[:, 1:, 0]), 0.1, observed=np.full((2, TIMES.size - 1), 4.0))
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        compiled = nutpie.compile_pymc_model(model, backend="numba")
    trace = nutpie.sample(compiled, draws=20, tune=20, chains=1, seed=1, progress_bar=False)
    assert np.all(np.isfinite(trace.sample_stats["logp"]))


# ---- errors -----------------------------------------------------------------------------------
def _call(**changes):
    arguments = {"params": DEFAULTS, "times": TIMES, **changes}
    return solve_ode(ACUTE, **arguments)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"params": {**DEFAULTS, "k_X": 1.0}}, r"params: unknown names \['k_X'\]; model acute_inflammation"),
        ({"params": {"k_T": 1.0}}, r"params: missing parameters \['k_L', 'd_M', 'd_T'"),
        ({"params": {**DEFAULTS, "k_T": np.ones((2, 2))}}, r"params\['k_T'\] must be a scalar or a vector"),
        ({"params": np.ones(3)}, r"params: expected a mapping by name, a vector of 14 values \(k_L,"),
        ({"params": np.ones((2, 3, 14))}, r"params: expected .* got shape \(2, 3, 14\)"),
        ({"inputs": {"dos": 1.0}}, r"inputs: unknown names \['dos'\]; model acute_inflammation has "
                                   r"inputs \['dose'\]"),
        ({"params": {**DEFAULTS, "k_T": np.ones(2)}, "inputs": {"dose": np.ones(3)}},
         r"params and inputs: vectors over subjects have different lengths \[2, 3\]"),
        ({"times": [1.0, 0.5]}, r"times: sample times must be finite, >= 0 and sorted, got \[1.0, 0.5\]"),
        ({"times": [-1.0, 0.5]}, r"times: sample times must be finite, >= 0 and sorted"),
        ({"times": [0.0, np.nan]}, r"times: sample times must be finite"),
        ({"times": np.ones((2, 2))},
         r"times: expected a non-empty vector of sample times, got shape \(2, 2\)"),
        ({"times": []}, r"times: expected a non-empty vector"),
        ({"times": pt.dvector()}, r"times: expected numbers \(a numpy array\), not a PyTensor variable"),
        ({"outputs": ["TNF", "IL10"]}, r"outputs: model acute_inflammation has no observable or state "
                                       r"\['IL10'\]; observables: \['TNF', 'IL6', 'cortisol'\], states:"),
        ({"outputs": "TNF"}, r"outputs: expected a non-empty list of names, got 'TNF'"),
        ({"outputs": []}, r"outputs: expected a non-empty list of names"),
        ({"events": [[Event(1.0, "bolus", "L", 1.0)]]},
         r"events: one list per subject needs a batch \(parameters given per subject\)"),
        ({"params": {**DEFAULTS, "k_T": np.ones(2)}, "events": [[], [], []]},
         r"events: 3 lists for 2 subjects"),
        ({"events": [(1.0, "bolus", "L", 1.0)]}, r"events: expected models.Event objects"),
        ({"events": [Event(1.0, "bolus", "dose", 1.0)]},
         r"events: subject 0: event .* a 'bolus' targets a state"),
        ({"events": [Event(-1.0, "bolus", "L", 1.0)]},
         r"events: subject 0: event .* needs a finite time >= 0"),
    ],
)
def test_bad_arguments_are_named(changes, message):
    with pytest.raises(ModelError, match=message):
        _call(**changes)



# ---- a hand-written PyMC model against the cohort builder ---------------------------------------
FREE = ("k_T", "k_IT", "r")
TRUTH = {**DEFAULTS, "k_T": 2500.0, "k_IT": 5.0, "r": 0.4}
SAMPLE_TIMES = np.array([0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0, 8.0])
ANALYTES = {"TNF": ("T", "pg/mL"), "IL6": ("I", "pg/mL"), "cortisol": ("C", "nmol/L")}


@pytest.fixture(scope="module")
def dataset(seed):
    """One subject, log-normal noise (sd 0.1) on TNF, IL-6 and cortisol, no assay limits."""
    rng = np.random.default_rng(seed)
    clean = simulate(ACUTE, TRUTH, {"dose": 2.0}, SAMPLE_TIMES, rtol=1e-10, atol=1e-10)
    rows = [
        {"subject": "S01", "time": t, "analyte": a, "unit": unit, "dose": 2.0,
         "value": float(clean.loc[i, state] * np.exp(0.1 * rng.standard_normal()))}
        for i, t in enumerate(SAMPLE_TIMES) for a, (state, unit) in ANALYTES.items()
    ]
    return load_dataset(pd.DataFrame(rows))


def builder_options():
    return ModelOptions(fixed={n: v for n, v in DEFAULTS.items() if n not in FREE},
                        solver=SolverSettings("explicit", rtol=1e-8, atol=1e-8))


def hand_written(dataset):
    """The same priors and likelihood as the builder's, written as a user would."""
    obs = dataset.observations
    row = np.searchsorted(SAMPLE_TIMES, obs["time"].to_numpy())
    column = obs["analyte"].map(list(ANALYTES).index).to_numpy()
    with pm.Model(coords={"analyte": list(ANALYTES)}) as model:
        free = {n: pm.LogNormal(n, np.log(ACUTE.parameter(n).prior.median), ACUTE.parameter(n).prior.sigma)
                for n in ("k_T", "k_IT")}
        free["r"] = pm.Beta("r", ACUTE.parameter("r").prior.alpha, ACUTE.parameter("r").prior.beta)
        predicted = solve_ode(ACUTE, {**DEFAULTS, **free}, SAMPLE_TIMES, inputs={"dose": 2.0},
                              settings=builder_options().solver)
        sigma = pm.HalfNormal("sigma", sigma=[0.3, 0.3, 0.15], dims="analyte")
        pm.Normal("log_y", mu=pt.log(predicted[row, column]), sigma=sigma[column],
                  observed=np.log(obs["value"].to_numpy()))
    return model


def test_hand_written_log_density_equals_the_builders(dataset, rng):
    hand, built = hand_written(dataset), build_model(ACUTE, dataset, builder_options())
    assert {v.name for v in hand.value_vars} == {v.name for v in built.value_vars}
    logp_hand, logp_built = hand.compile_logp(), built.compile_logp()
    point = hand.initial_point()
    for _ in range(3):
        point = {k: v + 0.3 * rng.standard_normal(np.shape(v)) for k, v in point.items()}
        assert logp_hand(point) == pytest.approx(logp_built(point), rel=1e-10)


@pytest.mark.slow
def test_hand_written_posterior_agrees_with_the_builders(dataset):
    """Builder + nutpie against the hand-written model + ``pm.sample`` (C backend) and nutpie."""
    nutpie = pytest.importorskip("nutpie")
    settings = {"draws": 500, "tune": 500, "chains": 2}
    built = fit(ACUTE, dataset, builder_options(), seed=3, progress=False, **settings)
    model = hand_written(dataset)
    # nutpie first: nutpie 0.16.8 cannot compile a model that sample_posterior_predictive has used.
    by_nutpie = nutpie.sample(nutpie.compile_pymc_model(model, backend="numba"), **settings, seed=5,
                              progress_bar=False)
    with model:
        by_pymc = pm.sample(**settings, cores=1, random_seed=4, progressbar=False,
                            compute_convergence_checks=False)
        predictive = pm.sample_posterior_predictive(by_pymc, random_seed=5, progressbar=False)
    names = [*FREE, "sigma"]
    reference = az.summary(built, var_names=names)
    for idata in (by_pymc, by_nutpie):
        other = az.summary(idata, var_names=names)
        # Means and sds agree within Monte Carlo error (4 combined standard errors).
        for stat in ("mean", "sd"):
            mcse = np.hypot(reference[f"mcse_{stat}"], other[f"mcse_{stat}"])
            difference = (reference[stat] - other[stat]).abs()
            assert (difference <= 4 * mcse).all(), pd.DataFrame({"diff": difference, "4 mcse": 4 * mcse})
    assert np.log(TRUTH["k_T"]) == pytest.approx(np.log(reference.loc["k_T", "mean"]), abs=0.2)
    # Posterior predictive draws of the hand-written model scatter around the data.
    draws = predictive.posterior_predictive["log_y"]
    assert draws.shape == (2, 500, len(dataset.observations))
    z = (np.log(dataset.observations["value"].to_numpy()) - draws.mean(("chain", "draw"))) / draws.std(
        ("chain", "draw"))
    assert float(np.abs(z).max()) < 3.5
