"""Marginal likelihoods against exact values: conjugate models and a linear-Gaussian ODE model."""

import math

import numpy as np
import pandas as pd
import pymc as pm
import pytest
import scipy.integrate
import scipy.stats
import xarray as xr
from scipy.special import gammaln

from inference.build import ModelOptions, build_model
from inference.data import load_dataset
from inference.evidence import (
    LogDensity,
    bridge_sampling,
    savage_dickey,
    savage_dickey_undefined,
    smc_evidence,
)
from models import (
    Beta,
    Gamma,
    HalfNormal,
    LogNormal,
    ModelError,
    Normal,
    Observable,
    OdeModel,
    Parameter,
    SolverSettings,
    State,
    TruncatedNormal,
)


def _posterior(**arrays):
    """A posterior group from arrays shaped (chain, draw, ...)."""
    return xr.Dataset({name: (("chain", "draw", *[f"{name}_dim_{i}" for i in range(a.ndim - 2)]), a)
                       for name, a in arrays.items()})


# ---- a conjugate linear-Gaussian model, sampled by NUTS ----------------------------------------
@pytest.fixture(scope="module")
def regression(seed):
    """y = X b + e, b ~ N(0, 2^2 I), e ~ N(0, 0.5^2): p(y) = N(y | 0, 0.25 I + 4 X X')."""
    rng = np.random.default_rng(seed)
    n = 20
    X = np.column_stack([np.ones(n), np.linspace(-1, 1, n)])
    y = X @ np.array([0.5, -1.0]) + 0.5 * rng.standard_normal(n)
    exact = scipy.stats.multivariate_normal(np.zeros(n), 0.25 * np.eye(n) + 4.0 * X @ X.T).logpdf(y)
    with pm.Model() as model:
        b = pm.Normal("b", 0.0, 2.0, shape=2)
        pm.Normal("y", X @ b, 0.5, observed=y)
    with model:
        idata = pm.sample(draws=1000, tune=500, chains=2, cores=1, random_seed=seed, progressbar=False,
                          compute_convergence_checks=False)
    return model, idata, exact


def test_bridge_sampling_on_nuts_draws_matches_the_exact_evidence(regression):
    model, idata, exact = regression
    density = LogDensity(model)
    evidence = bridge_sampling(density, density.unconstrained(idata.posterior), seed=1)
    assert evidence.method == "bridge" and evidence.converged
    assert evidence.n_draws == 1000  # the second half of 2 chains x 1000 draws
    assert 0 < evidence.se < 0.02
    assert abs(evidence.log_ml - exact) < 3 * evidence.se


def test_smc_matches_the_exact_evidence_within_its_run_to_run_error(regression, seed):
    model, _, exact = regression
    evidence = smc_evidence(model, draws=1000, runs=4, seed=seed)
    assert evidence.method == "smc" and evidence.iterations == 4
    assert 0 < evidence.se < 0.2
    assert abs(evidence.log_ml - exact) < 3 * evidence.se + 0.02


def test_smc_needs_two_runs(regression):
    with pytest.raises(ModelError, match="at least 2 runs"):
        smc_evidence(regression[0], runs=1)


# ---- a transformed parameter: the Jacobian, and the calibration of the stated error -----------
def test_bridge_error_is_calibrated_on_a_positive_parameter():
    """y_i ~ N(0, v), v ~ InverseGamma(3, 2): p(y) is a multivariate t; draws from the exact posterior."""
    rng = np.random.default_rng(7)
    a, b, n = 3.0, 2.0, 15
    y = 0.8 * rng.standard_normal(n)
    ss = float(np.sum(y**2)) / 2
    exact = a * math.log(b) + gammaln(a + n / 2) - gammaln(a) - n / 2 * math.log(2 * math.pi) \
        - (a + n / 2) * math.log(b + ss)
    with pm.Model() as model:
        v = pm.InverseGamma("v", a, b)
        pm.Normal("y", 0.0, pm.math.sqrt(v), observed=y)
    density = LogDensity(model)
    z = []
    for run in range(20):
        draws = scipy.stats.invgamma(a + n / 2, scale=b + ss).rvs(size=(2, 200), random_state=run)
        evidence = bridge_sampling(density, density.unconstrained(_posterior(v=draws)), seed=run)
        z.append((evidence.log_ml - exact) / evidence.se)
    z = np.array(z)
    assert np.mean(np.abs(z) < 2) >= 0.8  # 95 % expected
    assert 0.5 < np.std(z) < 1.6


def test_bridge_sampling_needs_more_draws_than_dimensions(regression):
    density = LogDensity(regression[0])
    with pytest.raises(ModelError, match="more than 3 draws in each half"):
        bridge_sampling(density, np.zeros((1, 4, 2)))


