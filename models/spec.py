"""ODE model specification: states, parameters, inputs, observables and the right-hand side.

A model is written once, as plain Python arithmetic on named states, parameters and inputs::

    def rhs(s, p, u, m):
        return {"X": -p.k * s.X}

``s``, ``p`` and ``u`` are namespaces of the model's states, parameters and inputs, ``m`` is a small
math namespace (:class:`MathNamespace`). The same function is evaluated on sympy symbols (to derive
Jacobians and generate compiled code) and on floats (as an independent reference in tests).
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import SimpleNamespace

import numpy as np
import scipy.stats


class ModelError(ValueError):
    """A model specification, a parameter value or an input is invalid."""


# --------------------------------------------------------------------------------------------
# Priors: plain descriptions; `inference` turns them into PyMC distributions.
# --------------------------------------------------------------------------------------------
class Prior(ABC):
    """A default prior distribution of a parameter (described here, built by ``inference``)."""

    @abstractmethod
    def sample(self, rng: np.random.Generator, size: int | None = None) -> np.ndarray:
        """Draw from the prior with numpy (used for prior draws in tests and simulation)."""

    @abstractmethod
    def typical(self) -> float:
        """Return the prior median: the library's typical value of the parameter."""

    @abstractmethod
    def describe(self) -> str:
        """Return a one-line description such as ``LogNormal(median=2, sigma=0.47)``."""


@dataclass(frozen=True)
class LogNormal(Prior):
    """Log-normal prior given by its median and the standard deviation of the log."""

    median: float
    sigma: float

    def __post_init__(self) -> None:
        if not (self.median > 0 and self.sigma > 0):
            raise ModelError(f"LogNormal needs median > 0 and sigma > 0, got {self}")

    def sample(self, rng, size=None):  # noqa: D102
        return np.exp(np.log(self.median) + self.sigma * rng.standard_normal(size))

    def typical(self):  # noqa: D102
        return self.median

    def describe(self):  # noqa: D102
        return f"LogNormal(median={self.median:g}, sigma={self.sigma:g})"


@dataclass(frozen=True)
class Beta(Prior):
    """Beta prior on [0, 1]."""

    alpha: float
    beta: float

    def __post_init__(self) -> None:
        if not (self.alpha > 0 and self.beta > 0):
            raise ModelError(f"Beta needs alpha > 0 and beta > 0, got {self}")

    def sample(self, rng, size=None):  # noqa: D102
        return rng.beta(self.alpha, self.beta, size)

    def typical(self):  # noqa: D102
        return float(scipy.stats.beta(self.alpha, self.beta).median())

    def describe(self):  # noqa: D102
        return f"Beta(alpha={self.alpha:g}, beta={self.beta:g})"


@dataclass(frozen=True)
class Normal(Prior):
    """Normal prior (for unbounded parameters such as covariate effects)."""

    mu: float
    sigma: float

    def __post_init__(self) -> None:
        if not self.sigma > 0:
            raise ModelError(f"Normal needs sigma > 0, got {self}")

    def sample(self, rng, size=None):  # noqa: D102
        return self.mu + self.sigma * rng.standard_normal(size)

    def typical(self):  # noqa: D102
        return self.mu

    def describe(self):  # noqa: D102
        return f"Normal(mu={self.mu:g}, sigma={self.sigma:g})"


@dataclass(frozen=True)
class HalfNormal(Prior):
    """Half-normal prior on [0, inf): |N(0, sigma)| (a weakly informative scale or rate)."""

    sigma: float

    def __post_init__(self) -> None:
        if not self.sigma > 0:
            raise ModelError(f"HalfNormal needs sigma > 0, got {self}")

    def sample(self, rng, size=None):  # noqa: D102
        return np.abs(self.sigma * rng.standard_normal(size))

    def typical(self):  # noqa: D102
        return float(scipy.stats.halfnorm(scale=self.sigma).median())

    def describe(self):  # noqa: D102
        return f"HalfNormal(sigma={self.sigma:g})"


@dataclass(frozen=True)
class Gamma(Prior):
    """Gamma prior on (0, inf) with shape ``alpha`` and rate ``beta`` (mean alpha / beta), as in PyMC."""

    alpha: float
    beta: float

    def __post_init__(self) -> None:
        if not (self.alpha > 0 and self.beta > 0):
            raise ModelError(f"Gamma needs alpha > 0 and beta > 0, got {self}")

    def sample(self, rng, size=None):  # noqa: D102
        return rng.gamma(self.alpha, 1.0 / self.beta, size)

    def typical(self):  # noqa: D102
        return float(scipy.stats.gamma(self.alpha, scale=1.0 / self.beta).median())

    def describe(self):  # noqa: D102
        return f"Gamma(alpha={self.alpha:g}, beta={self.beta:g})"


