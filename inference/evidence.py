"""Evidence: the log marginal likelihood of a fitted hypothesis, with its error, and Bayes factors.

Two estimators of ``log p(y | H) = log ∫ p(y | θ, H) p(θ | H) dθ``:

- **Bridge sampling** on the NUTS draws (Meng & Wong 1996; the iterative scheme and error
  measure of Gronau et al. 2017, J Math Psychol 81:80, as in the R package ``bridgesampling``):
  the draws are mapped to the sampler's unconstrained space, the first half of every chain fits a
  multivariate normal proposal, and the second half and as many proposal draws enter the
  fixed-point iteration. The standard error of the log estimate is the square root of the
  relative mean-squared error of Frühwirth-Schnatter (2004), with the autocorrelation of the
  MCMC half taken into account through its effective sample size. It costs one log-density
  evaluation (no gradient) per posterior draw.
- **Sequential Monte Carlo** (``pm.sample_smc``, no gradient needed): independent runs, each with
  its own estimate; the estimate is their mean and the error their standard error.

For nested hypotheses that differ by one parameter held at a value (``r = 0`` against ``r``
free), :func:`savage_dickey` gives the Bayes factor from the wider fit alone, as a cross-check.

Marginal likelihoods depend on the priors far more than predictive comparisons do: a vague
prior on a parameter the data ignore lowers the evidence without changing the fit.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import arviz as az
import numpy as np
import pymc as pm
import pytensor
import pytensor.tensor as pt
import scipy.linalg
import scipy.stats
import xarray as xr
from pytensor.graph.traversal import ancestors
from scipy.special import logsumexp

from models import ModelError, Prior

from .fold import FOLD_VARIABLE
from .loo import quiet_psis
from .priors import LINKS, prior_kind, unconstrained

__all__ = ["EVIDENCE_METHODS", "Evidence", "LogDensity", "SavageDickey", "bridge_sampling",
           "log_marginal_likelihood", "savage_dickey", "savage_dickey_undefined", "smc_evidence"]

EVIDENCE_METHODS = ("bridge", "smc")


@dataclass(frozen=True)
class Evidence:
    """A log marginal likelihood estimate.

    Attributes
    ----------
    log_ml : float
        Estimated log marginal likelihood (natural log, density of the observed log values).
    se : float
        Its standard error (for bridge sampling: the relative error of the marginal likelihood,
        which is the error of its log to first order).
    method : str
        ``"bridge"`` or ``"smc"``.
    n_draws : int
        Posterior draws in the iterative scheme (bridge) or particles per run (SMC).
    iterations : int
        Fixed-point iterations (bridge) or independent runs (SMC).
    converged : bool
        Whether the bridge iteration met its tolerance.
    """

    log_ml: float
    se: float
    method: str
    n_draws: int
    iterations: int
    converged: bool = True

    def to_dict(self) -> dict:
        """Plain data for JSON."""
        return {"log_ml": _finite_or_none(self.log_ml), "se": _finite_or_none(self.se),
                "method": self.method, "n_draws": self.n_draws, "iterations": self.iterations,
                "converged": self.converged}


def _finite_or_none(value: float) -> float | None:
    return float(value) if value is not None and np.isfinite(value) else None


# --------------------------------------------------------------------------------------------
# The unnormalised posterior on the unconstrained space
# --------------------------------------------------------------------------------------------
class LogDensity:
    """The log density of a PyMC model on its unconstrained space, one point or many draws.

    Parameters
    ----------
    pm_model
        A PyMC model (e.g. from :func:`inference.build.build_model`).

    Notes
    -----
    ``log_posterior`` is the joint log density of data and parameters including the log-Jacobian
    of the transforms (the sampler's target); ``log_likelihood`` is the log density of the
    observed variables alone. Both are compiled once (PyTensor's default C backend, cached on
    disk), so evaluating thousands of points is cheap. Where the model samples a flip-flop pair
    folded (``pm_model.fold``), ``log_posterior`` is that of the declared model at the ordering
    as given (its prior in the fold's coordinates: 2 p_v(v(u)), with the same normalising
    constant): the sampler's symmetric target plus log 2 and the log probability of keeping that
    ordering (:meth:`inference.fold.Fold.keep_probability`). :func:`inference.fold.resolve` gives
    a fit's stored draws this distribution.
    """

    def __init__(self, pm_model: pm.Model) -> None:
        self.model = pm_model
        self.value_vars = list(pm_model.value_vars)
        point = pm_model.initial_point()
        self.names = [v.name for v in self.value_vars]
        self.shapes = [np.shape(point[n]) for n in self.names]
        self.sizes = [int(np.prod(s, dtype=int)) for s in self.shapes]
        self.offsets = np.concatenate([[0], np.cumsum(self.sizes)]).astype(int)
        self.dim = int(self.offsets[-1])
        self._fn = pm_model.compile_fn(
            [pm_model.logp(jacobian=True), pm_model.logp(vars=pm_model.observed_RVs)],
            inputs=self.value_vars, point_fn=False, on_unused_input="ignore",
        )
        self._forward = self._compile_forward()
        self.fold = getattr(pm_model, "fold", None)

    def _compile_forward(self):
        """Compile constrained draws (any leading batch dimensions) -> unconstrained values."""
        model = self.model
        inputs, outputs, self._rv_names = [], [], []
        for value_var in self.value_vars:
            rv = model.values_to_rvs[value_var]
            x = pt.tensor(f"{rv.name}_draws", dtype="float64", shape=(None,) * (rv.ndim + 2))
            transform = model.rvs_to_transforms.get(rv)
            y = x if transform is None else transform.forward(x, *rv.owner.inputs)
            depends = set(ancestors([y])) & set(model.basic_RVs)
            if depends:
                raise NotImplementedError(
                    f"the transform of {rv.name} depends on other random variables "
                    f"({sorted(v.name for v in depends)}); not supported"
                )
            inputs.append(x)
            outputs.append(y)
            self._rv_names.append(rv.name)
        return pytensor.function(inputs, outputs, on_unused_input="ignore")

    def unconstrained(self, posterior: xr.Dataset) -> np.ndarray:
        """Map a posterior (chain, draw, ...) of the model's variables to (chain, draw, dim)."""
        missing = [n for n in self._rv_names if n not in posterior]
        if missing:
            raise ModelError(f"the posterior lacks the model's variables {missing}")
        arrays = [np.asarray(posterior[n].values, dtype=float) for n in self._rv_names]
        values = self._forward(*arrays)
        chains, draws = arrays[0].shape[:2]
        return np.concatenate([v.reshape(chains, draws, -1) for v in values], axis=-1)

    def _point(self, x: np.ndarray) -> list[np.ndarray]:
        return [x[a:b].reshape(s) for a, b, s in zip(self.offsets[:-1], self.offsets[1:], self.shapes,
                                                         strict=True)]

    def index(self, name: str) -> slice:
        """Where a value variable (e.g. ``"r_logodds__"``) sits in the flat vector."""
        i = self.names.index(name)
        return slice(int(self.offsets[i]), int(self.offsets[i + 1]))

    def value_name(self, rv_name: str) -> str:
        """Return the value variable of a random variable (``"r"`` -> ``"r_logodds__"``).

        Raises
        ------
        ModelError
            ``rv_name`` is not a free variable (e.g. a rate of a flip-flop pair, :mod:`inference.fold`).
        """
        rv = self.model.named_vars.get(rv_name)
        if rv not in self.model.rvs_to_values:
            raise ModelError(f"{rv_name} is not a free variable of the model (free: "
                             f"{[v.name for v in self.model.free_RVs]})")
        return self.model.rvs_to_values[rv].name

    def evaluate(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Log posterior (with Jacobian) and log likelihood at points ``x`` (..., dim).

        A point where the model cannot be evaluated (a failed ODE solve, a value outside the
        support) gets ``-inf``.
        """
        x = np.asarray(x, dtype=float)
        flat = x.reshape(-1, self.dim)
        logp = np.empty(len(flat))
        loglik = np.empty(len(flat))
        for i, point in enumerate(flat):
            a, b = self._fn(*self._point(point))
            logp[i], loglik[i] = float(a), float(b)
        if self.fold is not None:
            with np.errstate(divide="ignore"):
                logp += np.log(2 * self.fold.keep_probability(flat[:, self.index(FOLD_VARIABLE)]))
        logp[~np.isfinite(logp)] = -np.inf
        loglik[~np.isfinite(loglik)] = -np.inf
        return logp.reshape(x.shape[:-1]), loglik.reshape(x.shape[:-1])


# --------------------------------------------------------------------------------------------
# Bridge sampling
# --------------------------------------------------------------------------------------------
def _ess(draws: np.ndarray) -> np.ndarray:
    """Bulk effective sample size of (chain, draw, dim) draws, per dimension (ArviZ)."""
    ess = az.ess(az.convert_to_dataset({"x": draws}))["x"].values
    return np.where(np.isfinite(ess), ess, draws.shape[0] * draws.shape[1])


def _log_mvn(x: np.ndarray, mean: np.ndarray, chol: np.ndarray) -> np.ndarray:
    z = scipy.linalg.solve_triangular(chol, (x - mean).T, lower=True)
    return (-0.5 * np.sum(z**2, axis=0) - np.sum(np.log(np.diag(chol)))
            - 0.5 * len(mean) * math.log(2 * math.pi))


def bridge_sampling(
    density: LogDensity,
    draws: np.ndarray,
    *,
    seed: int = 0,
    tol: float = 1e-10,
    max_iterations: int = 1000,
) -> Evidence:
    """Log marginal likelihood by bridge sampling with a normal proposal (Gronau et al. 2017).

    Parameters
    ----------
    density
        The model's log density.
    draws
        Posterior draws on the unconstrained space, shape (chain, draw, dim) (from
        :meth:`LogDensity.unconstrained`).
    seed
        Seeds the proposal draws.
    tol, max_iterations
        Stop the fixed-point iteration when the log estimate changes by less than ``tol``.

    Returns
    -------
    Evidence
        ``se`` is the square root of the approximate relative mean-squared error
        (Frühwirth-Schnatter 2004), with the spectral density at zero of the posterior half
        taken as its integrated autocorrelation time (draws / ESS).

    Raises
    ------
    ModelError
        Too few draws: each half needs more draws than the model has unconstrained dimensions.
    """
    draws = np.asarray(draws, dtype=float)
    chains, n_draws, dim = draws.shape
    half = n_draws // 2
    fit_part, iter_part = draws[:, :half], draws[:, half:]
    n1 = iter_part.shape[0] * iter_part.shape[1]
    if chains * half <= dim + 1:
        raise ModelError(f"bridge sampling needs more than {dim + 1} draws in each half of the chains "
                         f"(the model has {dim} unconstrained dimensions); got {chains * half}")
    n2 = n1
    flat_fit = fit_part.reshape(-1, dim)
    mean = flat_fit.mean(axis=0)
    cov = np.atleast_2d(np.cov(flat_fit, rowvar=False))
    cov = cov + np.eye(dim) * 1e-10 * max(1.0, float(np.max(np.diag(cov))))
    chol = np.linalg.cholesky(cov)
    rng = np.random.default_rng(seed)
    proposal = mean + rng.standard_normal((n2, dim)) @ chol.T
    flat_iter = iter_part.reshape(-1, dim)
    q11, _ = density.evaluate(flat_iter)  # unnormalised posterior at posterior draws
    q12, _ = density.evaluate(proposal)  # ... at proposal draws
    q21 = _log_mvn(flat_iter, mean, chol)  # proposal density at posterior draws
    q22 = _log_mvn(proposal, mean, chol)
    l1, l2 = q11 - q21, q12 - q22
    # Weights use the effective size of the MCMC half (bridgesampling's default, use_neff=TRUE).
    n_eff = float(np.median(_ess(iter_part)))
    s1, s2 = n_eff / (n_eff + n2), n2 / (n_eff + n2)
    lstar = float(np.median(l1[np.isfinite(l1)]))
    log_r, converged, iterations = 0.0, False, 0
    log_s1, log_s2 = math.log(s1), math.log(s2)
    for iterations in range(1, max_iterations + 1):  # noqa: B007 (the count is reported)
        numerator = logsumexp((l2 - lstar) - np.logaddexp(log_s1 + l2 - lstar, log_s2 + log_r)) - math.log(n2)
        denominator = logsumexp(-np.logaddexp(log_s1 + l1 - lstar, log_s2 + log_r)) - math.log(n1)
        new = numerator - denominator
        done = abs(new - log_r) < tol
        log_r = new
        if done:
            converged = True
            break
    log_ml = log_r + lstar
    se = _bridge_error(l1, l2, log_ml, n1, n2, iter_part.shape[:2])
    return Evidence(float(log_ml), float(se), "bridge", n1, iterations, converged)


def _bridge_error(l1, l2, log_ml, n1, n2, shape) -> float:
    """Approximate relative mean-squared error of the bridge estimate (Frühwirth-Schnatter 2004)."""
    s1, s2 = n1 / (n1 + n2), n2 / (n1 + n2)
    with np.errstate(over="ignore", under="ignore"):
        f1 = 1.0 / (s1 + s2 * np.exp(-(l2 - log_ml)))  # at proposal draws
        f2 = 1.0 / (s1 * np.exp(l1 - log_ml) + s2)  # at posterior draws
    term1 = np.var(f1, ddof=1) / np.mean(f1) ** 2 / n2
    if np.var(f2) > 0:
        tau = n1 / float(_ess(f2.reshape(*shape, 1))[0])
    else:
        tau = 1.0
    term2 = tau * np.var(f2, ddof=1) / np.mean(f2) ** 2 / n1
    return math.sqrt(term1 + term2)


# --------------------------------------------------------------------------------------------
# Sequential Monte Carlo
# --------------------------------------------------------------------------------------------
def smc_evidence(pm_model: pm.Model, *, draws: int = 1000, runs: int = 4, seed: int = 0,
                 progress: bool = False) -> Evidence:
    """Log marginal likelihood by sequential Monte Carlo (``pm.sample_smc``), error from runs.

    Parameters
    ----------
    pm_model
        The PyMC model.
    draws
        Particles per run.
    runs
        Independent runs (SMC chains); at least 2 for an error estimate.
    seed
        Seeds the runs.
    progress
        Show the progress bar.

    Returns
    -------
    Evidence
        The mean of the runs' log estimates and its standard error (sd / sqrt(runs)).
    """
    if runs < 2:
        raise ModelError(f"SMC needs at least 2 runs for an error estimate, got {runs}")
    with pm_model:
        idata = pm.sample_smc(draws=draws, chains=runs, cores=1, random_seed=seed,
                              progressbar=progress, compute_convergence_checks=False)
    per_run = []
    for chain in idata.sample_stats["log_marginal_likelihood"].values:
        finite = [float(v) for v in np.ravel(chain) if v is not None and np.isfinite(float(v))]
        per_run.append(finite[-1] if finite else np.nan)
    per_run = np.array(per_run)
    return Evidence(float(np.mean(per_run)), float(np.std(per_run, ddof=1) / math.sqrt(runs)), "smc",
                    draws, runs, bool(np.all(np.isfinite(per_run))))


# --------------------------------------------------------------------------------------------
# Savage-Dickey
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class SavageDickey:
    """The Bayes factor for ``parameter = value`` (null) against ``parameter`` free.

    Attributes
    ----------
    log_bf01 : float
        log p(y | null) - log p(y | free).
    se : float
        Monte Carlo standard error of ``log_bf01`` (delta method, effective sample size of the
        weights).
    pareto_k : float
        Pareto shape of the importance weights; above 0.7 the estimate is unreliable.
    """

    parameter: str
    value: float
    log_bf01: float
    se: float
    pareto_k: float
    n_draws: int

    def to_dict(self) -> dict:
        """Plain data for JSON."""
        return {"parameter": self.parameter, "value": self.value,
                "log_bf01": _finite_or_none(self.log_bf01), "se": _finite_or_none(self.se),
                "pareto_k": _finite_or_none(self.pareto_k), "n_draws": self.n_draws}


def _scipy_prior(prior: Prior):
    return prior_kind(prior).scipy(prior)


# Scale of the importance density's sd relative to the conditional normal of the draws.
_NARROWING = 0.8


def _log_jacobian(link: str, x: np.ndarray) -> np.ndarray:
    """Return log |dx/du| for the parameter's unconstrained coordinate u (logit, log or identity)."""
    return LINKS[link].log_jacobian(x)


def _conditional_normal(u: np.ndarray, others: np.ndarray) -> tuple[np.ndarray, float]:
    """Mean and sd of u given the other coordinates: linear regression on the posterior draws.

    This is the conditional of a multivariate normal fitted to the draws; it follows the posterior
    correlation between the tested parameter and the rest (r with K_C or k_T), which a marginal
    density cannot, and so keeps the importance weights light-tailed.
    """
    n = len(u)
    if others.shape[1] == 0 or n <= others.shape[1] + 10:  # nothing or too little to regress on
        return np.full(n, u.mean()), float(u.std(ddof=1))
    design = np.column_stack([np.ones(n), others - others.mean(axis=0)])
    gram = design.T @ design
    ridge = 1e-8 * np.trace(gram) / design.shape[1]
    coef = np.linalg.solve(gram + ridge * np.eye(design.shape[1]), design.T @ u)
    mean = design @ coef
    return mean, float(np.sqrt(np.sum((u - mean) ** 2) / (n - design.shape[1])))


def savage_dickey_undefined(parameter: str, value: float, prior: Prior) -> str | None:
    """Say in one line why the Savage-Dickey ratio is not computed at ``value``; None when it is.

    The ratio p(value | y) / p(value) needs a positive prior density at an interior point of the
    prior's support. At a bound such as r = 0 under Beta(2, 5) both densities vanish (0/0), and
    draws near the edge of the support are too few to estimate the limit: the estimate is then
    dominated by a handful of importance weights (Pareto k far above 0.7) and can be wrong by
    tens of log units. Bridge sampling of both models has no such limit.
    """
    distribution = _scipy_prior(prior)
    lower, upper = distribution.support()
    if not lower < value < upper:
        where = "on the boundary of" if value in (lower, upper) else "outside"
        return (f"{parameter} = {value:g} lies {where} the support of its prior {prior.describe()}, so "
                f"the density ratio p({parameter} | y) / p({parameter}) is 0/0 there and cannot be estimated "
                "from draws; the bridge-sampling Bayes factor stands alone")
    if not distribution.pdf(value) > 0:
        return (f"the prior {prior.describe()} of {parameter} has zero density at {value:g}, so the ratio "
                "is 0/0 there; the bridge-sampling Bayes factor stands alone")
    return None


def savage_dickey(density: LogDensity, posterior: xr.Dataset, parameter: str, value: float,
                  prior: Prior) -> SavageDickey:
    """Savage-Dickey density ratio for ``parameter = value``, from the fit with the parameter free.

    The ratio p(value | y) / p(value) of the marginal posterior and prior densities is the Bayes
    factor of the null (parameter held at ``value``, other priors unchanged) against the free
    model. It is defined only where the prior density is positive inside its support
    (:func:`savage_dickey_undefined` says why otherwise). The posterior density is estimated by
    importance-weighted marginal density estimation (Chen 1994; Verdinelli & Wasserman 1995), on
    the parameter's unconstrained coordinate u, with phi the other coordinates::

        BF01 = E_post[ p(y | value, phi) / p(y | u, phi) * w(u | phi) / p(u) ]

    exact for any conditional density ``w`` normalised in u; here the normal conditional of the
    draws, narrowed by ``_NARROWING`` so that the weights stay bounded where the posterior's tails
    are lighter than normal. The weights' Pareto k says whether the estimate can be trusted.

    Parameters
    ----------
    density
        Log density of the model with the parameter free (shared by all subjects).
    posterior
        Its posterior draws (the InferenceData's ``posterior`` group).
    parameter, value
        The tested parameter and its null value.
    prior
        The parameter's prior in the free model.

    Returns
    -------
    SavageDickey

    Raises
    ------
    ModelError
        The null value is on the boundary of (or outside) the prior's support or has zero prior
        density there; or the parameter is not a scalar shared by all subjects.
    """
    reason = savage_dickey_undefined(parameter, value, prior)
    if reason is not None:
        raise ModelError(f"Savage-Dickey ratio not computed: {reason}")
    draws = density.unconstrained(posterior)
    x = np.asarray(posterior[parameter].values, dtype=float)
    if x.shape != draws.shape[:2]:
        raise ModelError(f"Savage-Dickey needs a scalar parameter shared by all subjects; "
                         f"{parameter} has shape {x.shape[2:]}")
    where = density.index(density.value_name(parameter))
    rv = density.model[parameter]
    transform = density.model.rvs_to_transforms.get(rv)
    null_value = np.array(value, dtype=float)
    if transform is not None:
        with np.errstate(divide="ignore"):
            null_value = transform.forward(pt.as_tensor(null_value), *rv.owner.inputs).eval()
    _, loglik = density.evaluate(draws)
    null_draws = draws.copy()
    null_draws[..., where] = null_value
    _, loglik_null = density.evaluate(null_draws)
    flat = draws.reshape(-1, density.dim)
    u = flat[:, where.start]
    mean, sd = _conditional_normal(u, np.delete(flat, np.arange(where.start, where.stop), axis=1))
    x = x.ravel()
    with np.errstate(divide="ignore", invalid="ignore"):
        log_prior_u = _scipy_prior(prior).logpdf(x) + _log_jacobian(unconstrained(prior).link, x)
        log_w = ((loglik_null - loglik).ravel() + scipy.stats.norm.logpdf(u, mean, _NARROWING * sd)
                 - log_prior_u)
    log_w = np.where(np.isfinite(log_w), log_w, -np.inf)
    n = log_w.size
    log_bf = float(logsumexp(log_w) - math.log(n))
    weights = np.exp(log_w - np.max(log_w)).reshape(draws.shape[:2])
    ess = float(_ess(weights[..., None])[0]) if np.var(weights) > 0 else n
    se = float(np.std(weights, ddof=1) / np.mean(weights) / math.sqrt(max(ess, 1.0)))
    with quiet_psis():  # ArviZ warns when k is high; we report k ourselves.
        _, k = az.psislw(log_w[np.isfinite(log_w)])
    return SavageDickey(parameter, float(value), log_bf, se, float(k), n)


# --------------------------------------------------------------------------------------------
# A fitted result
# --------------------------------------------------------------------------------------------
def log_marginal_likelihood(idata: az.InferenceData, method: str = "bridge", *,
                            density: LogDensity | None = None, seed: int = 0,
                            smc_draws: int = 1000, smc_runs: int = 4) -> Evidence:
    """Log marginal likelihood of a fitted result (rebuilt from what the result stores).

    Parameters
    ----------
    idata
        A result of :func:`inference.fit.fit` (or a loaded result file).
    method
        ``"bridge"`` (on the result's NUTS draws; cheap) or ``"smc"`` (new sampling runs).
    density
        The model's log density, if already compiled.
    seed
        Seeds the proposal draws (bridge) or the runs (SMC).
    smc_draws, smc_runs
        Particles per run and runs, for SMC.

    Returns
    -------
    Evidence
    """
    if method not in EVIDENCE_METHODS:
        raise ModelError(f"evidence method must be one of {list(EVIDENCE_METHODS)}, got {method!r}")
    if density is None:
        density = LogDensity(rebuild_model(idata))
    if method == "smc":
        return smc_evidence(density.model, draws=smc_draws, runs=smc_runs, seed=seed)
    return bridge_sampling(density, density.unconstrained(idata.posterior), seed=seed)


def rebuild_model(idata: az.InferenceData) -> pm.Model:
    """Rebuild the PyMC model a result was fitted with (same model, dataset and options)."""
    from .build import build_model
    from .record import read_record

    record = read_record(idata)
    return build_model(record.ode_model, record.dataset, record.options)
