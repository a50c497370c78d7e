"""Exact leave-out refits, for the observations or subjects whose PSIS estimate is not trusted.

One seam in the spirit of ArviZ's ``SamplingWrapper`` (which ``az.reloo`` drives): a
:class:`LeaveOut` says which data it holds out (:meth:`LeaveOut.train`) and how to score them
under a refit's posterior (:meth:`LeaveOut.log_integrand`). A refit is then two steps, for
either kind: :func:`refit_task` makes the fit of the training data (the result's model,
options and sampler settings) a :class:`~inference.batch.FitTask`, which
:func:`~inference.batch.fit_many` runs with many others on Dask (as
:func:`inference.compare.compare` does); :func:`score` turns the refit into log p(held out |
training data), the log mean of the integrand over the refit's draws, with the Pareto k of that
Monte Carlo mean. :func:`refit_exact` does both for one leave-out, in this process.

Two leave-outs exist: :class:`LeaveObservationOut` (one observation of a fitted subject) and
:class:`LeaveSubjectOut` (a whole subject, whose unseen random effects are integrated out by
importance sampling).
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass

import arviz as az
import numpy as np
import scipy.stats
import xarray as xr
from scipy.special import logsumexp

from .batch import FitTask, fit_task
from .data import DataError, Dataset
from .heldout import heldout_log_likelihood, subject_theta
from .loo import integrand_pareto_k
from .record import read_record
from .structure import draws

__all__ = ["LeaveObservationOut", "LeaveOut", "LeaveSubjectOut", "refit_exact", "refit_task", "score"]

#: Defensive share of the standard normal in the importance proposal for a new subject's effects.
DEFENSIVE = 0.1


class LeaveOut(ABC):
    """What one exact leave-out holds out, and how the held-out data are scored."""

    @abstractmethod
    def train(self, dataset: Dataset) -> Dataset:
        """Return the dataset without the held-out data."""

    @abstractmethod
    def log_integrand(self, idata: az.InferenceData, refit: az.InferenceData, train: Dataset) -> np.ndarray:
        """Return log values whose mean of exp is p(held out | train), one per Monte Carlo draw.

        ``idata`` is the full fit, ``refit`` the fit to ``train``.
        """

    @abstractmethod
    def label(self, dataset: Dataset) -> dict:
        """Return what was held out of ``dataset``, as plain data (the first keys of the record)."""


def refit_task(idata: az.InferenceData, leave_out: LeaveOut, name: str) -> FitTask:
    """Return the fit of ``idata``'s model to its data without ``leave_out``'s, as a task named ``name``.

    The task has the result's model, options, seed and sampler settings.

    Raises
    ------
    DataError
        The training data lack a group under a group effect (the left-out subject was the only
        one of its group): its effect cannot be learnt, so the subject cannot be scored. Found
        here, before anything is fitted.
    """
    record = read_record(idata)
    train = leave_out.train(record.dataset)
    lost = [g for g in record.dataset.groups if g not in set(train.groups)]
    if record.options.group_effects and lost:
        held = ", ".join(f"{k} {v}" for k, v in leave_out.label(record.dataset).items())
        raise DataError(f"leaving out {held} leaves no subject of group {lost[0]!r}, whose group effect "
                        f"on {list(record.options.group_effects)} the rest cannot learn")
    return FitTask(name, record.model, train, record.options, record.sampler.seed, record.sampler)


def score(idata: az.InferenceData, leave_out: LeaveOut, refit: az.InferenceData) -> dict:
    """Score ``leave_out``'s data under ``refit``, the fit of :func:`refit_task`.

    Returns
    -------
    dict
        :meth:`LeaveOut.label`, then ``elpd`` = log p(held out | rest) and ``integrand_pareto_k``:
        the Pareto k of the Monte Carlo integrand; above 0.7 a few draws dominate the estimate,
        which is then noisy (more draws help).
    """
    dataset = read_record(idata).dataset
    log_values = leave_out.log_integrand(idata, refit, leave_out.train(dataset))
    elpd = float(logsumexp(log_values) - math.log(len(log_values)))
    return leave_out.label(dataset) | {"elpd": elpd, "integrand_pareto_k": integrand_pareto_k(log_values)}


def refit_exact(idata: az.InferenceData, leave_out: LeaveOut) -> dict:
    """Refit ``idata``'s model without ``leave_out``'s data in this process, then :func:`score` it.

    The same fit as :func:`~inference.batch.fit_many` runs for :func:`refit_task` (same seed,
    same draws).
    """
    return score(idata, leave_out, fit_task(refit_task(idata, leave_out, "refit")))


def _sigma(posterior: xr.Dataset) -> tuple[np.ndarray, list[str]]:
    return draws(posterior, "sigma"), [str(a) for a in posterior["sigma"].coords["analyte"].values]


@dataclass(frozen=True)
class LeaveObservationOut(LeaveOut):
    """Exact leave-one-out for observation ``index`` (row of the result's observations)."""

    index: int

    def train(self, dataset: Dataset) -> Dataset:  # noqa: D102
        obs = dataset.observations
        return Dataset(obs.drop(index=self.index).reset_index(drop=True), dataset.subjects, dataset.events,
                       dataset.source)

    def log_integrand(self, idata, refit, train):  # noqa: D102
        record = read_record(idata)
        dataset = record.dataset
        subject = dataset.observations.at[self.index, "subject"]
        theta = np.asarray(refit.posterior["theta"].sel(subject=subject).values, float)
        theta = theta.reshape(-1, theta.shape[-1])
        sigma, analytes = _sigma(refit.posterior)
        return heldout_log_likelihood(record.ode_model, record.options,
                                      dataset.select([subject]), theta, sigma, analytes,
                                      dataset.observations.loc[[self.index]])[:, 0]

    def label(self, dataset: Dataset) -> dict:  # noqa: D102
        subject = dataset.observations.at[self.index, "subject"]
        return {"observation": int(self.index), "subject": str(subject)}


@dataclass(frozen=True)
class LeaveSubjectOut(LeaveOut):
    """Exact leave-one-subject-out: score the subject's whole time course.

    log p(y_s | y_-s) integrates over the refit's posterior and over the new subject's random
    effects. Those standard-normal effects are drawn by importance sampling (``effect_draws`` per
    posterior draw) from a defensive mixture of a multivariate t fitted to their posterior in the
    full fit and the standard normal itself; the Pareto k of the weights says whether that
    integral can be trusted.

    A subject that is the only one of its group, under a group effect, cannot be scored:
    :func:`refit_task` raises :class:`~inference.data.DataError`.
    """

    subject: str
    effect_draws: int = 10
    seed: int = 0

    def train(self, dataset: Dataset) -> Dataset:  # noqa: D102
        return dataset.select([s for s in dataset.subject_ids if s != self.subject])

    def log_integrand(self, idata, refit, train):  # noqa: D102
        record = read_record(idata)
        model, options, dataset = record.ode_model, record.options, record.dataset
        held = dataset.select([self.subject])
        n_draws = refit.posterior.sizes["chain"] * refit.posterior.sizes["draw"]
        effects = list(options.random_effects)
        rng = np.random.default_rng(self.seed)
        log_w_prior = np.zeros(n_draws)
        z = None
        if effects:
            column = list(dataset.subject_ids).index(self.subject)
            full = np.column_stack([draws(idata.posterior, f"{p}_z")[:, column] for p in effects])
            mean = full.mean(axis=0)
            cov = np.atleast_2d(np.cov(full, rowvar=False)) + 1e-9 * np.eye(len(effects))
            n = n_draws * self.effect_draws
            t_dist = scipy.stats.multivariate_t(loc=mean, shape=cov, df=4, seed=rng)
            pick = rng.random(n) < DEFENSIVE
            sample = np.where(pick[:, None], rng.standard_normal((n, len(effects))),
                              t_dist.rvs(size=n).reshape(n, len(effects)))
            log_prior = scipy.stats.norm.logpdf(sample).sum(axis=1)
            log_q = np.logaddexp(math.log(DEFENSIVE) + log_prior,
                                 math.log1p(-DEFENSIVE) + t_dist.logpdf(sample))
            log_w_prior = np.reshape(log_prior - log_q, n)
            z = {p: sample[:, j] for j, p in enumerate(effects)}
        theta = subject_theta(model, options, train, refit.posterior, held, z)
        sigma, analytes = _sigma(refit.posterior)
        sigma = np.tile(sigma, (len(theta) // n_draws, 1))
        ll = heldout_log_likelihood(model, options, held, theta, sigma, analytes).sum(axis=1)
        return ll + log_w_prior

    def label(self, dataset: Dataset) -> dict:  # noqa: D102
        return {"subject": str(self.subject)}
