"""Posterior and prior predictive: solver values, measurement noise and assay limits applied consistently."""

from dataclasses import asdict

import arviz as az
import numpy as np
import pytest
import xarray as xr
from report_fits import MODEL, SINGLE, SINGLE_FREE, _fixed, single_fit

import models
from inference.build import ModelOptions
from inference.data import load_dataset
from inference.predictive import (
    CENSORED_CODES,
    DEFAULT_POINTS,
    posterior_predictive,
    predict,
    prior_predictive,
    sample_prior,
)
from inference.record import read_record

DRAWS = 300


@pytest.fixture(scope="module")
def good():
    return single_fit()


@pytest.fixture(scope="module")
def dataset(good):
    return read_record(good).dataset


@pytest.fixture(scope="module")
def predictive(good):
    return posterior_predictive(good, draws=DRAWS, seed=3)


def _rows(dataset, analyte, censored=None):
    obs = dataset.observations
    select = obs["analyte"] == analyte
    if censored is not None:
        select &= obs["censored"] == censored
    return np.flatnonzero(select.to_numpy())


def _sigma(good, predictive, analyte):
    """Posterior sigma of ``analyte`` for each predictive sample, from its (chain, draw) coords."""
    obs = predictive.observed
    return good.posterior["sigma"].sel(analyte=analyte).values[obs["chain"].values, obs["draw"].values]


def test_shapes_and_dense_grids(predictive, dataset):
    obs, curves = predictive.observed, predictive.curves
    assert predictive.group == "posterior" and predictive.n_samples == DRAWS and predictive.failures == 0
    assert obs["measurement"].dims == ("sample", "obs")
    assert obs.sizes == {"sample": DRAWS, "obs": len(dataset.observations)}
    assert curves["measurement"].dims == ("sample", "subject", "analyte", "point")
    assert curves.sizes["point"] == DEFAULT_POINTS == 200
    assert list(curves["analyte"].values) == ["TNF", "IL6", "cortisol"]
    time = curves["time"].sel(subject="S01").values
    assert time[0] == 0 and time[-1] == dataset.observations["time"].max() and np.all(np.diff(time) > 0)
    # Draws are distinct (chain, draw) pairs of the posterior.
    pairs = set(zip(obs["chain"].values, obs["draw"].values, strict=True))
    assert len(pairs) == DRAWS


def test_same_seed_same_draws(good, predictive):
    again = posterior_predictive(good, draws=DRAWS, seed=3)
    xr.testing.assert_identical(again.observed, predictive.observed)
    xr.testing.assert_identical(again.curves, predictive.curves)
    other = posterior_predictive(good, draws=DRAWS, seed=4)
    assert not np.array_equal(other.observed["measurement"].values, predictive.observed["measurement"].values)


def test_concentrations_are_the_model_solution(good, predictive, dataset):
    """Independent reference: models.simulate at the sample's own posterior parameters."""
    obs = predictive.observed
    solver = read_record(good).options.solver  # the fit's solver settings
    for k in (0, DRAWS - 1):
        chain, draw = int(obs["chain"][k]), int(obs["draw"][k])
        theta = good.posterior["theta"].sel(chain=chain, draw=draw, subject="S01").values
        params = dict(zip(MODEL.parameter_names, theta[: len(MODEL.parameters)], strict=True))
        times = np.unique(dataset.observations["time"])
        states = models.simulate(MODEL, params, {"dose": theta[-1]}, times, **asdict(solver))
        states = states.set_index("time")
        for analyte, state in (("TNF", "T"), ("IL6", "I"), ("cortisol", "C")):
            rows = _rows(dataset, analyte)
            expected = states.loc[dataset.observations["time"].to_numpy()[rows], state].to_numpy()
            np.testing.assert_allclose(obs["concentration"].values[k, rows], expected, rtol=1e-9)
    # The dense grid starts at 0 h, a sampled time: the two solves agree there.
    first = _rows(dataset, "cortisol")[0]
    np.testing.assert_allclose(predictive.curves["concentration"].sel(subject="S01", analyte="cortisol")
                               .isel(point=0).values, obs["concentration"].values[:, first], rtol=1e-12)


def test_noise_is_the_fitted_measurement_model(good, predictive, dataset):
    """Cortisol has no assay limit: log(measurement / concentration) / sigma is standard normal."""
    rows = _rows(dataset, "cortisol")
    obs = predictive.observed
    sigma = _sigma(good, predictive, "cortisol")
    z = np.log(obs["measurement"].values[:, rows] / obs["concentration"].values[:, rows]) / sigma[:, None]
    assert np.all(obs["censored"].values[:, rows] == 0)
    assert abs(z.mean()) < 4 / np.sqrt(z.size)
    assert z.std() == pytest.approx(1.0, abs=0.05)


def test_assay_limits_are_applied_as_censoring(predictive, dataset):
    obs = dataset.observations
    meas = predictive.observed["measurement"].values
    code = predictive.observed["censored"].values
    lloq = obs["lloq"].to_numpy(float)
    has_limit = np.isfinite(lloq)
    assert np.all(meas[:, has_limit] >= lloq[has_limit])
    left = code == CENSORED_CODES["left"]
    assert left.any()
    np.testing.assert_array_equal(meas[left], np.broadcast_to(lloq, meas.shape)[left])
    assert not np.any(code[:, ~has_limit])
    # TNF at 0 h sits at its baseline (T_b = 1.5 pg/mL, below the LLOQ of 2): nearly always censored.
    baseline = _rows(dataset, "TNF")[0]
    assert (code[:, baseline] == CENSORED_CODES["left"]).mean() > 0.9
    # The dense bands stop at the LLOQ too.
    dense = predictive.curves["measurement"].sel(subject="S01", analyte="TNF").values
    assert dense.min() == 2.0