@dataclass(frozen=True)
class TruncatedNormal(Prior):
    """Normal(mu, sigma) truncated to [lower, upper]: to (0, inf) for a positive parameter, or (0, 1).

    Only those two ranges: the parameter's unconstrained coordinate is then log or logit, as for
    every other prior (``inference.priors.LINKS``).
    """

    mu: float
    sigma: float
    lower: float = 0.0
    upper: float = math.inf

    def __post_init__(self) -> None:
        if not self.sigma > 0:
            raise ModelError(f"TruncatedNormal needs sigma > 0, got {self}")
        if (self.lower, self.upper) not in ((0.0, math.inf), (0.0, 1.0)):
            raise ModelError(f"TruncatedNormal supports lower = 0 with upper = inf (a positive parameter) "
                             f"or upper = 1 (a fraction), got {self}")

    def scipy_distribution(self):
        """Return the frozen ``scipy.stats.truncnorm`` of this prior."""
        a, b = (self.lower - self.mu) / self.sigma, (self.upper - self.mu) / self.sigma
        return scipy.stats.truncnorm(a, b, loc=self.mu, scale=self.sigma)

    def sample(self, rng, size=None):  # noqa: D102
        return self.scipy_distribution().rvs(size=size, random_state=rng)

    def typical(self):  # noqa: D102
        return float(self.scipy_distribution().median())

    def describe(self):  # noqa: D102
        return (f"TruncatedNormal(mu={self.mu:g}, sigma={self.sigma:g}, lower={self.lower:g}, "
                f"upper={self.upper:g})")


# --------------------------------------------------------------------------------------------
# Model parts
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class State:
    """A state variable of the ODE."""

    name: str
    unit: str
    description: str


@dataclass(frozen=True)
class Parameter:
    """A model parameter with its unit, meaning, bounds and default prior."""

    name: str
    unit: str
    description: str
    prior: Prior
    lower: float = 0.0
    upper: float = math.inf
    source: str = ""

    def __post_init__(self) -> None:
        if not self.lower < self.upper:
            raise ModelError(f"parameter {self.name}: lower bound must be below upper bound")


@dataclass(frozen=True)
class Input:
    """A known, per-subject input (a dose, a stress level): data, not estimated."""

    name: str
    unit: str
    description: str
    default: float = 0.0


@dataclass(frozen=True)
class Observable:
    """A measured analyte and the state it reads."""

    analyte: str
    state: str
    unit: str


@dataclass(frozen=True)
class Ridge:
    """Parameters that the data inform only in combination (a ridge of the likelihood).

    ``note`` says why, in words; reports show the pair together and print the note.
    """

    parameters: tuple[str, ...]
    note: str


@dataclass(frozen=True)
class FlipFlop:
    """Two first-order rates in series that no data can order (flip-flop kinetics).

    The observables depend on ``rates`` (k_1, k_2) and on the ``gains`` (production per unit of
    the state between the two rates) only through the unordered pair {k_1, k_2} and the products
    gain * k_1: swapping the rates and scaling every gain by k_1 / k_2 changes no observable.
    Fits sample the pair in coordinates where that swap is a reflection
    (:mod:`inference.fold`).
    """

    rates: tuple[str, str]
    gains: tuple[str, ...]

    @property
    def parameters(self) -> tuple[str, ...]:
        """The rates, then the gains."""
        return (*self.rates, *self.gains)


@dataclass(frozen=True)
class Resistance:
    """How glucocorticoid resistance is read from a model.

    Either a ``parameter`` in [0, 1] (static resistance, e.g. ``r``) or ``one_minus_state``: the
    state whose complement is the resistance at each time (``R``, receptor availability, gives
    resistance ``1 - R``).
    """

    parameter: str | None = None
    one_minus_state: str | None = None

    def __post_init__(self) -> None:
        if (self.parameter is None) == (self.one_minus_state is None):
            raise ModelError("Resistance needs exactly one of parameter or one_minus_state")

    def describe(self) -> str:
        """Return the resistance as an expression of the model's symbols, e.g. ``r`` or ``1 - R``."""
        return self.parameter if self.parameter is not None else f"1 - {self.one_minus_state}"


