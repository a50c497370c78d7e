"""Links and prior kinds, each stated once: the registry every other module asks.

``models`` describes priors without PyMC (``LogNormal``, ``Beta``, ``Normal``). This module says,
for each kind, everything the rest of the package needs: its link (the scale on which the
parameter is unbounded), its scipy and PyMC distributions, the normal approximation on the link
scale (the population mean of a hierarchical parameter) and its fields for serialisation (JSON
of results, TOML of hypotheses). A link gives its forward map, inverse (numpy and PyTensor) and
log-Jacobian.

A new prior family is a :class:`~models.spec.Prior` subclass in ``models/spec.py`` and one
:class:`PriorKind` entry in :data:`PRIOR_KINDS` here.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pymc as pm
import pytensor.tensor as pt
import scipy.stats
from scipy.special import digamma, expit, polygamma

from models.spec import Beta, LogNormal, ModelError, Normal, Prior

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
    link: str
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


def _beta_moments(prior: Beta) -> tuple[float, float]:
    # The logit of Beta(a, b) has mean digamma(a) - digamma(b), variance trigamma(a) + trigamma(b).
    mean = digamma(prior.alpha) - digamma(prior.beta)
    return float(mean), float(np.sqrt(polygamma(1, prior.alpha) + polygamma(1, prior.beta)))


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
    return Unconstrained(kind.link, mean, sd)


def prior_to_dict(prior: Prior) -> dict[str, Any]:
    """Return ``{"kind": name, field: value, ...}`` (the form of results' JSON and hypotheses' TOML)."""
    return {"kind": prior_kind(prior).name, **asdict(prior)}


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
    if set(given) != set(kind.fields):
        raise TypeError(f"a {kind.name} prior needs exactly {list(kind.fields)}, got {sorted(given)}")
    for name, value in given.items():
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise TypeError(f"{name}: expected a number, got {value!r}")
    return kind.cls(**{k: float(v) for k, v in given.items()})
