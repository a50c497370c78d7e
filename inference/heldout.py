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
import xarray as xr

from models import OdeModel, solve

from .build import ModelOptions, subject_events, subject_inputs
from .data import Dataset
from .structure import ParameterStructure

__all__ = ["heldout_log_likelihood", "subject_theta"]


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
    structure = ParameterStructure(model, options, train)
    values = structure.subject_values(posterior, subject, z)
    inputs = subject_inputs(model, subject)[0]
    return np.column_stack([values] + [np.full(len(values), v) for v in inputs])


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
    events = subject_events(model, subject)[0]
    solution = solve(model, np.ascontiguousarray(theta, dtype=float), [times] * n, [events] * n,
                     options.solver)
    rows = np.searchsorted(times, obs["time"].to_numpy(float))
    observable = np.array([model.analytes.index(a) for a in obs["analyte"]])
    states = solution.states.reshape(n, len(times), -1)
    with np.errstate(divide="ignore", invalid="ignore"):
        log_mu = np.log(states[:, rows, model.observable_states()[observable]])
    sd = sigma[:, [list(analytes).index(a) for a in obs["analyte"]]]
    out = options.measurement.log_likelihood(log_mu, sd, np.log(obs["value"].to_numpy(float)),
                                             obs["censored"].to_numpy())
    out[solution.status != 0] = -np.inf
    return out
