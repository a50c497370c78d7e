"""The parameter structure of a fit: which parameters vary by subject, and how, in PyTensor and numpy.

A parameter is fixed (a constant), shared by all subjects (its prior as the library states it), or
structured per subject on its link scale (log for rates, logit for r)::

    link(theta_s) = mu + group effect[g(s)] + sum_c beta_c * z_c(s) + tau * eta_s,   eta_s ~ N(0, 1)

(non-centred random effect ``tau * eta_s``; group effects against the first group of the fitted
data; covariates ``z_c`` standardised with the fitted cohort's mean and sd). The PyMC builder uses
the PyTensor face (:meth:`ParameterStructure.tensor`); held-out scoring of a new subject uses the
numpy face (:meth:`ParameterStructure.subject_values`) on posterior draws: both from this one
statement.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import pymc as pm
import pytensor.tensor as pt
import xarray as xr

from models import OdeModel, Prior

from .data import DataError, Dataset
from .priors import LINKS, to_pymc, unconstrained

if TYPE_CHECKING:
    from .build import ModelOptions

__all__ = ["BETWEEN_SUBJECT_SD", "ParameterStructure", "draws"]

# Prior scale of between-subject standard deviations on the link scale.
BETWEEN_SUBJECT_SD = 0.5


def draws(posterior: xr.Dataset, name: str) -> np.ndarray:
    """Return a variable's draws with chain and draw flattened into the first axis."""
    values = np.asarray(posterior[name].values, dtype=float)
    return values.reshape(-1, *values.shape[2:])


@dataclass(frozen=True)
class ParameterStructure:
    """How each parameter of ``model`` varies between the subjects of the fitted ``dataset``.

    ``options`` (:class:`~inference.build.ModelOptions`) give fixed values, priors, random, group
    and covariate effects.
    """

    model: OdeModel
    options: ModelOptions
    dataset: Dataset

    def prior(self, name: str) -> Prior:
        """Return the prior of a parameter: the options' override, else the library's."""
        return self.options.priors.get(name, self.model.parameter(name).prior)

    def is_structured(self, name: str) -> bool:
        """Say whether the parameter has random, group or covariate effects."""
        o = self.options
        return name in o.random_effects or name in o.group_effects or name in o.covariates

    def standardised(self, name: str, subjects: pd.DataFrame) -> np.ndarray:
        """Covariates of ``subjects`` (rows) for parameter ``name``, standardised as in the fit.

        The mean and sd are those of the fitted dataset's subjects (a constant covariate keeps
        sd 1).
        """
        columns = list(self.options.covariates[name])
        x = self.dataset.subjects[columns].to_numpy(float)
        sd = x.std(axis=0)
        sd[sd == 0] = 1.0
        return (subjects[columns].to_numpy(float) - x.mean(axis=0)) / sd

    # ---- PyTensor face --------------------------------------------------------------------------
    def tensor(self, name: str, group_index: np.ndarray, location=None):
        """Per-subject values of one free parameter, a PyTensor vector (inside a PyMC model).

        ``location``: the parameter (or, with subject effects, its population location ``_mu``)
        on the link scale, where it is sampled jointly with others (:mod:`inference.fold`); None:
        it gets its own prior here.
        """
        n = len(self.dataset.subject_ids)
        prior = self.prior(name)
        link = unconstrained(prior)
        if not self.is_structured(name):
            if location is None:
                return to_pymc(name, prior) * pt.ones(n)
            return pm.Deterministic(name, link.inverse(location)) * pt.ones(n)
        mu = (pm.Normal(f"{name}_mu", link.mean, link.sd) if location is None
              else pm.Deterministic(f"{name}_mu", location))
        eta = mu * pt.ones(n)
        if name in self.options.group_effects:
            effect = pm.Normal(f"{name}_group", 0.0, 1.0, dims="group_effect")
            eta = eta + pt.concatenate([pt.zeros(1), effect])[group_index]
        if name in self.options.covariates:
            pm.Model.get_context().add_coord(f"{name}_covariate", list(self.options.covariates[name]))
            beta = pm.Normal(f"{name}_beta", 0.0, 1.0, dims=f"{name}_covariate")
            eta = eta + pt.as_tensor(self.standardised(name, self.dataset.subjects)) @ beta
        if name in self.options.random_effects:
            tau = pm.HalfNormal(f"{name}_sd", BETWEEN_SUBJECT_SD)
            z = pm.Normal(f"{name}_z", 0.0, 1.0, dims="subject")
            eta = eta + tau * z
        pm.Deterministic(f"{name}_typical", link.inverse(mu))
        return pm.Deterministic(name, link.inverse(eta), dims="subject")

    # ---- numpy face -----------------------------------------------------------------------------
    def subject_values(self, posterior: xr.Dataset, subject: Dataset,
                       z: Mapping[str, np.ndarray] | None = None) -> np.ndarray:
        """Parameter values of one subject (new or fitted), one row per posterior draw.

        Parameters
        ----------
        posterior
            The fit's posterior.
        subject
            A one-subject dataset (its subject row gives group and covariates).
        z
            Random-effect values ``{parameter: array (n,)}`` (standard normal); n may be a
            multiple of the number of draws (draws are then repeated). None: zero effects.

        Returns
        -------
        ndarray, shape (n, n_parameters)

        Raises
        ------
        DataError
            The subject's group is not in the fitted data but the parameter has a group effect.
        """
        n_draws = posterior.sizes["chain"] * posterior.sizes["draw"]
        n = n_draws if not z else len(next(iter(z.values())))
        repeat = n // n_draws
        row = subject.subjects.iloc[0]
        groups = list(self.dataset.groups)

        def tiled(name):
            values = draws(posterior, name)
            return np.tile(values, (repeat, *[1] * (values.ndim - 1)))

        columns = []
        for p in self.model.parameters:
            name = p.name
            if name in self.options.fixed:
                columns.append(np.full(n, self.options.fixed[name]))
                continue
            if not self.is_structured(name):
                columns.append(tiled(name))
                continue
            eta = tiled(f"{name}_mu")
            if name in self.options.group_effects and row["group"] != groups[0]:
                if row["group"] not in groups:
                    raise DataError(f"subject {subject.subject_ids[0]} is in group {row['group']!r}, which "
                                    f"the fitted data lack (groups {groups})")
                effect = posterior[f"{name}_group"].sel(group_effect=row["group"])
                eta = eta + np.tile(np.asarray(effect.values, float).reshape(-1), repeat)
            if name in self.options.covariates:
                eta = eta + tiled(f"{name}_beta") @ self.standardised(name, subject.subjects)[0]
            if name in self.options.random_effects:
                eta = eta + tiled(f"{name}_sd") * np.asarray(z[name] if z else 0.0)
            columns.append(LINKS[unconstrained(self.prior(name)).link].inverse(eta))
        return np.column_stack(columns)
