"""Links and prior kinds, each stated once: the registry every other module asks.

``models`` describes priors without PyMC (``LogNormal``, ``Beta``, ``Normal``, ``HalfNormal``,
``Gamma``, ``TruncatedNormal``). This module says,
for each kind, everything the rest of the package needs: its link (the scale on which the
parameter is unbounded), its scipy and PyMC distributions, the normal approximation on the link
scale (the population mean of a hierarchical parameter) and its fields for serialisation (JSON
of results, TOML of hypotheses). The link is the coordinate in which PyMC's default transform
of the distribution samples (the Savage-Dickey ratio relies on that). A link gives its forward
map, inverse (numpy and PyTensor) and log-Jacobian.

A new prior family is a :class:`~models.spec.Prior` subclass in ``models/spec.py`` and one
:class:`PriorKind` entry in :data:`PRIOR_KINDS` here.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import MISSING, asdict, dataclass, fields
from typing import Any

import numpy as np
import pymc as pm
import pytensor.tensor as pt
import scipy.stats
from scipy.special import digamma, expit, polygamma

from models.spec import Beta, Gamma, HalfNormal, LogNormal, ModelError, Normal, Prior, TruncatedNormal

__all__ = ["LINKS", "PRIOR_KINDS", "Link", "PriorKind", "Unconstrained", "prior_from_dict", "prior_kind",
           "prior_to_dict", "to_pymc", "unconstrained"]


# --------------------------------------------------------------------------------------------
# Links
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Link:
    """A map from a parameter's scale to an unbounded one: ``u = forward(x)``, ``x = inverse(u)``."""

    name: str
    _forward: Callable[[np.ndarray], np.ndarray]
    _inverse: Callable[[np.ndarray], np.ndarray]
    _inverse_tensor: Callable[[Any], Any]
    _log_jacobian: Callable[[np.ndarray], np.ndarray]

    def forward(self, x) -> np.ndarray:
        """Map parameter values to the unbounded scale (numpy; -inf/nan at and beyond the bounds)."""
        with np.errstate(divide="ignore", invalid="ignore"):
            return self._forward(np.asarray(x, dtype=float))

    def inverse(self, u) -> np.ndarray:
        """Map unbounded values back to the parameter's scale (numpy)."""
        return self._inverse(np.asarray(u, dtype=float))

    def inverse_tensor(self, u):
        """Map unbounded values back to the parameter's scale (PyTensor)."""
        return self._inverse_tensor(u)

    def log_jacobian(self, x) -> np.ndarray:
        """Return log |dx/du| at parameter values ``x``."""
        with np.errstate(divide="ignore", invalid="ignore"):
            return self._log_jacobian(np.asarray(x, dtype=float))


LINKS: dict[str, Link] = {
    "log": Link("log", np.log, np.exp, pt.exp, np.log),
    "logit": Link("logit", lambda x: np.log(x) - np.log1p(-x), expit, pt.sigmoid,
                  lambda x: np.log(x) + np.log1p(-x)),
    "identity": Link("identity", lambda x: x, lambda u: u, lambda u: u, np.zeros_like),
}


# --------------------------------------------------------------------------------------------
# Prior kinds
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Unconstrained:
    """A prior as a normal distribution on its link scale: ``link(value) ~ N(mean, sd)``."""

    link: str  # a key of LINKS
    mean: float
    sd: float

    def inverse(self, eta):
        """Map from the unconstrained scale back to the parameter's scale (PyTensor)."""
        return LINKS[self.link].inverse_tensor(eta)

    def forward(self, value):
        """Map a parameter value to the unconstrained scale (numpy)."""
        return LINKS[self.link].forward(value)


@dataclass(frozen=True)
class PriorKind:
    """Everything the package needs to know about one kind of prior."""

    cls: type[Prior]
    link: str | Callable[[Any], str]  # a key of LINKS, or prior -> key (by the prior's bounds)
    scipy: Callable[[Any], Any]  # prior -> frozen scipy distribution
    pymc: Callable[..., Any]  # (name, prior, **kwargs) -> PyMC random variable
    moments: Callable[[Any], tuple[float, float]]  # prior -> mean and sd on the link scale

    @property
    def name(self) -> str:
        """The kind's name in JSON and TOML (the class name)."""
        return self.cls.__name__

    @property
    def fields(self) -> tuple[str, ...]:
        """The prior's parameters, in order."""
        return tuple(self.cls.__dataclass_fields__)

    @property
    def required(self) -> tuple[str, ...]:
        """The parameters without a default (the others may be left out of TOML)."""
        return tuple(f.name for f in fields(self.cls) if f.default is MISSING)

    def link_of(self, prior: Prior) -> str:
        """Return the prior's link (a key of :data:`LINKS`)."""
        return self.link(prior) if callable(self.link) else self.link


def _beta_moments(prior: Beta) -> tuple[float, float]:
    # The logit of Beta(a, b) has mean digamma(a) - digamma(b), variance trigamma(a) + trigamma(b).
    mean = digamma(prior.alpha) - digamma(prior.beta)
    return float(mean), float(np.sqrt(polygamma(1, prior.alpha) + polygamma(1, prior.beta)))


def _half_normal_moments(prior: HalfNormal) -> tuple[float, float]:
    # log |Z| for Z ~ N(0, 1) has mean -(euler_gamma + log 2) / 2 and variance pi^2 / 8.
    return float(np.log(prior.sigma) - (np.euler_gamma + np.log(2.0)) / 2), float(np.pi / np.sqrt(8.0))