def test_agrees_with_pymc_posterior_predictive(good, predictive, dataset):
    """The fit's own (PyMC) posterior predictive of log_y: same distribution where both censor alike.

    PyMC censors only rows that were censored in the data (its bounds come from the likelihood), so the
    comparison covers those rows and the cortisol rows, which have no limit.
    """
    ours = np.log(predictive.observed["measurement"].values)
    pymc = good.posterior_predictive["log_y"].stack(sample=("chain", "draw")).transpose("sample", "obs")
    pymc = pymc.values
    for row in _rows(dataset, "cortisol"):
        se = pymc[:, row].std() * np.sqrt(1 / ours.shape[0] + 1 / pymc.shape[0])
        assert abs(ours[:, row].mean() - pymc[:, row].mean()) < 4 * se
        assert ours[:, row].std() == pytest.approx(pymc[:, row].std(), rel=0.2)
    for row in np.flatnonzero((dataset.observations["censored"] == "left").to_numpy()):
        limit = np.log(dataset.observations["value"].iloc[row])
        at_limit = np.mean(pymc[:, row] <= limit + 1e-12)
        assert np.mean(ours[:, row] <= limit) == pytest.approx(at_limit, abs=0.08)


def test_quantiles_and_coverage(predictive, dataset):
    q = predictive.quantiles()
    assert list(q["quantile"].values) == [0.05, 0.25, 0.5, 0.75, 0.95]
    assert np.all(np.diff(q.values, axis=0) >= 0)
    q_obs = predictive.quantiles((0.5,), variable="concentration", where="observed")
    assert q_obs.sizes["obs"] == len(dataset.observations)
    coverage = predictive.coverage(dataset)
    assert set(coverage) == {0.5, 0.9}
    assert 0.2 <= coverage[0.5] <= 0.8 and coverage[0.9] >= 0.7
    with pytest.raises(ValueError, match="where"):
        predictive.quantiles(where="nowhere")
    with pytest.raises(ValueError, match="variable"):
        predictive.quantiles(variable="density")


@pytest.mark.parametrize(("likelihood", "sd_factor"), [("lognormal", 1.0), ("student_t", np.sqrt(3.0))])
def test_predict_follows_the_likelihood_of_the_options(likelihood, sd_factor):
    dataset = load_dataset(SINGLE)
    options = ModelOptions(likelihood=likelihood, nu=3.0)
    theta = MODEL.theta(MODEL.defaults(), {"dose": 2.0})
    draws = 4000
    theta = xr.DataArray(np.broadcast_to(theta, (1, draws, 1, theta.size)),
                         dims=("chain", "draw", "subject", "theta_name"),
                         coords={"chain": [0], "draw": np.arange(draws), "subject": ["S01"]})
    sigma = xr.DataArray(np.full((1, draws, 3), 0.1), dims=("chain", "draw", "analyte"),
                         coords={"chain": [0], "draw": np.arange(draws),
                                 "analyte": ["TNF", "IL6", "cortisol"]})
    result = predict(MODEL, dataset, options, theta, sigma, draws=None, points=20, seed=0)
    rows = _rows(dataset, "cortisol")
    observed = result.observed.isel(obs=rows)
    residual = np.log(observed["measurement"].values / observed["concentration"].values)
    # Student-t with nu = 3 has sd sigma * sqrt(nu / (nu - 2)); its tails are much heavier.
    assert residual.std() == pytest.approx(0.1 * sd_factor, rel=0.12)
    tail = np.mean(np.abs(residual) > 0.4)
    assert (tail > 0.01) if likelihood == "student_t" else (tail < 1e-3)
    assert result.curves.sizes["point"] == 20
    with pytest.raises(ValueError, match="points"):
        predict(MODEL, dataset, options, theta, sigma, points=1)


@pytest.fixture(scope="module")
def prior_options():
    return ModelOptions(fixed=_fixed(SINGLE_FREE))


def test_prior_predictive_comes_from_the_same_builder(dataset, prior_options, predictive):
    prior = sample_prior(MODEL, dataset, prior_options, draws=100, seed=1)
    assert {"prior", "prior_predictive", "observed_data"} <= set(prior.groups())
    theta = prior.prior["theta"].sel(subject="S01")
    for name, value in prior_options.fixed.items():
        np.testing.assert_array_equal(theta.sel(theta_name=name).values, value)
    assert theta.sel(theta_name="k_T").std() > 0

    result = prior_predictive(MODEL, dataset, prior_options, draws=150, seed=1)
    assert result.group == "prior" and result.n_samples == 150
    assert result.observed["measurement"].dims == ("sample", "obs")
    again = prior_predictive(MODEL, dataset, prior_options, draws=150, seed=1)
    xr.testing.assert_identical(again.curves, result.curves)

    # Before seeing data the TNF peak is far less certain than after.
    def width(p):
        q = p.quantiles((0.05, 0.95), where="observed").values
        peak = int(np.argmax(dataset.observations["value"].where(dataset.observations["analyte"] == "TNF")))
        return np.log(q[1, peak] / q[0, peak])
    assert width(result) > 2 * width(predictive)


def test_posterior_predictive_needs_a_fit_result():
    idata = az.from_dict(posterior={"a": np.zeros((1, 5))})
    with pytest.raises(ValueError, match="no posterior.theta"):
        posterior_predictive(idata)
