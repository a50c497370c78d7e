"""Held-out scoring without PyMC: a subject's parameters and its observations' log-likelihood.

An exact leave-out refit (:mod:`inference.refit`) scores data the refit did not see: a left-out
observation of a fitted subject, or a whole new subject. These functions compute, for many
posterior draws at once, what :func:`inference.build.build_model` computes in the graph: each
subject's parameter vector ``theta`` from the fit's population parameters, and the measurement
model's log-likelihood of the observations given the solver's predictions.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
import scipy.stats
import xarray as xr

from models import OdeModel
from models.solvers import kernel, pack_events, pack_times

from .build import ModelOptions, subject_events, subject_inputs
from .data import DataError, Dataset
from .priors import LINKS, unconstrained

__all__ = ["draws", "heldout_log_likelihood", "subject_theta"]


def draws(posterior: xr.Dataset, name: str) -> np.ndarray:
    """Return a variable's draws with chain and draw flattened into the first axis."""
    values = np.asarray(posterior[name].values, dtype=float)
    return values.reshape(-1, *values.shape[2:])


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

    def tiled(name):
        values = draws(posterior, name)
        return np.tile(values, (repeat, *[1] * (values.ndim - 1)))

    columns = []
    for p in model.parameters:
        name = p.name
        if name in options.fixed:
            columns.append(np.full(n, options.fixed[name]))
            continue
        structured = (name in options.random_effects or name in options.group_effects
                      or name in options.covariates)
        if not structured:
            columns.append(tiled(name))
            continue
        link = unconstrained(options.priors.get(name, p.prior))
        eta = tiled(f"{name}_mu")
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
            beta = tiled(f"{name}_beta")  # (n, n_cov)
            eta = eta + beta @ zc
        if name in options.random_effects:
            eta = eta + tiled(f"{name}_sd") * np.asarray(z[name] if z else 0.0)
        columns.append(LINKS[link.link].inverse(eta))
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
