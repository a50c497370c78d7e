"""Links and the prior registry: each face agrees with the others and with an independent reference."""

import numpy as np
import pymc as pm
import pytensor
import pytest
import scipy.stats

from inference.hypotheses import load_priors
from inference.priors import LINKS, PRIOR_KINDS, prior_from_dict, prior_kind, prior_to_dict, unconstrained
from models import Beta, Gamma, HalfNormal, LogNormal, ModelError, Normal, TruncatedNormal

POINTS = {"log": np.array([0.01, 0.5, 3.0, 400.0]), "logit": np.array([0.001, 0.2, 0.5, 0.97]),
          "identity": np.array([-3.0, 0.0, 0.4, 12.0])}
PRIORS = [LogNormal(300.0, 0.5), Beta(2.0, 5.0), Normal(0.3, 1.5), HalfNormal(2.0), Gamma(3.0, 0.5),
          TruncatedNormal(1.0, 2.0), TruncatedNormal(0.3, 0.2, 0.0, 1.0)]
# Each family is one entry of the registry (a truncated normal twice: its link follows its bounds).
assert {type(p).__name__ for p in PRIORS} == set(PRIOR_KINDS)


@pytest.mark.parametrize("name", list(LINKS))
def test_a_link_inverts_and_its_log_jacobian_is_the_derivative_of_the_inverse(name):
    link = LINKS[name]
    x = POINTS[name]
    u = link.forward(x)
    np.testing.assert_allclose(link.inverse(u), x, rtol=1e-12)
    tensor = pytensor.function([u_var := pytensor.tensor.dvector()], link.inverse_tensor(u_var))(u)
    np.testing.assert_allclose(tensor, x, rtol=1e-12)
    # Central differences of the inverse at two step sizes agree with exp(log_jacobian).
    for h in (1e-4, 1e-5):
        slope = (link.inverse(u + h) - link.inverse(u - h)) / (2 * h)
        np.testing.assert_allclose(np.log(slope), link.log_jacobian(x), atol=1e-6)


@pytest.mark.parametrize("prior", PRIORS, ids=lambda p: type(p).__name__)
def test_the_scipy_and_pymc_faces_of_a_prior_have_the_same_density(prior):
    kind = prior_kind(prior)
    link = kind.link_of(prior)
    x = POINTS[link]
    x = x[(x > 0) & (x < 1)] if link == "logit" else x[x > 0] if link == "log" else x
    ours = kind.scipy(prior).logpdf(x)
    theirs = pm.logp(_dist(kind, prior), x).eval()
    np.testing.assert_allclose(ours, theirs, rtol=1e-6, atol=1e-6)  # the two betaln differ by ~1e-7
    # The normal approximation on the link scale matches the moments of transformed draws.
    draws = LINKS[link].forward(prior.sample(np.random.default_rng(0), 200_000))
    approx = unconstrained(prior)
    assert abs(approx.mean - draws.mean()) < 0.01 * max(1.0, abs(draws.mean()))
    assert abs(approx.sd - draws.std()) < 0.01 * draws.std()


@pytest.mark.parametrize("prior", PRIORS, ids=lambda p: type(p).__name__)
def test_numpy_draws_pymc_draws_and_the_pymc_transform_agree_with_scipy(prior):
    kind = prior_kind(prior)
    reference = kind.scipy(prior)
    ours = prior.sample(np.random.default_rng(1), 4000)
    theirs = pm.draw(_dist(kind, prior), draws=4000, random_seed=2)
    for draws in (ours, theirs):
        assert scipy.stats.kstest(draws, reference.cdf).pvalue > 1e-3
    assert prior.typical() == pytest.approx(reference.median(), rel=1e-9)
    # PyMC samples in the link's coordinate (the Savage-Dickey prior density relies on it).
    with pm.Model() as model:
        rv = kind.pymc("p", prior)
    transform = model.rvs_to_transforms[rv]
    x = reference.ppf([0.1, 0.5, 0.9])
    u = x if transform is None else transform.forward(x, *rv.owner.inputs).eval()
    np.testing.assert_allclose(u, LINKS[kind.link_of(prior)].forward(x), rtol=1e-10, atol=1e-12)


def test_prior_files_take_every_kind_and_optional_bounds(tmp_path):
    path = tmp_path / "priors.toml"
    path.write_text('[priors]\n'
                    'a = { kind = "HalfNormal", sigma = 2.0 }\n'
                    'b = { kind = "Gamma", alpha = 3, beta = 0.5 }\n'
                    'c = { kind = "TruncatedNormal", mu = 1.0, sigma = 2.0 }\n'
                    'd = { kind = "TruncatedNormal", mu = 0.3, sigma = 0.2, lower = 0.0, upper = 1.0 }\n')
    priors = load_priors(path)
    assert priors == {"a": HalfNormal(2.0), "b": Gamma(3.0, 0.5), "c": TruncatedNormal(1.0, 2.0, 0.0, np.inf),
                      "d": TruncatedNormal(0.3, 0.2, 0.0, 1.0)}
    assert {k: prior_from_dict(prior_to_dict(p)) for k, p in priors.items()} == priors
    assert prior_to_dict(priors["c"]) == {"kind": "TruncatedNormal", "mu": 1.0, "sigma": 2.0}
    assert prior_to_dict(priors["d"])["upper"] == 1.0


def _dist(kind, prior):
    with pm.Model():
        return kind.pymc("p", prior)


@pytest.mark.parametrize("prior", PRIORS, ids=lambda p: type(p).__name__)
def test_a_prior_serialises_to_its_kind_and_fields_and_back(prior):
    data = prior_to_dict(prior)
    assert data["kind"] == type(prior).__name__
    kind = PRIOR_KINDS[data["kind"]]
    assert set(kind.required) <= set(data) - {"kind"} <= set(kind.fields)
    assert prior_from_dict(data) == prior


@pytest.mark.parametrize(("data", "error", "match"), [
    ({"kind": "Cauchy", "alpha": 2.0}, TypeError,
     r"expected \{ kind = one of \['LogNormal', 'Beta', 'Normal', 'HalfNormal', 'Gamma', "
     r"'TruncatedNormal'\]"),
    ({"kind": "TruncatedNormal", "mu": 2.0}, TypeError,
     r"a TruncatedNormal prior needs \['mu', 'sigma'\] and optionally \['lower', 'upper'\], got \['mu'\]"),
    ({"kind": "TruncatedNormal", "mu": 2.0, "sigma": 1.0, "lower": 1.0}, ModelError,
     "TruncatedNormal supports lower = 0 with upper = inf"),
    ({"kind": "Gamma", "alpha": 2.0, "beta": 0.0}, ModelError, "Gamma needs alpha > 0 and beta > 0"),
    ({"kind": "Beta", "alpha": 2.0}, TypeError,
     r"a Beta prior needs exactly \['alpha', 'beta'\], got \['alpha'\]"),
    ({"kind": "Normal", "mu": "0", "sigma": 1.0}, TypeError, "mu: expected a number, got '0'"),
    ({"kind": "LogNormal", "median": -1.0, "sigma": 1.0}, ModelError, "LogNormal needs median > 0"),
])
def test_a_bad_prior_description_says_what_was_expected(data, error, match):
    with pytest.raises(error, match=match):
        prior_from_dict(data)
