"""Turn the models' prior descriptions into PyMC distributions.

``models`` describes priors without PyMC (``LogNormal``, ``Beta``, ``Normal``); this module is the
one place that maps them to PyMC, both as they are (a parameter shared by all subjects) and as a
normal location on an unconstrained scale (the population mean of a hierarchical parameter).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pymc as pm
import pytensor.tensor as pt
from scipy.special import digamma, polygamma

from models.spec import Beta, LogNormal, ModelError, Normal, Prior


def to_pymc(name: str, prior: Prior, **kwargs):
    """Create the PyMC random variable ``name`` with distribution ``prior`` (inside a model)."""
    if isinstance(prior, LogNormal):
        return pm.LogNormal(name, mu=np.log(prior.median), sigma=prior.sigma, **kwargs)
    if isinstance(prior, Beta):
        return pm.Beta(name, alpha=prior.alpha, beta=prior.beta, **kwargs)
    if isinstance(prior, Normal):
        return pm.Normal(name, mu=prior.mu, sigma=prior.sigma, **kwargs)
    raise ModelError(f"parameter {name}: no PyMC mapping for prior {prior!r}")


@dataclass(frozen=True)
class Unconstrained:
    """A prior as a normal distribution on an unconstrained scale: ``link(value) ~ N(mean, sd)``."""

    link: str  # "log", "logit" or "identity"
    mean: float
    sd: float

    def inverse(self, eta):
        """Map from the unconstrained scale back to the parameter's scale (PyTensor)."""
        if self.link == "log":
            return pt.exp(eta)
        if self.link == "logit":
            return pt.sigmoid(eta)
        return eta

    def forward(self, value):
        """Map a parameter value to the unconstrained scale (numpy)."""
        value = np.asarray(value, dtype=float)
        if self.link == "log":
            return np.log(value)
        if self.link == "logit":
            return np.log(value) - np.log1p(-value)
        return value


def unconstrained(prior: Prior) -> Unconstrained:
    """Return a normal location prior on the link scale with the prior's first two moments there.

    A log-normal prior is exactly normal on the log scale; for Beta(a, b) the logit has mean
    digamma(a) - digamma(b) and variance trigamma(a) + trigamma(b).
    """
    if isinstance(prior, LogNormal):
        return Unconstrained("log", float(np.log(prior.median)), prior.sigma)
    if isinstance(prior, Beta):
        mean = digamma(prior.alpha) - digamma(prior.beta)
        sd = np.sqrt(polygamma(1, prior.alpha) + polygamma(1, prior.beta))
        return Unconstrained("logit", float(mean), float(sd))
    if isinstance(prior, Normal):
        return Unconstrained("identity", prior.mu, prior.sigma)
    raise ModelError(f"no unconstrained form for prior {prior!r}")
