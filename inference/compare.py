"""Hypothesis comparison: which hypothesis about cytokine balance the data support.

Given fitted results (or a dataset and :class:`~inference.hypotheses.Hypothesis` objects, which
are fitted first, one after another), :func:`compare` reports

- **prediction**, with ArviZ: PSIS-LOO per observation (elpd, its SE, differences to the best
  hypothesis with the SE of the difference, Pareto k), stacking weights and, for cohorts,
  leave-one-subject-out (PSIS on the pointwise log-likelihood summed per subject: how well a
  hypothesis predicts a new subject's whole time course). Where Pareto k is too high for the
  importance-sampling estimate, the flagged observations or subjects are refitted exactly, up to
  ``refit_bad_k`` of each per hypothesis, as in ``az.reloo``;
- **evidence**: each hypothesis' log marginal likelihood with its error (bridge sampling on the
  NUTS draws, or SMC), log Bayes factors against the best, and the Savage-Dickey density ratio
  for nested pairs (a parameter held at a value against the same parameter free) as a
  cross-check (:mod:`inference.evidence`);
- **a verdict** in plain language: a ranking (hypotheses whose sampling diagnostics failed are
  marked and ranked after the sound ones), what the data separate and what they do not (two
  hypotheses within 2 SE of each other are not separated), and warnings.

:meth:`Comparison.write` saves ``comparison.json`` (machine-readable) and ``comparison.html``
(the table, ArviZ's compare plot, pointwise elpd differences per subject and analyte, and
posterior-predictive plots of the top two hypotheses side by side).
"""

from __future__ import annotations

import base64
import contextlib
import io
import json
import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path
from typing import Any

import arviz as az
import numpy as np
import pandas as pd
import scipy.stats
import xarray as xr
from scipy.special import expit, logsumexp

from models import ModelError, OdeModel
from models.solvers import kernel, pack_events, pack_times

from .build import ModelOptions, subject_events, subject_inputs
from .data import DataError, Dataset
from .diagnostics import FAIL, PASS, WARN, Thresholds, diagnose
from .evidence import (
    EVIDENCE_METHODS,
    Evidence,
    LogDensity,
    bridge_sampling,
    rebuild_model,
    savage_dickey_undefined,
    smc_evidence,
)
from .evidence import savage_dickey as savage_dickey_ratio
from .files import write_atomically
from .fit import SAMPLERS, fit, load_result, result_dataset, result_model, result_options, save_result
from .hypotheses import Hypothesis, check_hypotheses
from .priors import unconstrained

__all__ = ["PARETO_K_THRESHOLD", "Comparison", "check_diagnostics", "compare",
           "fit_hypotheses", "heldout_log_likelihood", "rank_hypotheses", "refit_observation",
           "refit_subject", "render_comparison", "subject_theta", "write_verdict"]

#: Pareto k above which PSIS estimates are not trusted (ArviZ lowers it for few draws).
PARETO_K_THRESHOLD = 0.7
#: Two hypotheses whose elpd differ by less than this many SE of the difference are not separated.
SEPARATION_SE = 2.0
#: Defensive share of the standard normal in the importance proposal for a new subject's effects.
_DEFENSIVE = 0.1
JSON_NAME = "comparison.json"
HTML_NAME = "comparison.html"


# --------------------------------------------------------------------------------------------
# Diagnostics
# --------------------------------------------------------------------------------------------
def check_diagnostics(idata: az.InferenceData, thresholds: Thresholds | None = None) -> dict[str, Any]:
    """Summarise the shared diagnostics verdict (:func:`inference.diagnostics.diagnose`) of a fit.

    Pareto k is left out: the comparison reports it per hypothesis itself. The status is the one
    truth about a fit: ``"pass"`` (every check clean), ``"warn"`` (usable with care; the verdict
    says so first) or ``"fail"`` (ranked after the sound hypotheses).

    Returns
    -------
    dict
        ``status``, ``problems`` (failed checks in words), ``cautions`` (warned checks in words),
        ``flagged`` (check name to its headline number, for the checks that did not pass),
        ``max_rhat``, ``min_ess_bulk``, ``divergences`` and ``solver_failures``.
    """
    verdict = diagnose(idata, thresholds=thresholds)
    checks = [c for c in verdict if c.name != "pareto_k"]
    problems = [f"{c.title}: {c.message}" for c in checks if c.status == FAIL]
    cautions = [f"{c.title}: {c.message}" for c in checks if c.status == WARN]

    def value(name):
        v = verdict[name].value
        return float(v) if v is not None else float("nan")

    return {"status": FAIL if problems else WARN if cautions else PASS,
            "problems": problems, "cautions": cautions,
            "flagged": {c.name: c.message.split(";")[0] for c in checks if c.status != PASS},
            "max_rhat": value("rhat"), "min_ess_bulk": value("ess_bulk"),
            "divergences": int(np.nan_to_num(value("divergences"))),
            "solver_failures": int(idata.attrs.get("solver_failures", 0))}


# --------------------------------------------------------------------------------------------
# Inputs: results by name, all fitted to the same data
# --------------------------------------------------------------------------------------------
def _named_results(results) -> dict[str, az.InferenceData]:
    if isinstance(results, Mapping):
        items = list(results.items())
    else:
        items = []
        for i, item in enumerate(results):
            if isinstance(item, az.InferenceData):
                name = item.attrs.get("hypothesis")
                if not name:
                    raise ModelError(f"result {i} has no hypothesis name: pass a dict {{name: result}}")
            else:
                name = Path(item).stem
            items.append((str(name), item))
    named: dict[str, az.InferenceData] = {}
    for name, item in items:
        if name in named:
            raise ModelError(f"two results are named {name!r}: hypothesis names must differ")
        if not isinstance(item, az.InferenceData):
            path = Path(item)
            if not path.exists():
                raise FileNotFoundError(f"{path}: no such result file")
            item = load_result(path)
        needed = (("posterior", None), ("log_likelihood", "log_y"), ("constant_data", "obs_subject"))
        for group, var in needed:
            if group not in item.groups() or (var and var not in item[group]):
                raise DataError(f"result {name!r} lacks {group}{'/' + var if var else ''}: "
                                "compare needs results written by inference.fit.fit")
        named[name] = item
    if len(named) < 2:
        raise ModelError(f"compare needs at least two hypotheses, got {len(named)}")
    reference_name, reference = next(iter(named.items()))
    for name, idata in named.items():
        if idata.attrs.get("dataset_observations") != reference.attrs.get("dataset_observations"):
            raise DataError(f"results {reference_name!r} and {name!r} were fitted to different data "
                            f"({reference.attrs.get('dataset_source')} vs "
                            f"{idata.attrs.get('dataset_source')}); "
                            "their elpd and evidence are not comparable")
    return named


