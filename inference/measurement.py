"""The measurement model: how an assay reports a concentration, with its PyMC, density and sampling faces.

A measurement is log-normal around the model's concentration (or Student-t on the log scale with
``nu`` degrees of freedom, for outliers), with one sd per analyte on the log scale. Values outside
the assay's limits are censored: a sample below the LLOQ says only "at most the LLOQ" and enters
the likelihood through the log-CDF, one above the ULOQ through the log survival function (M3
method). The same model is used by the PyMC builder (:meth:`MeasurementModel.observe`), held-out
scoring without PyMC (:meth:`MeasurementModel.log_likelihood`), the predictive simulations
(:meth:`MeasurementModel.noise`) and the report (:meth:`MeasurementModel.describe`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pymc as pm
import scipy.stats

from models import ModelError

__all__ = ["LIKELIHOODS", "MeasurementModel"]

LIKELIHOODS = ("lognormal", "student_t")


@dataclass(frozen=True)
class MeasurementModel:
    """Log-normal or log-Student-t measurement error, censored at the assay limits.

    Parameters
    ----------
    likelihood
        ``"lognormal"`` or ``"student_t"``.
    nu
        Degrees of freedom of the Student-t (ignored for the log-normal).
    """

    likelihood: str = "lognormal"
    nu: float = 5.0

    def __post_init__(self) -> None:
        if self.likelihood not in LIKELIHOODS:
            raise ModelError(f"likelihood must be one of {LIKELIHOODS}, got {self.likelihood!r}")
        if self.nu <= 0:
            raise ModelError(f"nu must be positive, got {self.nu}")

    def describe(self) -> str:
        """Return the error model in words (for reports)."""
        if self.likelihood == "lognormal":
            return "log-normal"
        return f"Student-t on the log scale, nu = {self.nu:g}"

    # ---- PyMC ----------------------------------------------------------------------------
    def observe(self, name: str, log_mu, sigma, lower: np.ndarray, upper: np.ndarray, observed: np.ndarray,
                dims: str):
        """Create the observed, censored PyMC variable of log concentrations (inside a model)."""
        if self.likelihood == "lognormal":
            noise = pm.Normal.dist(mu=log_mu, sigma=sigma)
        else:
            noise = pm.StudentT.dist(nu=self.nu, mu=log_mu, sigma=sigma)
        return pm.Censored(name, noise, lower=lower, upper=upper, observed=observed, dims=dims)

    # ---- densities (numpy) -----------------------------------------------------------------
    def log_likelihood(self, log_mu: np.ndarray, sigma: np.ndarray, log_value: np.ndarray,
                       censored: np.ndarray) -> np.ndarray:
        """Log-likelihood of log measurements (broadcast), ``-inf`` where it is not finite.

        ``censored`` holds ``"none"``, ``"left"`` (below the LLOQ, value = the LLOQ) or ``"right"``.
        """
        if self.likelihood == "lognormal":
            dist = scipy.stats.norm(loc=log_mu, scale=sigma)
        else:
            dist = scipy.stats.t(df=self.nu, loc=log_mu, scale=sigma)
        with np.errstate(divide="ignore", invalid="ignore"):
            out = np.where(censored == "left", dist.logcdf(log_value),
                           np.where(censored == "right", dist.logsf(log_value), dist.logpdf(log_value)))
        return np.where(np.isfinite(out), out, -np.inf)

    # ---- sampling --------------------------------------------------------------------------
    def noise(self, rng: np.random.Generator, shape) -> np.ndarray:
        """Draw the standardised log-scale error (multiply by sigma): normal, or Student-t."""
        if self.likelihood == "student_t":
            return rng.standard_t(self.nu, size=shape)
        return rng.standard_normal(shape)