# ---- a linear-Gaussian ODE observation model through build_model -----------------------------
def _decay_rhs(s, p, u, m):
    return {"X": -p.k * s.X}


def _decay_initial(p, u, m):
    return {"X": p.x0}


# log X(t) = log x0 - k t is linear in (log x0, k): with a log-normal x0, a normal k and a
# log-normal measurement, log y is linear-Gaussian given sigma.
DECAY = OdeModel(
    name="linear_decay_evidence_test",
    title="first-order decay (test model)",
    equations="dX/dt = -k X, X(0) = x0",
    states=(State("X", "pg/mL", "tracer"),),
    parameters=(Parameter("x0", "pg/mL", "initial amount", LogNormal(100.0, 0.5)),
                Parameter("k", "1/h", "decay rate", Normal(0.5, 0.2), lower=-math.inf)),
    inputs=(),
    observables=(Observable("TNF", "X", "pg/mL"),),
    rhs=_decay_rhs,
    initial=_decay_initial,
)
SIGMA_SCALE = 0.3  # build.py's HalfNormal prior scale for TNF


@pytest.fixture(scope="module")
def decay():
    rng = np.random.default_rng(11)
    t = np.array([0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0, 8.0])
    log_y = math.log(80.0) - 0.4 * t + 0.2 * rng.standard_normal(t.size)
    frame = pd.DataFrame({"subject": "S01", "time": t, "analyte": "TNF", "value": np.exp(log_y),
                          "unit": "pg/mL"})
    dataset = load_dataset(frame)
    options = ModelOptions(solver=SolverSettings(rtol=1e-10, atol=1e-10))
    model = build_model(DECAY, dataset, options)
    X = np.column_stack([np.ones(t.size), -t])
    mean = np.array([math.log(100.0), 0.5])
    cov = np.diag([0.5**2, 0.2**2])

    def log_marginal_given_sigma(sigma):
        covariance = sigma**2 * np.eye(t.size) + X @ cov @ X.T
        return scipy.stats.multivariate_normal(X @ mean, covariance).logpdf(log_y)

    def log_joint_sigma(sigma):
        return scipy.stats.halfnorm(scale=SIGMA_SCALE).logpdf(sigma) + log_marginal_given_sigma(sigma)

    shift = max(log_joint_sigma(s) for s in np.linspace(0.01, 1.5, 300))
    integral, _ = scipy.integrate.quad(lambda s: math.exp(log_joint_sigma(s) - shift), 0, np.inf,
                                       epsabs=0, epsrel=1e-10, limit=200)
    exact = shift + math.log(integral)
    # Exact posterior draws: sigma from its marginal (inverse CDF on a fine grid), then the
    # coefficients from their normal conditional.
    grid = np.linspace(1e-4, 1.5, 20001)
    density = np.exp([log_joint_sigma(s) - shift for s in grid])
    cdf = np.concatenate([[0.0], np.cumsum((density[1:] + density[:-1]) / 2 * np.diff(grid))])
    cdf /= cdf[-1]
    draw_rng = np.random.default_rng(12)
    sigma = np.interp(draw_rng.random(2 * 1000), cdf, grid)
    coef = np.empty((sigma.size, 2))
    for i, s in enumerate(sigma):
        precision = np.linalg.inv(cov) + X.T @ X / s**2
        post_cov = np.linalg.inv(precision)
        post_mean = post_cov @ (np.linalg.solve(cov, mean) + X.T @ log_y / s**2)
        coef[i] = draw_rng.multivariate_normal(post_mean, post_cov)
    posterior = xr.Dataset({
        "x0": (("chain", "draw"), np.exp(coef[:, 0]).reshape(2, 1000)),
        "k": (("chain", "draw"), coef[:, 1].reshape(2, 1000)),
        "sigma": (("chain", "draw", "analyte"), sigma.reshape(2, 1000, 1)),
    }, coords={"analyte": ["TNF"]})
    return model, posterior, exact


def test_bridge_sampling_matches_the_exact_evidence_of_a_linear_gaussian_ode_model(decay):
    model, posterior, exact = decay
    density = LogDensity(model)
    assert density.names == ["x0_log__", "k", "sigma_log__"]
    evidence = bridge_sampling(density, density.unconstrained(posterior), seed=3)
    assert 0 < evidence.se < 0.02
    assert abs(evidence.log_ml - exact) < 3 * evidence.se + 1e-3  # + ODE solver tolerance