# --------------------------------------------------------------------------------------------
# PSIS-LOO per observation and per subject
# --------------------------------------------------------------------------------------------
@contextlib.contextmanager
def _quiet_psis():
    """Silence what ArviZ's PSIS says that the comparison reports itself.

    ArviZ warns about high Pareto k (reported, and refitted on request, here), and its generalised
    Pareto fit lets numpy overflow or divide by zero on degenerate tails (subject-summed
    log-likelihoods spanning hundreds of nats, or a censored sample whose likelihood is 1 in
    nearly every draw); the k it returns then is large or not finite, and is reported as such.
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"(?s).*[Pp]areto.*", category=UserWarning)
        warnings.filterwarnings("ignore", category=RuntimeWarning, module=r"arviz\.stats\.stats")
        yield


def _quiet_loo(idata: az.InferenceData) -> az.ELPDData:
    with _quiet_psis():
        return az.loo(idata, pointwise=True, var_name="log_y")


def _subject_index(idata: az.InferenceData) -> tuple[np.ndarray, list[str]]:
    subjects = [str(s) for s in idata.constant_data["subject_group"].coords["subject"].values]
    return np.asarray(idata.constant_data["obs_subject"].values, dtype=int), subjects


def _per_subject(idata: az.InferenceData) -> az.InferenceData:
    """Sum the log-likelihood per subject (chain, draw, subject), for leave-subject-out."""
    index, subjects = _subject_index(idata)
    ll = idata.log_likelihood["log_y"]
    summed = np.stack([ll.values[..., index == i].sum(axis=-1) for i in range(len(subjects))], axis=-1)
    da = xr.DataArray(summed, dims=("chain", "draw", "subject"),
                      coords={"chain": ll.chain, "draw": ll.draw, "subject": subjects})
    return az.InferenceData(posterior=idata.posterior, log_likelihood=xr.Dataset({"log_y": da}))


def _threshold(elpd: az.ELPDData) -> float:
    good_k = getattr(elpd, "good_k", None)
    return min(PARETO_K_THRESHOLD, float(good_k)) if good_k is not None else PARETO_K_THRESHOLD


def _replace_pointwise(elpd: az.ELPDData, refitted: Mapping[int, float]) -> az.ELPDData:
    """Put exact leave-out values in place of PSIS estimates (the formulas of ``az.reloo``)."""
    if not refitted:
        return elpd
    new = elpd.copy()
    lppd = elpd.p_loo + elpd.elpd_loo
    loo_i = new.loo_i.copy()
    khat = new.pareto_k.copy()
    for i, value in refitted.items():
        loo_i[i] = value
        khat[i] = 0.0
    new["loo_i"] = loo_i
    new["pareto_k"] = khat
    new["elpd_loo"] = float(loo_i.values.sum())
    new["se"] = float((elpd.n_data_points * np.var(loo_i.values)) ** 0.5)
    new["p_loo"] = float(lppd - new["elpd_loo"])
    new["warning"] = bool(np.any(khat.values > _threshold(elpd)))
    return new


# --------------------------------------------------------------------------------------------
# Exact refits for high Pareto k
# --------------------------------------------------------------------------------------------
def _draws(posterior: xr.Dataset, name: str) -> np.ndarray:
    """Return a variable's draws with chain and draw flattened into the first axis."""
    values = np.asarray(posterior[name].values, dtype=float)
    return values.reshape(-1, *values.shape[2:])


def _inverse_link(link: str, eta: np.ndarray) -> np.ndarray:
    if link == "log":
        return np.exp(eta)
    if link == "logit":
        return expit(eta)
    return eta


def subject_theta(model: OdeModel, options: ModelOptions, train: Dataset, posterior: xr.Dataset,
                  subject: Dataset, z: Mapping[str, np.ndarray] | None = None) -> np.ndarray:
    """Parameter vectors (theta) of one subject, one per posterior draw of a cohort fit.

    The subject need not be in the fitted data: its group effect, its covariates (standardised
    with the fitted cohort's mean and sd, as the fit was) and its random effects ``z`` (standard
    normal values, one array per parameter with random effects, aligned with the draws) enter
    exactly as :func:`inference.build.build_model` combines them.

    Parameters
    ----------
    model, options
        The fitted model and its options.
    train
        The dataset the posterior was fitted to.
    posterior
        The fit's posterior.
    subject
        A one-subject dataset (its subject row gives group, covariates and inputs).
    z
        Random-effect values ``{parameter: array (n,)}``; n may be a multiple of the number of
        draws (draws are then repeated).

    Returns
    -------
    ndarray, shape (n, n_theta)
    """
    n_draws = posterior.sizes["chain"] * posterior.sizes["draw"]
    n = n_draws if not z else len(next(iter(z.values())))
    repeat = n // n_draws
    row = subject.subjects.iloc[0]
    groups = list(train.groups)

    def draws(name):
        return np.tile(_draws(posterior, name), (repeat, *[1] * (_draws(posterior, name).ndim - 1)))

    columns = []
    for p in model.parameters:
        name = p.name
        if name in options.fixed:
            columns.append(np.full(n, options.fixed[name]))
            continue
        structured = (name in options.random_effects or name in options.group_effects
                      or name in options.covariates)
        if not structured:
            columns.append(draws(name))
            continue
        link = unconstrained(options.priors.get(name, p.prior))
        eta = draws(f"{name}_mu")
        if name in options.group_effects and row["group"] != groups[0]:
            if row["group"] not in groups:
                raise DataError(f"subject {subject.subject_ids[0]} is in group {row['group']!r}, which the "
                                f"fitted data lack (groups {groups})")
            effect = posterior[f"{name}_group"].sel(group_effect=row["group"])
            eta = eta + np.tile(np.asarray(effect.values, float).reshape(-1), repeat)
        if name in options.covariates:
            cols = list(options.covariates[name])
            x = train.subjects[cols].to_numpy(float)
            mean, sd = x.mean(axis=0), x.std(axis=0)
            sd[sd == 0] = 1.0
            zc = (row[cols].to_numpy(float) - mean) / sd
            beta = draws(f"{name}_beta")  # (n, n_cov)
            eta = eta + beta @ zc
        if name in options.random_effects:
            eta = eta + draws(f"{name}_sd") * np.asarray(z[name] if z else 0.0)
        columns.append(_inverse_link(link.link, eta))
    inputs = subject_inputs(model, subject)[0]
    return np.column_stack(columns + [np.full(n, v) for v in inputs])


def heldout_log_likelihood(model: OdeModel, options: ModelOptions, subject: Dataset, theta: np.ndarray,
                           sigma: np.ndarray, analytes: Sequence[str],
                           observations: pd.DataFrame | None = None) -> np.ndarray:
    """Log-likelihood of a subject's observations under many parameter vectors (no PyMC).

    The same measurement model as :func:`inference.build.build_model` (log-normal or Student-t on
    the log scale, censored samples through the log-CDF), computed with the compiled solver for
    all parameter vectors in one batch.

    Parameters
    ----------
    model, options
        Model and options (likelihood, nu, solver settings).
    subject
        A one-subject dataset (its events and inputs are used).
    theta
        Parameter vectors, shape (n, n_theta).
    sigma
        Measurement sd per vector and analyte, shape (n, len(analytes)).
    analytes
        The analytes of ``sigma``'s columns.
    observations
        The observations to score (default: all of the subject's).

    Returns
    -------
    ndarray, shape (n, n_observations)
        ``-inf`` where the solver failed.
    """
    obs = subject.observations if observations is None else observations
    times = np.unique(obs["time"].to_numpy(float))
    n = len(theta)
    t_flat, row_ptr = pack_times([times] * n)
    events = subject_events(model, subject)[0]
    ev = pack_events(model, [events] * n)
    settings = options.solver
    y, _, status, _ = kernel(model, settings.method)(
        np.ascontiguousarray(theta, dtype=float), t_flat, row_ptr, ev.time, ev.kind, ev.index, ev.value,
        ev.ptr, settings.rtol, settings.atol, settings.max_steps,
    )
    states = model.observable_states()
    rows = np.searchsorted(times, obs["time"].to_numpy(float))
    observable = np.array([model.analytes.index(a) for a in obs["analyte"]])
    y = y.reshape(n, len(times), -1)
    with np.errstate(divide="ignore", invalid="ignore"):
        log_mu = np.log(y[:, rows, states[observable]])
    sd = sigma[:, [list(analytes).index(a) for a in obs["analyte"]]]
    value = np.log(obs["value"].to_numpy(float))
    if options.likelihood == "lognormal":
        dist = scipy.stats.norm(loc=log_mu, scale=sd)
    else:
        dist = scipy.stats.t(df=options.nu, loc=log_mu, scale=sd)
    censored = obs["censored"].to_numpy()
    with np.errstate(divide="ignore", invalid="ignore"):
        out = np.where(censored == "left", dist.logcdf(value),
                       np.where(censored == "right", dist.logsf(value), dist.logpdf(value)))
    out[status != 0] = -np.inf
    return np.where(np.isfinite(out), out, -np.inf)


