"""The flip-flop fold: its prior, its symmetry, and the resolution of draws back to the declared model."""

import dataclasses

import numpy as np
import pytest
import scipy.stats

import models
from inference.build import ModelOptions, build_model, default_options
from inference.data import load_dataset
from inference.evidence import LogDensity
from inference.fold import resolve
from inference.predictive import sample_prior
from models import Gamma, LogNormal, SolverSettings

MODEL = models.get_model("acute_inflammation")
PAIR = ("k_L", "d_M", "k_T", "k_I")
# The library priors of the pair and gains, as (log median, sigma).
LIBRARY = {"k_L": (np.log(1.0), 0.35), "d_M": (np.log(1.5), 0.6), "k_T": (np.log(1800.0), 0.82),
           "k_I": (np.log(100.0), 1.0)}


@pytest.fixture(scope="module")
def single():
    return load_dataset("data/single_subject/observations.csv")


@pytest.fixture(scope="module")
def cohort():
    return load_dataset("data/cohort/observations.csv").select(["S01", "S02", "S03", "S15"])


def _declared_logp(u):
    """Independent statement: the library's log-normal priors at both orderings of u = (a, b, h_T, h_I)."""
    a, b, h = u[..., 0], u[..., 1], u[..., 2:]
    total = []
    for sign in (1.0, -1.0):
        log_k1, log_k2 = a + sign * b, a - sign * b
        values = {"k_L": log_k1, "d_M": log_k2, "k_T": h[..., 0] - log_k1, "k_I": h[..., 1] - log_k1}
        total.append(sum(scipy.stats.norm.logpdf(values[k], *LIBRARY[k]) for k in PAIR))
    return np.logaddexp(*total)


def _fold_logp(pm_model):
    return pm_model.compile_fn(pm_model.logp(vars=[pm_model["flip_flop"]]), inputs=[pm_model.rvs_to_values[
        pm_model["flip_flop"]]], point_fn=False)


def test_fold_prior_is_the_declared_prior_summed_over_both_orderings(single, rng):
    pm_model = build_model(MODEL, single)
    fold = pm_model.fold
    assert fold.flip_flop.parameters == PAIR
    np.testing.assert_allclose(np.column_stack([fold.mean, fold.sd]), [LIBRARY[k] for k in PAIR])
    logp = _fold_logp(pm_model)
    points = rng.normal([0.2, 0.0, 7.5, 4.6], [0.5, 0.6, 1.0, 1.0], size=(20, 4))
    np.testing.assert_allclose([logp(u) for u in points], _declared_logp(points), rtol=1e-12)


def test_fold_prior_integrates_to_one(single, rng):
    # Importance sampling from a normal 1.5x wider than the prior's own moments; 40k draws give
    # the integral to about 1 %.
    logp = _fold_logp(build_model(MODEL, single))
    v = rng.normal(*np.array([LIBRARY[k] for k in PAIR]).T, size=(100_000, 4))
    sign = rng.choice([-1.0, 1.0], size=len(v))
    u = np.column_stack([(v[:, 0] + v[:, 1]) / 2, sign * (v[:, 0] - v[:, 1]) / 2, v[:, 2:] + v[:, :1]])
    q = scipy.stats.multivariate_normal(u.mean(axis=0), 1.5**2 * np.cov(u, rowvar=False))
    points = q.rvs(40_000, random_state=rng)
    log_q = q.logpdf(points)
    weights = np.exp(np.array([logp(u) for u in points]) - log_q)
    assert weights.mean() == pytest.approx(1.0, abs=4 * weights.std() / np.sqrt(len(weights)))
    assert weights.std() / np.sqrt(len(weights)) < 0.01


@pytest.mark.parametrize("data", ["single", "cohort"])
def test_log_density_is_even_in_b(data, request, rng):
    # The likelihood cannot tell the orderings apart and the prior is symmetric, so the whole
    # log density is unchanged by b -> -b (an exact solver makes the two solves agree).
    dataset = request.getfixturevalue(data)
    options = default_options(MODEL, dataset)
    pm_model = build_model(MODEL, dataset, ModelOptions(
        random_effects=options.random_effects, group_effects=options.group_effects,
        solver=SolverSettings(method="rodas5", rtol=1e-10, atol=1e-10)))
    logp = pm_model.compile_fn(pm_model.logp(), point_fn=True)
    point = pm_model.initial_point()
    point["flip_flop"] = np.array([0.2, 0.3, 7.9, 4.9])
    mirrored = {**point, "flip_flop": point["flip_flop"] * [1, -1, 1, 1]}
    asymmetric = {**point, "flip_flop": point["flip_flop"] * [1, -1.2, 1, 1]}
    assert logp(mirrored) == pytest.approx(logp(point), rel=1e-8)
    assert abs(logp(asymmetric) - logp(point)) > 0.1