# ---- Savage-Dickey ------------------------------------------------------------------------------
def test_savage_dickey_matches_the_exact_bayes_factor_at_an_interior_point(seed):
    """y ~ N(mu, 1), mu ~ N(0, 1); null mu = 0.3: BF01 = N(0.3 | post) / N(0.3 | prior)."""
    rng = np.random.default_rng(seed)
    y = 0.6 + rng.standard_normal(8)
    with pm.Model() as model:
        mu = pm.Normal("mu", 0.0, 1.0)
        pm.Normal("y", mu, 1.0, observed=y)
    post_var = 1 / (1 + y.size)
    post_mean = post_var * y.sum()
    exact = scipy.stats.norm(post_mean, math.sqrt(post_var)).logpdf(0.3) - scipy.stats.norm(0, 1).logpdf(0.3)
    draws = np.random.default_rng(1).normal(post_mean, math.sqrt(post_var), size=(2, 1000))
    result = savage_dickey(LogDensity(model), _posterior(mu=draws), "mu", 0.3, Normal(0.0, 1.0))
    assert result.pareto_k < 0.7
    assert 0 < result.se < 0.05
    assert abs(result.log_bf01 - exact) < 3 * result.se


def test_savage_dickey_agrees_with_quadrature_inside_a_beta_prior():
    """y ~ N(r, 0.5), r ~ Beta(2, 5); null r = 0.1: BF01 = p(y | r = 0.1) / p(y), p(y) by quadrature."""
    rng = np.random.default_rng(5)
    y = 0.1 + 0.5 * rng.standard_normal(10)
    with pm.Model() as model:
        r = pm.Beta("r", 2.0, 5.0)
        pm.Normal("y", r, 0.5, observed=y)

    def likelihood(value):
        return scipy.stats.norm(value, 0.5).logpdf(y).sum()

    evidence, _ = scipy.integrate.quad(lambda v: math.exp(likelihood(v)) * scipy.stats.beta(2, 5).pdf(v),
                                       0, 1, epsabs=0, epsrel=1e-12)
    exact = likelihood(0.1) - math.log(evidence)
    with model:
        idata = pm.sample(draws=1000, tune=500, chains=2, cores=1, random_seed=3, progressbar=False,
                          compute_convergence_checks=False)
    density = LogDensity(model)
    result = savage_dickey(density, idata.posterior, "r", 0.1, Beta(2.0, 5.0))
    assert result.pareto_k < 0.7
    assert 0 < result.se < 0.05
    assert abs(result.log_bf01 - exact) < 3 * result.se
    # Bridge sampling of the free model agrees: log p(y | r = 0.1) - log p(y).
    bridge = bridge_sampling(density, density.unconstrained(idata.posterior), seed=2)
    assert abs((likelihood(0.1) - bridge.log_ml) - exact) < 3 * bridge.se
    # At r = 0 the Beta(2, 5) density vanishes on the boundary: the ratio is refused, with the reason.
    with pytest.raises(ModelError, match=r"Savage-Dickey ratio not computed: r = 0 lies on the boundary of "
                                         r"the support of its prior Beta\(alpha=2, beta=5\), so the density "
                                         r"ratio p\(r \| y\) / p\(r\) is 0/0"):
        savage_dickey(density, idata.posterior, "r", 0.0, Beta(2.0, 5.0))


@pytest.mark.parametrize(("value", "prior", "reason"), [
    (0.0, Beta(2.0, 5.0), "lies on the boundary of the support of its prior Beta"),
    (1.0, Beta(1.0, 1.0), "lies on the boundary"),  # positive density, but at the edge
    (0.0, LogNormal(1.0, 0.5), "lies on the boundary of the support of its prior LogNormal"),
    (-1.0, LogNormal(1.0, 0.5), "lies outside the support"),
    (0.5, Beta(2.0, 5.0), None),
    (-3.0, Normal(0.0, 1.0), None),
    (0.0, HalfNormal(1.0), "lies on the boundary of the support of its prior HalfNormal(sigma=1)"),
    (0.2, HalfNormal(1.0), None),
    (0.0, Gamma(2.0, 1.0), "lies on the boundary of the support of its prior Gamma"),
    (0.0, TruncatedNormal(0.0, 1.0), "lies on the boundary of the support of its prior TruncatedNormal"),
    (1.0, TruncatedNormal(0.5, 1.0, 0.0, 1.0), "lies on the boundary"),
    (0.5, TruncatedNormal(0.5, 1.0, 0.0, 1.0), None),
])
def test_savage_dickey_is_defined_only_inside_the_prior_support(value, prior, reason):
    said = savage_dickey_undefined("x", value, prior)
    if reason is None:
        assert said is None
    else:
        assert reason in said and "bridge-sampling Bayes factor stands alone" in said


def test_savage_dickey_needs_a_scalar_parameter(regression):
    model, idata, _ = regression
    with pytest.raises(ModelError, match="scalar parameter"):
        savage_dickey(LogDensity(model), idata.posterior, "b", 0.0, Normal(0.0, 2.0))