def _refit(idata: az.InferenceData, train: Dataset, progress: bool) -> az.InferenceData:
    attrs = idata.attrs
    return fit(result_model(idata), train, result_options(idata), sampler=attrs.get("sampler", "nutpie"),
               draws=int(attrs.get("draws", 1000)), tune=int(attrs.get("tune", 1000)),
               chains=int(attrs.get("chains", 4)), target_accept=float(attrs.get("target_accept", 0.8)),
               seed=int(attrs.get("seed", 0)), progress=progress)


def _sigma(posterior: xr.Dataset) -> tuple[np.ndarray, list[str]]:
    return _draws(posterior, "sigma"), [str(a) for a in posterior["sigma"].coords["analyte"].values]


def refit_observation(idata: az.InferenceData, i: int, *, progress: bool = False) -> dict:
    """Exact leave-one-out for observation ``i``: refit without it, then score it.

    The refit uses the result's model, options and sampler settings.

    Returns
    -------
    dict
        ``observation``, ``subject``, ``elpd`` = log p(y_i | y_-i) (log mean over the refit's
        draws of the observation's likelihood) and ``integrand_pareto_k`` (see
        :func:`refit_subject`).
    """
    model, options, dataset = result_model(idata), result_options(idata), result_dataset(idata)
    obs = dataset.observations
    train = Dataset(obs.drop(index=i).reset_index(drop=True), dataset.subjects, dataset.events,
                    dataset.source)
    refit = _refit(idata, train, progress)
    subject_id = obs.at[i, "subject"]
    theta = np.asarray(refit.posterior["theta"].sel(subject=subject_id).values, float)
    theta = theta.reshape(-1, theta.shape[-1])
    sigma, analytes = _sigma(refit.posterior)
    ll = heldout_log_likelihood(model, options, dataset.select([subject_id]), theta, sigma, analytes,
                                obs.loc[[i]])[:, 0]
    elpd = float(logsumexp(ll) - math.log(len(ll)))
    return {"observation": int(i), "subject": str(subject_id), "elpd": elpd,
            "integrand_pareto_k": _integrand_k(ll)}