class MathNamespace:
    """The functions a right-hand side may use: exp, log, sqrt and Hill functions.

    Backed by ``sympy`` for code generation or by ``math`` for float evaluation.
    """

    def __init__(self, backend) -> None:
        self._b = backend
        self.exp = backend.exp
        self.log = backend.log
        self.sqrt = backend.sqrt

    @staticmethod
    def hill(x, K, n=1):
        """Rising Hill function x^n / (x^n + K^n), dimensionless in [0, 1)."""
        return x**n / (x**n + K**n)

    @staticmethod
    def hill_down(x, K, n=1):
        """Falling Hill function K^n / (x^n + K^n), dimensionless in (0, 1]."""
        return K**n / (x**n + K**n)


FLOAT_MATH = MathNamespace(math)


@dataclass(frozen=True)
class ModelSource:
    """Where a model written by a user came from: its file and the name that holds the model.

    ``text`` is the file's full source: results store it, so that the model can be rebuilt
    without the file (:func:`models.user.load_source`).
    """

    file: str
    attribute: str
    text: str = field(repr=False)

    @property
    def spec(self) -> str:
        """The ``path/to/file.py:NAME`` form of the command line and hypotheses files."""
        return f"{self.file}:{self.attribute}"

RHS = Callable[[SimpleNamespace, SimpleNamespace, SimpleNamespace, MathNamespace], Mapping]
Initial = Callable[[SimpleNamespace, SimpleNamespace, MathNamespace], Mapping]


