"""Links and the prior registry: each face agrees with the others and with an independent reference."""

import numpy as np
import pymc as pm
import pytensor
import pytest

from inference.priors import LINKS, PRIOR_KINDS, prior_from_dict, prior_kind, prior_to_dict, unconstrained
from models import Beta, LogNormal, ModelError, Normal

POINTS = {"log": np.array([0.01, 0.5, 3.0, 400.0]), "logit": np.array([0.001, 0.2, 0.5, 0.97]),
          "identity": np.array([-3.0, 0.0, 0.4, 12.0])}
PRIORS = [LogNormal(300.0, 0.5), Beta(2.0, 5.0), Normal(0.3, 1.5)]


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
    x = POINTS[kind.link]
    x = x[(x > 0) & (x < 1)] if kind.link == "logit" else x[x > 0] if kind.link == "log" else x
    ours = kind.scipy(prior).logpdf(x)
    theirs = pm.logp(_dist(kind, prior), x).eval()
    np.testing.assert_allclose(ours, theirs, rtol=1e-6, atol=1e-6)  # the two betaln differ by ~1e-7
    # The normal approximation on the link scale matches the moments of transformed draws.
    draws = LINKS[kind.link].forward(prior.sample(np.random.default_rng(0), 200_000))
    approx = unconstrained(prior)
    assert abs(approx.mean - draws.mean()) < 0.01 * max(1.0, abs(draws.mean()))
    assert abs(approx.sd - draws.std()) < 0.01 * draws.std()


def _dist(kind, prior):
    with pm.Model():
        return kind.pymc("p", prior)


@pytest.mark.parametrize("prior", PRIORS, ids=lambda p: type(p).__name__)
def test_a_prior_serialises_to_its_kind_and_fields_and_back(prior):
    data = prior_to_dict(prior)
    assert data["kind"] == type(prior).__name__
    assert set(data) - {"kind"} == set(PRIOR_KINDS[data["kind"]].fields)
    assert prior_from_dict(data) == prior


@pytest.mark.parametrize(("data", "error", "match"), [
    ({"kind": "Gamma", "alpha": 2.0}, TypeError,
     r"expected \{ kind = one of \['LogNormal', 'Beta', 'Normal'\]"),
    ({"kind": "Beta", "alpha": 2.0}, TypeError,
     r"a Beta prior needs exactly \['alpha', 'beta'\], got \['alpha'\]"),
    ({"kind": "Normal", "mu": "0", "sigma": 1.0}, TypeError, "mu: expected a number, got '0'"),
    ({"kind": "LogNormal", "median": -1.0, "sigma": 1.0}, ModelError, "LogNormal needs median > 0"),
])
def test_a_bad_prior_description_says_what_was_expected(data, error, match):
    with pytest.raises(error, match=match):
        prior_from_dict(data)