def _gamma_moments(prior: Gamma) -> tuple[float, float]:
    # log X for X ~ Gamma(alpha, rate beta) has mean digamma(alpha) - log beta, variance trigamma(alpha).
    return float(digamma(prior.alpha) - np.log(prior.beta)), float(np.sqrt(polygamma(1, prior.alpha)))


def _numeric_moments(prior: Prior) -> tuple[float, float]:
    # No closed form (a truncated normal on the log or logit scale): integrate.
    kind = prior_kind(prior)
    distribution, link = kind.scipy(prior), LINKS[kind.link_of(prior)]
    mean = distribution.expect(lambda x: link.forward(x))
    second = distribution.expect(lambda x: (link.forward(x) - mean) ** 2)
    return float(mean), float(np.sqrt(second))


def _truncated_pymc(name: str, p: TruncatedNormal, **kw):
    return pm.TruncatedNormal(name, mu=p.mu, sigma=p.sigma, lower=p.lower,
                              upper=None if np.isinf(p.upper) else p.upper, **kw)


PRIOR_KINDS: dict[str, PriorKind] = {k.name: k for k in (
    PriorKind(LogNormal, "log",
              scipy=lambda p: scipy.stats.lognorm(s=p.sigma, scale=p.median),
              pymc=lambda name, p, **kw: pm.LogNormal(name, mu=np.log(p.median), sigma=p.sigma, **kw),
              moments=lambda p: (float(np.log(p.median)), p.sigma)),
    PriorKind(Beta, "logit",
              scipy=lambda p: scipy.stats.beta(p.alpha, p.beta),
              pymc=lambda name, p, **kw: pm.Beta(name, alpha=p.alpha, beta=p.beta, **kw),
              moments=_beta_moments),
    PriorKind(Normal, "identity",
              scipy=lambda p: scipy.stats.norm(p.mu, p.sigma),
              pymc=lambda name, p, **kw: pm.Normal(name, mu=p.mu, sigma=p.sigma, **kw),
              moments=lambda p: (p.mu, p.sigma)),
    PriorKind(HalfNormal, "log",
              scipy=lambda p: scipy.stats.halfnorm(scale=p.sigma),
              pymc=lambda name, p, **kw: pm.HalfNormal(name, sigma=p.sigma, **kw),
              moments=_half_normal_moments),
    PriorKind(Gamma, "log",
              scipy=lambda p: scipy.stats.gamma(p.alpha, scale=1.0 / p.beta),
              pymc=lambda name, p, **kw: pm.Gamma(name, alpha=p.alpha, beta=p.beta, **kw),
              moments=_gamma_moments),
    PriorKind(TruncatedNormal, lambda p: "logit" if p.upper == 1.0 else "log",
              scipy=lambda p: p.scipy_distribution(),
              pymc=_truncated_pymc,
              moments=_numeric_moments),
)}


def prior_kind(prior: Prior) -> PriorKind:
    """Return the registry entry of a prior.

    Raises
    ------
    ModelError
        The prior's class is not registered.
    """
    kind = PRIOR_KINDS.get(type(prior).__name__)
    if kind is None or not isinstance(prior, kind.cls):
        raise ModelError(f"no prior kind registered for {prior!r}; known kinds: {list(PRIOR_KINDS)}")
    return kind


def to_pymc(name: str, prior: Prior, **kwargs):
    """Create the PyMC random variable ``name`` with distribution ``prior`` (inside a model)."""
    return prior_kind(prior).pymc(name, prior, **kwargs)


def unconstrained(prior: Prior) -> Unconstrained:
    """Return a normal location prior on the link scale with the prior's first two moments there.

    A log-normal prior is exactly normal on the log scale; for Beta(a, b) the logit has mean
    digamma(a) - digamma(b) and variance trigamma(a) + trigamma(b).
    """
    kind = prior_kind(prior)
    mean, sd = kind.moments(prior)
    return Unconstrained(kind.link_of(prior), mean, sd)


def prior_to_dict(prior: Prior) -> dict[str, Any]:
    """Return ``{"kind": name, field: value, ...}`` (the form of results' JSON and hypotheses' TOML).

    Fields at their default are left out (a truncated normal's ``upper = inf``, which JSON lacks).
    """
    defaults = {f.name: f.default for f in fields(prior) if f.default is not MISSING}
    values = {k: v for k, v in asdict(prior).items() if k not in defaults or v != defaults[k]}
    return {"kind": prior_kind(prior).name, **values}


def prior_from_dict(data: Mapping[str, Any]) -> Prior:
    """Inverse of :func:`prior_to_dict`.

    Raises
    ------
    TypeError
        An unknown kind, missing or extra fields, or a value that is not a number.
    ModelError
        Values out of range (e.g. a negative median).
    """
    kind = PRIOR_KINDS.get(data.get("kind")) if isinstance(data, Mapping) else None
    if kind is None:
        raise TypeError(f"expected {{ kind = one of {list(PRIOR_KINDS)}, ... }}, got {data!r}")
    given = {k: v for k, v in data.items() if k != "kind"}
    if not set(kind.required) <= set(given) <= set(kind.fields):
        needs = (f"exactly {list(kind.fields)}" if kind.required == kind.fields else
                 f"{list(kind.required)} and optionally {[f for f in kind.fields if f not in kind.required]}")
        raise TypeError(f"a {kind.name} prior needs {needs}, got {sorted(given)}")
    for name, value in given.items():
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise TypeError(f"{name}: expected a number, got {value!r}")
    return kind.cls(**{k: float(v) for k, v in given.items()})