@dataclass(frozen=True)
class OdeModel:
    """An ODE model of cytokine balance: dy/dt = f(t, y, theta), y(0) = y0(theta).

    ``theta`` is the parameters followed by the inputs, in declaration order; solvers return
    sensitivities with respect to all of them.

    Parameters
    ----------
    name
        Library name, e.g. ``"acute_inflammation"``.
    title
        One-line description.
    equations
        The equations in plain text, with units (shown in reports).
    states, parameters, inputs, observables
        The model's parts.
    rhs
        ``rhs(s, p, u, m) -> {state name: time derivative}``.
    initial
        ``initial(p, u, m) -> {state name: value at t = 0}``.
    time_unit
        Unit of time (hours for every library model).
    cohort_random_effects
        Parameters that vary between subjects in a first cohort fit (the largest between-subject
        spreads of the literature).
    ridges
        Known ridges: parameters the data inform only in combination.
    flip_flop
        A pair of rates the data cannot order, with the gains that make the swap exact.
    resistance
        How GC resistance is read from the model (None: the model has no notion of it).
    source
        For a model loaded from a user's file (:func:`models.user.load_model_file`), that file's
        name and text; ``None`` for library models and models made in code.
    """

    name: str
    title: str
    equations: str
    states: tuple[State, ...]
    parameters: tuple[Parameter, ...]
    inputs: tuple[Input, ...]
    observables: tuple[Observable, ...]
    rhs: RHS = field(repr=False)
    initial: Initial = field(repr=False)
    time_unit: str = "h"
    cohort_random_effects: tuple[str, ...] = ()
    ridges: tuple[Ridge, ...] = ()
    flip_flop: FlipFlop | None = None
    resistance: Resistance | None = None
    source: ModelSource | None = field(default=None, repr=False, compare=False)

    def __reduce_ex__(self, protocol):
        # A model from a user's file pickles as its source (for Dask workers): the functions of
        # a module executed from text cannot be pickled by reference.
        if self.source is not None:
            from .user import load_source

            return load_source, (self.source,)
        return super().__reduce_ex__(protocol)

    def __post_init__(self) -> None:
        names = self.state_names + self.parameter_names + self.input_names
        duplicated = sorted({n for n in names if names.count(n) > 1})
        if duplicated:
            raise ModelError(f"model {self.name}: names used twice: {duplicated}")
        for obs in self.observables:
            if obs.state not in self.state_names:
                raise ModelError(
                    f"model {self.name}: observable {obs.analyte} reads unknown state {obs.state}"
                )
        named = (*self.cohort_random_effects, *(p for r in self.ridges for p in r.parameters),
                 *(self.flip_flop.parameters if self.flip_flop else ()))
        unknown = [n for n in named if n not in self.parameter_names]
        if self.resistance is not None:
            if self.resistance.parameter not in (None, *self.parameter_names):
                unknown.append(self.resistance.parameter)
            if self.resistance.one_minus_state not in (None, *self.state_names):
                unknown.append(self.resistance.one_minus_state)
        if unknown:
            raise ModelError(f"model {self.name}: cohort effects, ridges, flip-flop or resistance name "
                             f"unknown parameters or states {unknown}")
        for label, produced in (
            ("rhs", self.rhs(*self._float_namespaces(), FLOAT_MATH)),
            ("initial", self.initial(*self._float_namespaces()[1:], FLOAT_MATH)),
        ):
            if set(produced) != set(self.state_names):
                raise ModelError(
                    f"model {self.name}: {label} must return exactly the states "
                    f"{list(self.state_names)}, got {sorted(produced)}"
                )

    # ---- names and indices ----------------------------------------------------------------
    @property
    def state_names(self) -> tuple[str, ...]:
        """State names in order."""
        return tuple(s.name for s in self.states)

    @property
    def parameter_names(self) -> tuple[str, ...]:
        """Parameter names in order."""
        return tuple(p.name for p in self.parameters)

    @property
    def input_names(self) -> tuple[str, ...]:
        """Input names in order."""
        return tuple(i.name for i in self.inputs)

    @property
    def theta_names(self) -> tuple[str, ...]:
        """Names of the sensitivity directions: parameters then inputs."""
        return self.parameter_names + self.input_names

    @property
    def analytes(self) -> tuple[str, ...]:
        """Analytes the model can be compared with."""
        return tuple(o.analyte for o in self.observables)

    def parameter(self, name: str) -> Parameter:
        """Return the parameter called ``name``."""
        for p in self.parameters:
            if p.name == name:
                return p
        raise ModelError(
            f"model {self.name} has no parameter {name!r}; parameters: {list(self.parameter_names)}"
        )

    def observable_states(self) -> np.ndarray:
        """Index of the state each observable reads."""
        return np.array([self.state_names.index(o.state) for o in self.observables])

    # ---- parameter vectors ----------------------------------------------------------------
    def defaults(self) -> dict[str, float]:
        """Prior medians of the parameters (a typical healthy subject)."""
        return {p.name: p.prior.typical() for p in self.parameters}

    def theta(self, params: Mapping[str, float], inputs: Mapping[str, float] | None = None):
        """Pack named parameters and inputs into the solver's ``theta`` vector.

        Raises
        ------
        ModelError
            A parameter is missing, unknown, not finite or out of its bounds.
        """
        inputs = dict(inputs or {})
        unknown = sorted(set(params) - set(self.parameter_names))
        if unknown:
            raise ModelError(
                f"model {self.name}: unknown parameters {unknown}; "
                f"expected {list(self.parameter_names)}"
            )
        missing = [n for n in self.parameter_names if n not in params]
        if missing:
            raise ModelError(f"model {self.name}: missing parameters {missing}")
        unknown = sorted(set(inputs) - set(self.input_names))
        if unknown:
            raise ModelError(
                f"model {self.name}: unknown inputs {unknown}; expected {list(self.input_names)}"
            )
        values = []
        for p in self.parameters:
            v = float(params[p.name])
            if not (np.isfinite(v) and p.lower <= v <= p.upper):
                raise ModelError(
                    f"model {self.name}: parameter {p.name}={v} is outside [{p.lower}, {p.upper}]"
                )
            values.append(v)
        values += [float(inputs.get(i.name, i.default)) for i in self.inputs]
        return np.array(values)

    # ---- float evaluation (independent reference for the compiled code) ---------------------
    def _float_namespaces(self, y=None, theta=None):
        y = np.ones(len(self.states)) if y is None else y
        if theta is None:
            theta = np.array([1.0] * len(self.parameters) + [i.default for i in self.inputs])
        n_p = len(self.parameters)
        s = SimpleNamespace(**dict(zip(self.state_names, map(float, y), strict=True)))
        p = SimpleNamespace(**dict(zip(self.parameter_names, map(float, theta[:n_p]), strict=True)))
        u = SimpleNamespace(**dict(zip(self.input_names, map(float, theta[n_p:]), strict=True)))
        return s, p, u

    def evaluate_rhs(self, y: np.ndarray, theta: np.ndarray) -> np.ndarray:
        """Evaluate f(y, theta) in plain Python floats (slow; for checks and references)."""
        out = self.rhs(*self._float_namespaces(y, theta), FLOAT_MATH)
        return np.array([out[n] for n in self.state_names], dtype=float)

    def evaluate_initial(self, theta: np.ndarray) -> np.ndarray:
        """Evaluate y0(theta) in plain Python floats."""
        _, p, u = self._float_namespaces(None, theta)
        out = self.initial(p, u, FLOAT_MATH)
        return np.array([out[n] for n in self.state_names], dtype=float)