def refit_subject(idata: az.InferenceData, subject_id: str, *, effect_draws: int = 10, seed: int = 0,
                  progress: bool = False) -> dict:
    """Exact leave-one-subject-out: refit without the subject, then score its whole time course.

    log p(y_s | y_-s) integrates over the refit's posterior and over the new subject's random
    effects. Those standard-normal effects are drawn by importance sampling (``effect_draws`` per
    posterior draw) from a defensive mixture of a multivariate t fitted to their posterior in the
    full fit and the standard normal itself; the Pareto k of the weights says whether that
    integral can be trusted.

    Returns
    -------
    dict
        ``subject``, ``elpd`` and ``integrand_pareto_k``: the Pareto k of the Monte Carlo
        integrand (over posterior draws and effect draws); above 0.7 a few draws dominate the
        estimate, which is then noisy (more draws help).

    Raises
    ------
    DataError
        The subject is the only one of its group and the model has a group effect.
    """
    model, options, dataset = result_model(idata), result_options(idata), result_dataset(idata)
    train = dataset.select([s for s in dataset.subject_ids if s != subject_id])
    refit = _refit(idata, train, progress)
    held = dataset.select([subject_id])
    n_draws = refit.posterior.sizes["chain"] * refit.posterior.sizes["draw"]
    effects = list(options.random_effects)
    rng = np.random.default_rng(seed)
    log_w_prior = np.zeros(n_draws)
    z = None
    if effects:
        column = list(dataset.subject_ids).index(subject_id)
        full = np.column_stack([_draws(idata.posterior, f"{p}_z")[:, column] for p in effects])
        mean, cov = full.mean(axis=0), np.atleast_2d(np.cov(full, rowvar=False)) + 1e-9 * np.eye(len(effects))
        n = n_draws * effect_draws
        t_dist = scipy.stats.multivariate_t(loc=mean, shape=cov, df=4, seed=rng)
        pick = rng.random(n) < _DEFENSIVE
        sample = np.where(pick[:, None], rng.standard_normal((n, len(effects))),
                          t_dist.rvs(size=n).reshape(n, len(effects)))
        log_prior = scipy.stats.norm.logpdf(sample).sum(axis=1)
        log_q = np.logaddexp(math.log(_DEFENSIVE) + log_prior,
                             math.log1p(-_DEFENSIVE) + t_dist.logpdf(sample))
        log_w_prior = np.reshape(log_prior - log_q, n)
        z = {p: sample[:, j] for j, p in enumerate(effects)}
    theta = subject_theta(model, options, train, refit.posterior, held, z)
    sigma, analytes = _sigma(refit.posterior)
    sigma = np.tile(sigma, (len(theta) // n_draws, 1))
    ll = heldout_log_likelihood(model, options, held, theta, sigma, analytes).sum(axis=1)
    log_w = ll + log_w_prior
    return {"subject": str(subject_id), "elpd": float(logsumexp(log_w) - math.log(len(log_w))),
            "integrand_pareto_k": _integrand_k(log_w)}


def _integrand_k(log_values: np.ndarray) -> float:
    """Pareto k of a Monte Carlo mean of exp(log_values): above 0.7 a few draws dominate it."""
    finite = log_values[np.isfinite(log_values)]
    if finite.size < 10 or np.ptp(finite) == 0:
        return float("nan") if finite.size < 10 else 0.0
    with _quiet_psis():
        _, k = az.psislw(finite.copy())
    return float(k)


# --------------------------------------------------------------------------------------------
# Differences, ranking and verdict
# --------------------------------------------------------------------------------------------
def _difference(a: az.ELPDData, b: az.ELPDData) -> tuple[float, float]:
    """elpd(a) - elpd(b) and its SE from the pointwise values (ArviZ's dse formula)."""
    diff = np.asarray(a.loo_i.values, float) - np.asarray(b.loo_i.values, float)
    return float(diff.sum()), float(math.sqrt(len(diff) * np.var(diff)))


def _fmt(x: float | None, digits: int = 1) -> str:
    return "n/a" if x is None or not np.isfinite(x) else f"{x:.{digits}f}"


def rank_hypotheses(elpd: Mapping[str, float], status: Mapping[str, str]) -> list[str]:
    """Best first by elpd; hypotheses whose diagnostics failed come after every sound one."""
    return sorted(elpd, key=lambda n: (status[n] == FAIL, -elpd[n]))


# What to try first when a check does not pass: one clause each, for the verdict's opening caution.
_REMEDIES = {
    "rhat": "more tuning and draws (e.g. --tune 2000 --draws 2000)",
    "ess_bulk": "more tuning and draws (e.g. --tune 2000 --draws 2000)",
    "ess_tail": "more tuning and draws (e.g. --tune 2000 --draws 2000)",
    "divergences": "a higher --target-accept (e.g. 0.99)",
    "ebfmi": "fewer or non-centred random effects",
    "treedepth": "more tuning, or fewer random effects",
    "solver_failures": "narrower priors where the ODE cannot be solved, or a larger solver max_steps",
}


def _diagnostics_caution(table: pd.DataFrame) -> str | None:
    """Open the verdict with the fits whose diagnostics are not a clean pass, and what to do."""
    flagged = [n for n in table.index if table.at[n, "diagnostics_status"] != PASS]
    if not flagged:
        return None
    fits = [f"{n} ({table.at[n, 'diagnostics_status']}: "
            f"{'; '.join(table.at[n, 'diagnostics_flagged'].values())})" for n in flagged]
    remedies = list(dict.fromkeys(_REMEDIES[c] for n in flagged for c in table.at[n, "diagnostics_flagged"]
                                  if c in _REMEDIES))
    todo = f"rerun {'it' if len(flagged) == 1 else 'them'} with {' and '.join(remedies) or 'more draws'}"
    return (f"Caution: the sampling diagnostics of {' and '.join(fits)} are not a clean pass, so the "
            f"numbers below are provisional: {todo} before acting on this comparison.")


def write_verdict(table: pd.DataFrame, savage_dickey: Sequence[dict] = (),
                  refits: Mapping[str, Mapping[str, list]] | None = None) -> tuple[str, list[str]]:
    """Write the verdict and the warnings from a comparison table (rows in ranking order).

    Uses the columns ``elpd_loo, elpd_diff, dse, weight, diagnostics_status, diagnostics_flagged,
    diagnostics_problems, diagnostics_cautions,
    n_high_k, n_observations, elpd_lso, elpd_lso_diff, elpd_lso_dse, n_high_k_lso, log_ml,
    log_ml_se, solver_failures``; ``refits`` as in :attr:`Comparison.refits`.
    """
    sentences, warns = [], []
    for n, done in (refits or {}).items():
        for level, unit in (("loo", "observation"), ("lso", "subject")):
            for r in done.get(level, []):
                if "skipped" in r:
                    warns.append(f"{n}: subject {r['subject']} was not refitted: {r['skipped']}")
                elif not r["integrand_pareto_k"] <= PARETO_K_THRESHOLD:  # NaN counts as unreliable
                    warns.append(f"{n}: the exact refit of {unit} {r.get(unit)} is a noisy Monte Carlo "
                                 f"estimate (Pareto k {r['integrand_pareto_k']:.2f} over its draws); "
                                 "more draws would firm it up.")
    names = list(table.index)
    caution = _diagnostics_caution(table)
    if caution:
        sentences.append(caution)
    sound = [n for n in names if table.at[n, "diagnostics_status"] != FAIL]
    for n in names:
        if table.at[n, "diagnostics_status"] == FAIL:
            problems = "; ".join(table.at[n, "diagnostics_problems"])
            warns.append(f"{n}: sampling diagnostics failed ({problems}); "
                         "its row is marked and ranked after the sound hypotheses; rerun it with more "
                         "tuning or draws before trusting any number of it.")
        for caution in table.at[n, "diagnostics_cautions"]:
            warns.append(f"{n}: diagnostics warn: {caution}.")
        if table.at[n, "solver_failures"]:
            warns.append(f"{n}: {int(table.at[n, 'solver_failures'])} ODE solves failed during sampling "
                         "(each rejected a proposal).")
        if table.at[n, "n_high_k"]:
            warns.append(f"{n}: {int(table.at[n, 'n_high_k'])} of {int(table.at[n, 'n_observations'])} "
                         "observations have Pareto k above the threshold: their PSIS-LOO estimates are "
                         "unreliable; refit them exactly (--refit-bad-k N) before trusting close calls.")
        if table.at[n, "n_high_k_lso"]:
            warns.append(f"{n}: {int(table.at[n, 'n_high_k_lso'])} subjects have Pareto k above the "
                         "threshold in leave-subject-out: elpd_lso is a rough estimate for them "
                         "(--refit-bad-k N refits them exactly).")
    if not sound:
        sentences.append("No hypothesis passed the sampling diagnostics, so what follows is provisional: "
                         "rerun the fits with more tuning or draws before relying on it.")
        sound = names
    best = sound[0]
    if len(sound) == 1:
        sentences.append(f"{best} is the only hypothesis whose fit passed the diagnostics.")
    else:
        second = sound[1]
        d, se = table.at[second, "elpd_diff"], table.at[second, "dse"]
        if d < SEPARATION_SE * se:
            tied = [n for n in sound[1:] if table.at[n, "elpd_diff"] < SEPARATION_SE * table.at[n, "dse"]]
            behind = " or ".join(f"{n} ({_fmt(table.at[n, 'elpd_diff'])} ± {_fmt(table.at[n, 'dse'])} "
                                 "elpd behind)" for n in tied)
            sentences.append(f"By PSIS-LOO the data do not separate {best} from {behind}: less than "
                             f"{SEPARATION_SE:g} SE apart, so no winner can be named from these data.")
        else:
            sentences.append(f"By PSIS-LOO, {best} predicts best, ahead of {second} by {_fmt(d)} ± "
                             f"{_fmt(se)} elpd (more than 2 SE).")
        weights = ", ".join(f"{n} {table.at[n, 'weight']:.2f}" for n in names)
        sentences.append(f"Stacking weights: {weights}.")
    if "elpd_lso" in table and np.isfinite(table["elpd_lso"].astype(float)).all() and len(sound) > 1:
        lso_best = max(sound, key=lambda n: table.at[n, "elpd_lso"])
        rough = int(table.loc[sound, "n_high_k_lso"].sum())
        caveat = f" (roughly: {rough} subject estimates have high Pareto k)" if rough else ""
        if lso_best == best:
            agree = "agrees"
        else:  # differences are to the LOO best: a negative one favours lso_best
            d, se = -table.at[lso_best, "elpd_lso_diff"], table.at[lso_best, "elpd_lso_dse"]
            agree = (f"does not separate {best} from {lso_best} ({lso_best} ahead by {_fmt(d)} ± {_fmt(se)})"
                     if d < SEPARATION_SE * se else f"prefers {lso_best} by {_fmt(d)} ± {_fmt(se)}")
        sentences.append(f"Leave-one-subject-out (predicting a new subject's whole course) {agree}{caveat}.")
    finite = [n for n in sound if np.isfinite(table.at[n, "log_ml"])]
    if len(finite) > 1:
        by_ev = sorted(finite, key=lambda n: -table.at[n, "log_ml"])
        top, runner = by_ev[0], by_ev[1]
        log_bf = table.at[top, "log_ml"] - table.at[runner, "log_ml"]
        se = math.hypot(table.at[top, "log_ml_se"], table.at[runner, "log_ml_se"])
        if log_bf < SEPARATION_SE * se:
            sentences.append(f"The evidence error is too large to rank {top} and {runner} by Bayes factor "
                             f"(log BF {_fmt(log_bf, 2)} ± {_fmt(se, 2)}).")
            warns.append(f"Evidence error too large to rank {top} and {runner}: log BF {_fmt(log_bf, 2)} "
                         f"± {_fmt(se, 2)}; use more draws (or SMC).")
        else:
            sentences.append(f"By marginal likelihood, {top} is favoured over {runner} with log Bayes factor "
                             f"{_fmt(log_bf, 2)} ± {_fmt(se, 2)}"
                             + ("." if top == best else ", unlike LOO (evidence weighs the priors too)."))
    for n in names:
        if np.isfinite(table.at[n, "log_ml_se"]) and table.at[n, "log_ml_se"] > 0.5:
            warns.append(f"{n}: the log marginal likelihood has a large error "
                         f"(± {_fmt(table.at[n, 'log_ml_se'], 2)}).")
    for sd in savage_dickey:
        line = (f"Savage-Dickey cross-check, {sd['null']} ({sd['parameter']} = {sd['value']:g}) against "
                f"{sd['alternative']}: ")
        if sd["not_computed"]:
            sentences.append(line + f"not computed: {sd['not_computed']}.")
            continue
        line += f"log BF01 {_fmt(sd['log_bf01'], 2)} ± {_fmt(sd['se'], 2)}"
        if sd.get("bridge_log_bf01") is not None:
            line += f" (bridge sampling: {_fmt(sd['bridge_log_bf01'], 2)} ± {_fmt(sd['bridge_se'], 2)})"
            gap = abs(sd["log_bf01"] - sd["bridge_log_bf01"])
            tolerance = 3 * math.hypot(sd["se"] or 0.0, sd["bridge_se"] or 0.0) + 0.1
            if np.isfinite(gap) and gap > tolerance:
                warns.append(f"Savage-Dickey and bridge sampling disagree on {sd['null']} vs "
                             f"{sd['alternative']} by {_fmt(gap, 2)} (more than 3 SE).")
        sentences.append(line + ".")
        if sd["pareto_k"] is None or not sd["pareto_k"] <= PARETO_K_THRESHOLD:
            warns.append(f"The Savage-Dickey weights for {sd['null']} have Pareto k "
                         f"{_fmt(sd['pareto_k'], 2)}: the cross-check is unreliable.")
    return " ".join(sentences), warns


# --------------------------------------------------------------------------------------------
# The comparison
# --------------------------------------------------------------------------------------------
@dataclass
class Comparison:
    """The outcome of :func:`compare`.

    Attributes
    ----------
    results : dict of str to InferenceData
        The fits, by hypothesis name.
    table : pandas.DataFrame
        One row per hypothesis in ranking order (see :meth:`to_dict` for the columns).
    ranking : list of str
        Hypothesis names, best first; hypotheses whose diagnostics failed come last.
    verdict : str
        The comparison in words.
    warnings : list of str
        Plain-language warnings.
    loo, lso : dict of str to ELPDData
        PSIS-LOO per observation and per subject (after exact refits).
    evidence : dict of str to Evidence or None
    savage_dickey : list of dict
    refits : dict
        Exact refits per hypothesis: ``{"loo": [...], "lso": [...]}``.
    """

    results: dict[str, az.InferenceData]
    table: pd.DataFrame
    ranking: list[str]
    verdict: str
    warnings: list[str]
    loo: dict[str, az.ELPDData]
    lso: dict[str, az.ELPDData]
    evidence: dict[str, Evidence | None]
    savage_dickey: list[dict]
    refits: dict[str, dict[str, list]]
    hypotheses: dict[str, dict]
    settings: dict[str, Any]
    dataset: Dataset = field(repr=False)
    arviz_table: pd.DataFrame = field(repr=False, default_factory=pd.DataFrame)

    def pointwise(self) -> pd.DataFrame:
        """Pointwise elpd_loo per observation (rows) and hypothesis (columns), with subject, analyte, time."""
        frame = self.dataset.observations[["subject", "time", "analyte", "censored"]].copy()
        for name in self.ranking:
            frame[name] = np.asarray(self.loo[name].loo_i.values, float)
        return frame

    def differences(self, better: str, worse: str) -> pd.DataFrame:
        """Sum the pointwise elpd differences ``better - worse`` per subject (rows) and analyte."""
        frame = self.pointwise()
        frame["diff"] = frame[better] - frame[worse]
        table = frame.pivot_table(index="subject", columns="analyte", values="diff", aggfunc="sum",
                                  sort=False)
        return table.reindex(index=list(self.dataset.subject_ids),
                             columns=[a for a in self.dataset.analytes if a in table.columns])

    def to_dict(self) -> dict[str, Any]:
        """Return the machine-readable comparison (what ``comparison.json`` holds)."""
        rows = {}
        for name in self.ranking:
            row = self.table.loc[name]
            rows[name] = {
                "rank": int(row["rank"]),
                "model": self.hypotheses[name]["model"],
                "description": self.hypotheses[name].get("description", ""),
                "elpd_loo": _num(row["elpd_loo"]), "se": _num(row["se"]),
                "elpd_diff": _num(row["elpd_diff"]), "dse": _num(row["dse"]),
                "weight": _num(row["weight"]), "p_loo": _num(row["p_loo"]),
                "max_pareto_k": _num(row["max_pareto_k"]), "n_high_pareto_k": int(row["n_high_k"]),
                "pareto_k_threshold": _num(row["k_threshold"]),
                "elpd_lso": _num(row["elpd_lso"]), "elpd_lso_se": _num(row["elpd_lso_se"]),
                "elpd_lso_diff": _num(row["elpd_lso_diff"]), "elpd_lso_dse": _num(row["elpd_lso_dse"]),
                "p_lso": _num(row["p_lso"]), "max_pareto_k_lso": _num(row["max_pareto_k_lso"]),
                "n_high_pareto_k_lso": int(row["n_high_k_lso"]),
                "log_marginal_likelihood": _num(row["log_ml"]), "log_ml_se": _num(row["log_ml_se"]),
                "evidence_method": self.settings["evidence"],
                "log_bf_vs_best": _num(row["log_bf_vs_best"]), "log_bf_se": _num(row["log_bf_se"]),
                "diagnostics": {"status": row["diagnostics_status"],
                                "problems": list(row["diagnostics_problems"]),
                                "cautions": list(row["diagnostics_cautions"]),
                                "max_rhat": _num(row["max_rhat"]), "min_ess_bulk": _num(row["min_ess_bulk"]),
                                "divergences": int(row["divergences"]),
                                "solver_failures": int(row["solver_failures"])},
                "refits": self.refits[name],
                "hypothesis": self.hypotheses[name],
            }
        summary = self.dataset.summary()
        return {
            "ranking": list(self.ranking),
            "verdict": self.verdict,
            "warnings": list(self.warnings),
            "hypotheses": rows,
            "savage_dickey": list(self.savage_dickey),
            "dataset": {"source": self.dataset.source, "n_subjects": summary["n_subjects"],
                        "n_observations": summary["n_samples"], "n_censored": summary["n_censored"],
                        "groups": summary["groups"]},
            "settings": self.settings,
            "created": datetime.now(UTC).isoformat(timespec="seconds"),
            "version": version("cytokine-balance"),
        }

    def to_json(self) -> str:
        """Return :meth:`to_dict` as JSON text (non-finite numbers become null)."""
        return json.dumps(_clean(self.to_dict()), indent=2, allow_nan=False)

    def write(self, out_dir: str | Path, *, force: bool = False) -> tuple[Path, Path]:
        """Write ``comparison.json`` and ``comparison.html`` into ``out_dir`` (atomically).

        Raises
        ------
        FileExistsError
            One of them exists and ``force`` is false.
        """
        out = Path(out_dir)
        paths = (out / JSON_NAME, out / HTML_NAME)
        _check_free(paths, force)
        out.mkdir(parents=True, exist_ok=True)
        json_text, html = self.to_json() + "\n", render_comparison(self)
        write_atomically(paths[0], lambda tmp: tmp.write_text(json_text, encoding="utf-8"), overwrite=True)
        write_atomically(paths[1], lambda tmp: tmp.write_text(html, encoding="utf-8"), overwrite=True)
        return paths


def _clean(value):
    """Plain JSON data: numpy scalars to Python, NaN and infinities to None."""
    if isinstance(value, Mapping):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _num(x) -> float | None:
    try:
        x = float(x)
    except (TypeError, ValueError):
        return None
    return x if np.isfinite(x) else None


def _check_free(paths: Sequence[Path], force: bool) -> None:
    existing = [str(p) for p in paths if p.exists()]
    if existing and not force:
        raise FileExistsError(f"{', '.join(existing)} exist{'s' if len(existing) == 1 else ''}; "
                              "pass force=True (CLI: --force) to replace")


# --------------------------------------------------------------------------------------------
# Fitting hypotheses
# --------------------------------------------------------------------------------------------
def fit_hypotheses(
    dataset: Dataset,
    hypotheses: Sequence[Hypothesis],
    *,
    out_dir: str | Path | None = None,
    force: bool = False,
    sampler: str = "nutpie",
    draws: int = 1000,
    tune: int = 1000,
    chains: int = 4,
    target_accept: float = 0.9,
    seed: int = 0,
    progress: bool = False,
) -> dict[str, az.InferenceData]:
    """Fit each hypothesis to the dataset, one after another, and save each as it finishes.

    Hypotheses of the same library model are fitted in a row, so the model's compiled solver
    kernels (loaded once per process from numba's disk cache) serve them all.

    Parameters
    ----------
    dataset
        The data.
    hypotheses
        The hypotheses (checked against the data before anything is fitted).
    out_dir
        If given, each fit is written to ``out_dir/<name>.nc`` as soon as it is done.
    force
        Replace existing result files (otherwise they are an error, found before fitting).
    sampler, draws, tune, chains, target_accept, seed, progress
        As in :func:`inference.fit.fit`.

    Returns
    -------
    dict of str to InferenceData
        In the order of ``hypotheses``; each with ``attrs["hypothesis"]`` and
        ``attrs["hypothesis_declaration"]`` (JSON).
    """
    check_hypotheses(hypotheses, dataset)
    if sampler not in SAMPLERS:
        raise ModelError(f"sampler must be one of {list(SAMPLERS)}, got {sampler!r}")
    if out_dir is not None:
        _check_free([Path(out_dir) / f"{h.name}.nc" for h in hypotheses], force)
    order = sorted(hypotheses, key=lambda h: [x.model for x in hypotheses].index(h.model))
    fitted = {}
    for h in order:
        idata = fit(h.model, dataset, h.options(), sampler=sampler, draws=draws, tune=tune, chains=chains,
                    target_accept=target_accept, seed=seed, progress=progress)
        idata.attrs["hypothesis"] = h.name
        idata.attrs["hypothesis_declaration"] = json.dumps(h.to_dict(), sort_keys=True)
        if out_dir is not None:
            save_result(idata, Path(out_dir) / f"{h.name}.nc", overwrite=force)
        fitted[h.name] = idata
    return {h.name: fitted[h.name] for h in hypotheses}


def _declaration(name: str, idata: az.InferenceData) -> dict:
    """Return what a result's hypothesis declared (stored by :func:`fit_hypotheses`, else its options)."""
    if "hypothesis_declaration" in idata.attrs:
        return json.loads(idata.attrs["hypothesis_declaration"]) | {"name": name}
    options = json.loads(result_options(idata).to_json())
    return {"name": name, "model": idata.attrs["model"], "description": ""} | options


# --------------------------------------------------------------------------------------------
# compare
# --------------------------------------------------------------------------------------------
def _nested_pairs(declarations: Mapping[str, dict]) -> list[tuple[str, str, str, float]]:
    """(null, alternative, parameter, value) for hypotheses that differ by one fixed parameter."""
    pairs = []
    for null, h0 in declarations.items():
        for alt, h1 in declarations.items():
            if null == alt or h0["model"] != h1["model"]:
                continue
            extra = set(h0["fixed"]) - set(h1["fixed"])
            if len(extra) != 1:
                continue
            (p,) = extra
            same_fixed = {k: v for k, v in h0["fixed"].items() if k != p} == h1["fixed"]
            same_priors = h0["priors"] == {k: v for k, v in h1["priors"].items() if k != p}
            same_rest = all(h0[k] == h1[k] for k in ("random_effects", "group_effects", "covariates",
                                                     "likelihood", "nu"))
            free_scalar = p not in h1["random_effects"] + h1["group_effects"] and p not in h1["covariates"]
            if same_fixed and same_priors and same_rest and free_scalar:
                pairs.append((null, alt, p, float(h0["fixed"][p])))
    return pairs


def compare(
    results: Mapping[str, az.InferenceData | str | Path] | Sequence[az.InferenceData | str | Path]
    | None = None,
    *,
    dataset: Dataset | None = None,
    hypotheses: Sequence[Hypothesis] | None = None,
    out_dir: str | Path | None = None,
    force: bool = False,
    sampler: str = "nutpie",
    draws: int = 1000,
    tune: int = 1000,
    chains: int = 4,
    target_accept: float = 0.9,
    seed: int = 0,
    progress: bool = False,
    refit_bad_k: int = 0,
    evidence: str | None = "bridge",
    thresholds: Thresholds | None = None,
    effect_draws: int = 10,
) -> Comparison:
    """Compare hypotheses by prediction (PSIS-LOO, leave-subject-out, stacking) and evidence.

    Either ``results`` (fitted results: InferenceData objects or result files, as a list or as
    ``{name: result}``; names default to the stored hypothesis name or the file stem) or
    ``dataset`` and ``hypotheses`` (fitted here first with :func:`fit_hypotheses`).

    Parameters
    ----------
    results
        Fits of the same data.
    dataset, hypotheses
        Data and hypotheses to fit and compare.
    out_dir
        If given: fits are saved there as ``<name>.nc`` and the comparison as ``comparison.json``
        and ``comparison.html``; existing files are an error (found before any work) unless
        ``force``.
    force
        Replace existing output files.
    sampler, draws, tune, chains, target_accept, seed, progress
        Sampler settings for fits made here (refits reuse each result's own settings).
    refit_bad_k
        At most this many exact refits per hypothesis for observations, and as many for subjects,
        whose Pareto k is above the threshold (worst first). 0: only warn.
    evidence
        ``"bridge"`` (bridge sampling on the NUTS draws), ``"smc"`` (new SMC runs, slow for ODE
        models) or ``None`` (skip marginal likelihoods).
    thresholds
        Diagnostic thresholds (:class:`inference.diagnostics.Thresholds`); a hypothesis whose
        verdict fails is marked and ranked after the sound ones.
    effect_draws
        Importance draws of a left-out subject's random effects per posterior draw.

    Returns
    -------
    Comparison

    Raises
    ------
    ModelError, DataError
        Bad hypotheses or results (different data, missing groups), too few hypotheses.
    FileExistsError
        Outputs exist and ``force`` is false.
    """
    if evidence is not None and evidence not in EVIDENCE_METHODS:
        raise ModelError(f"evidence must be one of {list(EVIDENCE_METHODS)} or None, got {evidence!r}")
    if refit_bad_k < 0:
        raise ModelError(f"refit_bad_k must be >= 0, got {refit_bad_k}")
    if (results is None) == (dataset is None or hypotheses is None):
        raise ModelError("pass either results, or dataset and hypotheses")
    if out_dir is not None:
        outputs = [Path(out_dir) / JSON_NAME, Path(out_dir) / HTML_NAME]
        if hypotheses is not None:
            outputs += [Path(out_dir) / f"{h.name}.nc" for h in hypotheses]
        _check_free(outputs, force)
    if results is None:
        if len(hypotheses) < 2:
            raise ModelError(f"compare needs at least two hypotheses, got {len(hypotheses)}")
        results = fit_hypotheses(dataset, hypotheses, out_dir=out_dir, force=force, sampler=sampler,
                                 draws=draws, tune=tune, chains=chains, target_accept=target_accept,
                                 seed=seed, progress=progress)
    named = _named_results(results)
    data = result_dataset(next(iter(named.values())))
    declarations = {n: _declaration(n, idata) for n, idata in named.items()}
    diagnostics = {n: check_diagnostics(idata, thresholds) for n, idata in named.items()}
    loo, lso, refits = _predictive(named, data, refit_bad_k, effect_draws, seed, progress)
    ranking = rank_hypotheses({n: loo[n].elpd_loo for n in named},
                              {n: diagnostics[n]["status"] for n in named})
    with _quiet_psis():
        az_table = az.compare({n: loo[n] for n in ranking}, ic="loo", method="stacking", scale="log")
        lso_weights = (az.compare({n: lso[n] for n in ranking}, ic="loo", method="stacking",
                                  scale="log")["weight"] if lso else None)
    ev, densities, notes = _evidence(named, evidence, seed, smc_particles=max(draws, 500),
                                     smc_runs=max(chains, 2))
    sd_rows = _savage_dickey(named, declarations, densities, ev)
    table = _table(ranking, loo, lso, az_table["weight"], lso_weights, ev, diagnostics)
    verdict, warns = write_verdict(table, sd_rows, refits)
    fits = {n: {k: _plain(named[n].attrs.get(k)) for k in ("sampler", "draws", "tune", "chains", "seed")}
            for n in named}
    settings = {"evidence": evidence, "refit_bad_k": refit_bad_k, "pareto_k_threshold": PARETO_K_THRESHOLD,
                "separation_se": SEPARATION_SE,
                "diagnostic_thresholds": dict(vars(thresholds or Thresholds())),
                "effect_draws": effect_draws, "seed": seed, "fits": fits}
    comparison = Comparison(
        results=dict(named), table=table, ranking=ranking, verdict=verdict, warnings=warns + notes,
        loo=loo, lso=lso, evidence=ev, savage_dickey=sd_rows, refits=refits, hypotheses=declarations,
        settings=settings, dataset=data, arviz_table=az_table,
    )
    if out_dir is not None:
        comparison.write(out_dir, force=force)
    return comparison


def _flagged(elpd: az.ELPDData, n: int) -> list[int]:
    """Return the (at most n) units whose Pareto k is above the threshold, worst first."""
    k = np.asarray(elpd.pareto_k.values, float)
    return [int(i) for i in np.argsort(-k) if k[i] > _threshold(elpd)][:n]


def _predictive(named, data: Dataset, refit_bad_k: int, effect_draws: int, seed: int, progress: bool):
    """PSIS-LOO per observation and per subject, with exact refits for the worst Pareto k."""
    loo, lso, refits = {}, {}, {}
    for name, idata in named.items():
        refits[name] = {"loo": [], "lso": []}
        elpd = _quiet_loo(idata)
        for i in _flagged(elpd, refit_bad_k):
            refits[name]["loo"].append(refit_observation(idata, i, progress=progress)
                                       | {"pareto_k": float(elpd.pareto_k.values[i])})
        loo[name] = _replace_pointwise(elpd, {r["observation"]: r["elpd"] for r in refits[name]["loo"]})
        if len(data.subject_ids) < 2:
            continue
        elpd = _quiet_loo(_per_subject(idata))
        exact = {}
        for i in _flagged(elpd, refit_bad_k):
            subject = data.subject_ids[i]
            try:
                row = refit_subject(idata, subject, effect_draws=effect_draws, seed=seed, progress=progress)
            except DataError as error:  # the only subject of its group, under a group effect
                refits[name]["lso"].append({"subject": subject, "skipped": str(error)})
                continue
            refits[name]["lso"].append(row | {"pareto_k": float(elpd.pareto_k.values[i])})
            exact[i] = row["elpd"]
        lso[name] = _replace_pointwise(elpd, exact)
    return loo, lso, refits


def _evidence(named, method: str | None, seed: int, *, smc_particles: int, smc_runs: int):
    """Log marginal likelihood per hypothesis, the compiled densities, and notes on failures."""
    ev: dict[str, Evidence | None] = dict.fromkeys(named)
    densities: dict[str, LogDensity] = {}
    notes = []
    if method is None:
        return ev, densities, notes
    for i, (name, idata) in enumerate(named.items()):
        density = densities[name] = LogDensity(rebuild_model(idata))
        try:
            if method == "smc":
                ev[name] = smc_evidence(density.model, draws=smc_particles, runs=smc_runs, seed=seed + i)
            else:
                ev[name] = bridge_sampling(density, density.unconstrained(idata.posterior), seed=seed + i)
        except ModelError as error:
            notes.append(f"{name}: no marginal likelihood ({error}).")
    return ev, densities, notes


def _savage_dickey(named, declarations, densities, ev) -> list[dict]:
    """Compute the Savage-Dickey ratio of every nested pair, beside the bridge-sampling Bayes factor."""
    rows = []
    for null, alt, parameter, value in _nested_pairs(declarations):
        if alt not in densities:
            continue
        options = result_options(named[alt])
        prior = options.priors.get(parameter, result_model(named[alt]).parameter(parameter).prior)
        row = {"null": null, "alternative": alt}
        reason = savage_dickey_undefined(parameter, value, prior)
        if reason is None:
            ratio = savage_dickey_ratio(densities[alt], named[alt].posterior, parameter, value, prior)
            row |= ratio.to_dict() | {"not_computed": None}
        else:
            row |= {"parameter": parameter, "value": float(value), "log_bf01": None, "se": None,
                    "pareto_k": None, "n_draws": 0, "not_computed": reason}
        row |= {"bridge_log_bf01": None, "bridge_se": None}
        if ev[null] is not None and ev[alt] is not None:
            row |= {"bridge_log_bf01": _num(ev[null].log_ml - ev[alt].log_ml),
                    "bridge_se": _num(math.hypot(ev[null].se, ev[alt].se))}
        rows.append(row)
    return rows


def _table(ranking, loo, lso, weights, lso_weights, ev, diagnostics) -> pd.DataFrame:
    """One row per hypothesis, in ranking order; differences are to the first row."""
    best = ranking[0]
    rows = []
    for rank, name in enumerate(ranking, start=1):
        elpd = loo[name]
        k = np.asarray(elpd.pareto_k.values, float)
        diff, dse = _difference(loo[best], elpd) if name != best else (0.0, 0.0)
        row = {"name": name, "rank": rank, "elpd_loo": elpd.elpd_loo, "se": elpd.se, "p_loo": elpd.p_loo,
               "elpd_diff": diff, "dse": dse, "weight": float(weights[name]),
               "max_pareto_k": float(np.max(k)), "k_threshold": _threshold(elpd),
               "n_high_k": int(np.sum(k > _threshold(elpd))), "n_observations": len(k)}
        row |= dict.fromkeys(("elpd_lso", "elpd_lso_se", "p_lso", "elpd_lso_diff", "elpd_lso_dse",
                              "lso_weight", "max_pareto_k_lso"), np.nan) | {"n_high_k_lso": 0}
        if name in lso:
            subjects = lso[name]
            ks = np.asarray(subjects.pareto_k.values, float)
            diff, dse = _difference(lso[best], subjects) if name != best else (0.0, 0.0)
            row |= {"elpd_lso": subjects.elpd_loo, "elpd_lso_se": subjects.se, "p_lso": subjects.p_loo,
                    "elpd_lso_diff": diff, "elpd_lso_dse": dse, "lso_weight": float(lso_weights[name]),
                    "max_pareto_k_lso": float(np.max(ks)),
                    "n_high_k_lso": int(np.sum(ks > _threshold(subjects)))}
        e = ev[name]
        row |= {"log_ml": e.log_ml if e else np.nan, "log_ml_se": e.se if e else np.nan}
        diag = diagnostics[name]
        row |= {"diagnostics_status": diag["status"], "diagnostics_flagged": diag["flagged"],
                "diagnostics_problems": diag["problems"], "diagnostics_cautions": diag["cautions"],
                "max_rhat": diag["max_rhat"], "min_ess_bulk": diag["min_ess_bulk"],
                "divergences": diag["divergences"], "solver_failures": diag["solver_failures"]}
        rows.append(row)
    table = pd.DataFrame(rows).set_index("name")
    table["log_bf_vs_best"] = table["log_ml"] - table.at[best, "log_ml"]
    table["log_bf_se"] = [0.0 if n == best else math.hypot(table.at[n, "log_ml_se"],
                                                           table.at[best, "log_ml_se"])
                          for n in table.index]
    return table


def _plain(x):
    return x.item() if isinstance(x, np.generic) else x


# --------------------------------------------------------------------------------------------
# The comparison page
# --------------------------------------------------------------------------------------------
TEMPLATES = Path(__file__).parent / "report" / "templates"
_MAX_PPC_SUBJECTS = 4
_MAX_DIFF_PANELS = 4


def _png(fig) -> str:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def _compare_plot(comparison: Comparison) -> str:
    from matplotlib.figure import Figure

    n = len(comparison.arviz_table)
    fig = Figure(figsize=(7.5, 1.0 + 0.6 * n))
    ax = fig.subplots()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        az.plot_compare(comparison.arviz_table, ax=ax, insample_dev=False, plot_ic_diff=True, title=False,
                        legend=True)
    ax.set_xlabel("elpd_loo (log score; higher predicts better)")
    return _png(fig)


def _difference_plot(comparison: Comparison, best: str, others: Sequence[str]) -> str:
    from matplotlib.figure import Figure

    tables = [comparison.differences(best, other) for other in others]
    limit = max(float(np.nanmax(np.abs(t.to_numpy()))) for t in tables) or 1.0
    n_subjects = len(comparison.dataset.subject_ids)
    fig = Figure(figsize=(2.6 * len(others) + 1.2, 0.9 + 0.32 * n_subjects))
    axes = np.atleast_1d(fig.subplots(1, len(others), sharey=True, squeeze=False)[0])
    image = None
    for ax, other, tab in zip(axes, others, tables, strict=True):
        values = tab.to_numpy(float)
        image = ax.imshow(values, cmap="RdBu", vmin=-limit, vmax=limit, aspect="auto")
        ax.set_xticks(range(tab.shape[1]), tab.columns)
        ax.set_yticks(range(tab.shape[0]), tab.index)
        ax.set_title(f"{best} − {other}", fontsize=10)
        for (r, c), v in np.ndenumerate(values):
            if np.isfinite(v):
                ax.text(c, r, f"{v:.1f}", ha="center", va="center", fontsize=7,
                        color="white" if abs(v) > 0.6 * limit else "black")
    fig.colorbar(image, ax=list(axes), shrink=0.8, label=f"elpd difference ({best} better > 0)")
    return _png(fig)


def _ppc_data(idata: az.InferenceData) -> pd.DataFrame:
    pp = np.exp(np.asarray(idata.posterior_predictive["log_y"].values, float))
    pp = pp.reshape(-1, pp.shape[-1])
    q = np.quantile(pp, [0.05, 0.5, 0.95], axis=0)
    return pd.DataFrame({"low": q[0], "median": q[1], "high": q[2]})


def _ppc_plots(comparison: Comparison, names: Sequence[str]) -> tuple[list[dict], list[str]]:
    from matplotlib.figure import Figure
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    obs = comparison.dataset.observations
    diff = comparison.differences(names[0], names[1]).abs().sum(axis=1) if len(names) > 1 else None
    subjects = (list(diff.sort_values(ascending=False).index[:_MAX_PPC_SUBJECTS]) if diff is not None
                else list(comparison.dataset.subject_ids[:_MAX_PPC_SUBJECTS]))
    analytes = list(comparison.dataset.analytes)
    bands = {n: _ppc_data(comparison.results[n]) for n in names
             if "posterior_predictive" in comparison.results[n].groups()}
    limits = {}
    for a in analytes:
        rows = obs.index[obs["analyte"] == a]
        values = [obs.loc[rows, "value"].to_numpy(float)]
        values += [b.loc[rows, ["low", "high"]].to_numpy(float).ravel() for b in bands.values()]
        v = np.concatenate(values)
        v = v[np.isfinite(v) & (v > 0)]
        limits[a] = (v.min() / 1.5, v.max() * 1.5) if v.size else (0.1, 10)
    figures = []
    for name in names:
        if name not in bands:
            continue
        band = bands[name]
        fig = Figure(figsize=(2.3 * len(analytes), 1.7 * len(subjects) + 0.4))
        axes = fig.subplots(len(subjects), len(analytes), squeeze=False, sharex=True)
        for r, s in enumerate(subjects):
            for c, a in enumerate(analytes):
                ax = axes[r, c]
                rows = obs.index[(obs["subject"] == s) & (obs["analyte"] == a)]
                t = obs.loc[rows, "time"].to_numpy(float)
                ax.fill_between(t, band.loc[rows, "low"], band.loc[rows, "high"], color="#9ecae1", alpha=0.7,
                                lw=0, label="90% predictive")
                ax.plot(t, band.loc[rows, "median"], color="#08519c", lw=1)
                cens = obs.loc[rows, "censored"].to_numpy() != "none"
                ax.plot(t[~cens], obs.loc[rows, "value"].to_numpy(float)[~cens], "o", ms=3, color="black")
                ax.plot(t[cens], obs.loc[rows, "value"].to_numpy(float)[cens], "v", ms=4, mfc="none",
                        color="black")
                ax.set_yscale("log")
                ax.set_ylim(*limits[a])
                ax.yaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
                ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
                ax.yaxis.set_minor_formatter(NullFormatter())
                ax.tick_params(labelsize=7)
                if r == 0:
                    ax.set_title(a, fontsize=9)
                if c == 0:
                    ax.set_ylabel(s, fontsize=8)
                if r == len(subjects) - 1:
                    ax.set_xlabel("time (h)", fontsize=8)
        fig.suptitle(name, fontsize=11)
        figures.append({"name": name, "png": _png(fig)})
    return figures, subjects


def _analyte_totals(comparison: Comparison, best: str, others: Sequence[str]) -> list[dict]:
    frame = comparison.pointwise()
    out = []
    for other in others:
        d = frame[best] - frame[other]
        for a in comparison.dataset.analytes:
            part = d[frame["analyte"] == a].to_numpy(float)
            out.append({"other": other, "analyte": a, "diff": float(part.sum()),
                        "se": float(math.sqrt(len(part) * np.var(part))) if len(part) else float("nan")})
    return out


def render_comparison(comparison: Comparison) -> str:
    """Render the comparison page (HTML, figures embedded) from the comparison.html template."""
    import jinja2

    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(TEMPLATES)),
                             autoescape=jinja2.select_autoescape(["html"]), undefined=jinja2.StrictUndefined)
    env.filters["num"] = lambda x, d=1: _fmt(_num(x), d)
    data = comparison.to_dict()
    best = comparison.ranking[0]
    others = comparison.ranking[1:1 + _MAX_DIFF_PANELS]
    ppc, subjects = _ppc_plots(comparison, comparison.ranking[:2])
    template = env.get_template("comparison.html")
    return template.render(
        c=data, best=best, others=others,
        compare_png=_compare_plot(comparison),
        difference_png=_difference_plot(comparison, best, others),
        analyte_totals=_analyte_totals(comparison, best, others),
        ppc=ppc, ppc_subjects=subjects,
        version=data["version"], created=data["created"],
    )