def test_resolved_prior_draws_follow_the_declared_priors(single):
    idata = sample_prior(MODEL, single, draws=4000, seed=3, var_names=list(PAIR))
    for name in PAIR:
        draws = np.log(idata.prior[name].values.ravel())
        assert scipy.stats.kstest(draws, scipy.stats.norm(*LIBRARY[name]).cdf).pvalue > 0.01, name
    # Unresolved, the rates are a 50:50 mixture of the two priors: k_L would be far off.
    raw = idata.prior["flip_flop"].values.reshape(-1, 4)
    raw_log_k_L = raw[:, 0] + np.abs(raw[:, 1]) * np.sign(np.random.default_rng(0).standard_normal(len(raw)))
    assert scipy.stats.kstest(raw_log_k_L, scipy.stats.norm(*LIBRARY["k_L"]).cdf).pvalue < 1e-6


def test_resolve_keeps_each_ordering_with_its_prior_probability(single):
    pm_model = build_model(MODEL, single)
    u = np.array([[0.2, 0.3, 7.9, 4.9], [0.2, -0.3, 7.9, 4.9], [0.4, 0.0, 7.0, 5.0]])
    as_sampled = [sum(scipy.stats.norm.logpdf(v, *LIBRARY[k]) for k, v in zip(
        PAIR, (a + b, a - b, hT - a - b, hI - a - b), strict=True)) for a, b, hT, hI in u]
    np.testing.assert_allclose(pm_model.fold.keep_probability(u), np.exp(as_sampled - _declared_logp(u)),
                               rtol=1e-10)
    assert pm_model.fold.keep_probability(u)[2] == pytest.approx(0.5)

    # Resolving many copies of one draw keeps b's sign in that proportion; deterministics follow.
    posterior = sample_prior(MODEL, single, draws=20_000, seed=0, var_names=["k_L", "k_T"]).prior
    posterior = posterior.assign(flip_flop=(posterior["flip_flop"].dims, np.tile(u[0], (1, 20_000, 1))))
    resolved = resolve(posterior, pm_model, np.random.default_rng(1))
    b = resolved["flip_flop"].values[..., 1]
    assert np.mean(b > 0) == pytest.approx(pm_model.fold.keep_probability(u[:1])[0], abs=0.015)
    np.testing.assert_allclose(np.log(resolved["k_L"].values), u[0, 0] + b, rtol=1e-12)
    np.testing.assert_allclose(np.log(resolved["k_T"].values * resolved["k_L"].values), u[0, 2], rtol=1e-12)


@pytest.mark.parametrize(("options", "applies"), [
    (ModelOptions(), True),
    (ModelOptions(random_effects=("k_T",), priors={"k_T": Gamma(2.0, 0.001)}), True),
    (ModelOptions(fixed={"k_I": 100.0}), False),
    (ModelOptions(random_effects=("d_M",)), False),
    (ModelOptions(priors={"k_L": Gamma(4.0, 4.0)}), False),
    (ModelOptions(priors={"k_L": LogNormal(1.2, 0.2)}), True),
])
def test_fold_applies_where_it_is_exact(cohort, options, applies):
    pm_model = build_model(MODEL, cohort, options)
    assert (pm_model.fold is not None) is applies
    free = {rv.name for rv in pm_model.free_RVs}
    assert ("flip_flop" in free) is applies and ("k_L" in free) is not applies
    if applies and "k_T" in options.random_effects:
        assert "k_T_mu" not in free and "k_T_mu" in pm_model.named_vars


def test_bridge_sampling_density_is_the_declared_models_at_the_ordering_as_drawn(single):
    # LogDensity gives bridge sampling the declared model's density in the fold's coordinates
    # (resolved draws follow it): the unfolded model's log density plus log 2, the Jacobian of
    # (log k_L, log d_M) -> (a, b). Same parameters, same solves: equal to rounding.
    folded = LogDensity(build_model(MODEL, single))
    plain = LogDensity(build_model(dataclasses.replace(MODEL, flip_flop=None), single))
    log_values = {"k_L": 0.3, "d_M": -0.1, "k_T": 7.2, "k_I": 5.1}
    x_plain = np.concatenate([np.ravel(plain.model.initial_point()[n]) for n in plain.names])
    for name, value in log_values.items():
        x_plain[plain.index(f"{name}_log__")] = value
    x_folded = np.empty(folded.dim)
    for name in folded.names:
        if name != "flip_flop":
            x_folded[folded.index(name)] = x_plain[plain.index(name)]
    lk_L, lk_D = log_values["k_L"], log_values["d_M"]
    x_folded[folded.index("flip_flop")] = [(lk_L + lk_D) / 2, (lk_L - lk_D) / 2,
                                           log_values["k_T"] + lk_L, log_values["k_I"] + lk_L]
    logp_plain, loglik_plain = plain.evaluate(x_plain)
    logp_folded, loglik_folded = folded.evaluate(x_folded)
    assert loglik_folded == pytest.approx(loglik_plain, rel=1e-12)
    assert logp_folded == pytest.approx(logp_plain + np.log(2), rel=1e-12)
