"""Predictive distributions: what the fitted (or the prior) model says new measurements would be.

Both directions use the same machinery. Parameter draws (posterior draws of a fit, or prior draws
from the same PyMC builder via ``pm.sample_prior_predictive``) give each subject's ``theta``; the
compiled solver turns them into concentrations at the observed sample times and on a dense grid
(200 points from 0 h to the subject's last sample); then the measurement model of the fit adds
noise on the log scale (normal, or Student-t with the fit's ``nu``) and the assay applies its
limits: a simulated value below the LLOQ is reported as the LLOQ and flagged left-censored, one
above the ULOQ as the ULOQ and flagged right-censored. That is the data-generating process whose
likelihood the fit uses (M3 method), so simulated and observed data can be compared like for like.

Every draw is seeded: the same result file and seed give the same numbers.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import arviz as az
import numpy as np
import pymc as pm
import xarray as xr

from models import OdeModel, get_model, solve

from .build import ModelOptions, build_model, layout, subject_events
from .data import Dataset
from .fold import resolve

__all__ = ["CENSORED_CODES", "Predictive", "posterior_predictive", "predict", "prior_predictive",
           "sample_prior"]

#: Codes of the ``censored`` variables: below the LLOQ, quantified, above the ULOQ.
CENSORED_CODES = {"left": -1, "none": 0, "right": 1}
DEFAULT_POINTS = 200
DEFAULT_DRAWS = 500
_CHUNK_ROWS = 200_000  # solver output rows per call (sensitivities make each row ~1 kB)


@dataclass(frozen=True)
class Predictive:
    """Predictive draws at the observed samples and on dense time grids.

    Attributes
    ----------
    group : str
        ``"posterior"`` or ``"prior"``: where the parameter draws came from.
    observed : xarray.Dataset
        Dims ``(sample, obs)`` (``obs`` as in the fit's ``observed_data``), variables
        ``concentration`` (the model's value, no noise), ``measurement`` (a simulated measurement:
        noise and the row's own LLOQ/ULOQ applied) and ``censored`` (``CENSORED_CODES``); coords
        ``subject``, ``analyte``, ``time`` per observation and ``chain``, ``draw`` per sample.
    curves : xarray.Dataset
        Dims ``(sample, subject, analyte, point)``, the same three variables, with the 2-D
        coordinate ``time`` (subject, point) in hours. Limits for the dense grid are each subject's
        own (the median over its samples of that analyte), else the analyte's median in the dataset.
    failures : int
        Subject solves that failed (their values are NaN and are skipped by :meth:`quantiles`).
    seed : int
        Seed of the draw selection and the simulated noise.
    """

    group: str
    observed: xr.Dataset
    curves: xr.Dataset
    failures: int
    seed: int

    @property
    def n_samples(self) -> int:
        """Number of parameter draws used."""
        return int(self.observed.sizes["sample"])

    def quantiles(self, probs=(0.05, 0.25, 0.5, 0.75, 0.95), variable: str = "measurement",
                  where: str = "curves") -> xr.DataArray:
        """Quantiles over draws (NaN from failed solves skipped), with a ``quantile`` dimension.

        Parameters
        ----------
        probs
            Probabilities in [0, 1]; the defaults give the median and the 50 % and 90 % intervals.
        variable
            ``"measurement"`` (a new sample as the assay would report it) or ``"concentration"``.
        where
            ``"curves"`` (dense grids) or ``"observed"`` (the observed samples).
        """
        if where not in ("curves", "observed"):
            raise ValueError(f"where must be 'curves' or 'observed', got {where!r}")
        data = getattr(self, where)
        if variable not in ("measurement", "concentration"):
            raise ValueError(f"variable must be 'measurement' or 'concentration', got {variable!r}")
        with warnings.catch_warnings():
            # Where every draw is NaN (a zero concentration, e.g. a compartment empty at 0 h, has
            # no log-normal measurement) the quantile is NaN, as it should be: no warning.
            warnings.filterwarnings("ignore", "All-NaN slice encountered", RuntimeWarning)
            return data[variable].quantile(list(probs), dim="sample", skipna=True)

    def coverage(self, dataset: Dataset, probs=(0.5, 0.9)) -> dict[float, float]:
        """Fraction of the quantified (uncensored) samples inside the central predictive intervals.

        A calibrated model puts about 50 % of the samples inside its 50 % interval and 90 % inside
        its 90 % interval.
        """
        obs = dataset.observations
        keep = (obs["censored"] == "none").to_numpy()
        values = obs["value"].to_numpy(float)[keep]
        out = {}
        for p in probs:
            lo, hi = self.quantiles(((1 - p) / 2, (1 + p) / 2), where="observed").values[:, keep]
            out[p] = float(np.mean((values >= lo) & (values <= hi))) if keep.any() else float("nan")
        return out


# --------------------------------------------------------------------------------------------
# The shared machinery
# --------------------------------------------------------------------------------------------
def _limits(dataset: Dataset, analytes: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray]:
    """LLOQ and ULOQ per (subject, analyte) for the dense grids (NaN where the assay has none)."""
    obs = dataset.observations
    out = []
    for column in ("lloq", "uloq"):
        table = np.full((len(dataset.subject_ids), len(analytes)), np.nan)
        overall = obs.groupby("analyte")[column].median()
        own = obs.groupby(["subject", "analyte"])[column].median()
        for i, s in enumerate(dataset.subject_ids):
            for j, a in enumerate(analytes):
                value = own.get((s, a), np.nan)
                table[i, j] = value if np.isfinite(value) else overall.get(a, np.nan)
        out.append(table)
    return out[0], out[1]


def _measure(concentration: np.ndarray, sigma: np.ndarray, lloq: np.ndarray, uloq: np.ndarray,
             options: ModelOptions, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Add log-scale noise and apply the assay limits; return (measurement, censored code).

    ``sigma``, ``lloq`` and ``uloq`` broadcast against ``concentration``.
    """
    noise = options.measurement.noise(rng, concentration.shape)
    with np.errstate(invalid="ignore", divide="ignore"):
        log_c = np.where(concentration > 0, np.log(np.where(concentration > 0, concentration, 1.0)), np.nan)
        value = np.exp(log_c + sigma * noise)
        below = value < lloq  # NaN limits compare False: no censoring
        above = value > uloq
    value = np.where(below, lloq, np.where(above, uloq, value))
    code = np.where(below, CENSORED_CODES["left"], np.where(above, CENSORED_CODES["right"], 0))
    return value, code.astype(np.int8)


def _solve_batches(model: OdeModel, theta: np.ndarray, times: list[np.ndarray], events, settings,
                   columns: np.ndarray) -> tuple[np.ndarray, int]:
    """Solve draws x subjects; return observable values (draws, rows, observables) and failures.

    ``theta`` has shape (draws, subjects, n_theta); ``times`` are per subject; ``columns`` are the
    state indices to keep.
    """
    n_draws, n_subjects, _ = theta.shape
    rows = sum(len(t) for t in times)
    per_draw = max(rows * len(model.states), 1)
    chunk = max(1, _CHUNK_ROWS // per_draw)
    out = np.empty((n_draws, rows, len(columns)))
    failures = 0
    for start in range(0, n_draws, chunk):
        stop = min(start + chunk, n_draws)
        batch = theta[start:stop].reshape(-1, theta.shape[2])
        k = stop - start
        solution = solve(model, batch, list(times) * k, list(events) * k, settings)
        failures += int(np.sum(solution.status != 0))
        out[start:stop] = solution.states[:, columns].reshape(k, rows, len(columns))
    return out, failures


def predict(
    model: str | OdeModel,
    dataset: Dataset,
    options: ModelOptions,
    theta: xr.DataArray,
    sigma: xr.DataArray,
    *,
    group: str = "posterior",
    draws: int | None = DEFAULT_DRAWS,
    points: int = DEFAULT_POINTS,
    seed: int = 0,
) -> Predictive:
    """Simulate measurements from parameter draws (the common core of the two predictives).

    Parameters
    ----------
    model, dataset, options
        The model, dataset and options the draws belong to.
    theta
        Per-subject solver inputs, dims ``(chain, draw, subject, theta_name)`` (the fit's ``theta``).
    sigma
        Log-scale measurement sd, dims ``(chain, draw, analyte)``.
    group
        Label of the draws' origin (``"posterior"`` or ``"prior"``).
    draws
        Number of draws to use, chosen at random without replacement (seeded); None for all.
    points
        Points of each dense curve, from 0 h to the subject's last sample.
    seed
        Seed of the draw selection and the simulated noise.

    Returns
    -------
    Predictive
    """
    model = get_model(model)
    if points < 2:
        raise ValueError(f"points must be at least 2, got {points}")
    rng = np.random.default_rng(seed)
    stacked_theta = theta.stack(sample=("chain", "draw")).transpose("sample", "subject", "theta_name")
    stacked_sigma = sigma.stack(sample=("chain", "draw")).transpose("sample", "analyte")
    n_total = stacked_theta.sizes["sample"]
    if draws is not None and draws < n_total:
        chosen = np.sort(rng.choice(n_total, size=draws, replace=False))
    else:
        chosen = np.arange(n_total)
    chains = stacked_theta["chain"].values[chosen]
    draw_ids = stacked_theta["draw"].values[chosen]
    th = np.asarray(stacked_theta.values[chosen], dtype=float)
    sg = np.asarray(stacked_sigma.sel(analyte=list(stacked_sigma["analyte"].values)).values[chosen], float)
    analytes = tuple(str(a) for a in stacked_sigma["analyte"].values)
    subjects = list(dataset.subject_ids)
    state_of = model.observable_states()
    columns = np.array([state_of[model.analytes.index(a)] for a in analytes])
    events = subject_events(model, dataset)
    settings = options.solver
    sample_coords = {"chain": ("sample", chains), "draw": ("sample", draw_ids)}

    # At the observed samples: each row's own limits.
    lay = layout(model, dataset)
    obs = dataset.observations
    values, failures = _solve_batches(model, th, lay.times, events, settings, columns)
    analyte_index = np.array([analytes.index(a) for a in obs["analyte"]])
    conc_obs = values[:, lay.obs_row, analyte_index]
    lloq = obs["lloq"].to_numpy(float) if "lloq" in obs else np.full(len(obs), np.nan)
    uloq = obs["uloq"].to_numpy(float) if "uloq" in obs else np.full(len(obs), np.nan)
    meas_obs, cens_obs = _measure(conc_obs, sg[:, analyte_index], lloq, uloq, options, rng)
    observed = xr.Dataset(
        {
            "concentration": (("sample", "obs"), conc_obs),
            "measurement": (("sample", "obs"), meas_obs),
            "censored": (("sample", "obs"), cens_obs),
        },
        coords={
            "obs": np.arange(len(obs)),
            "subject": ("obs", obs["subject"].to_numpy(str)),
            "analyte": ("obs", obs["analyte"].to_numpy(str)),
            "time": ("obs", obs["time"].to_numpy(float)),
            **sample_coords,
        },
        attrs={"group": group, "censored_codes": str(CENSORED_CODES)},
    )

    # Dense curves: one grid per subject over its observed window.
    grids = [np.linspace(0.0, max(float(t.max()) if len(t) else 0.0, 1e-3), points) for t in lay.times]
    dense, failed_dense = _solve_batches(model, th, grids, events, settings, columns)
    conc = dense.reshape(len(chosen), len(subjects), points, len(analytes)).transpose(0, 1, 3, 2)
    lo, hi = _limits(dataset, analytes)
    meas, cens = _measure(conc, sg[:, None, :, None], lo[None, :, :, None], hi[None, :, :, None],
                          options, rng)
    units = dict(zip(model.analytes, (o.unit for o in model.observables), strict=True))
    curves = xr.Dataset(
        {
            "concentration": (("sample", "subject", "analyte", "point"), conc),
            "measurement": (("sample", "subject", "analyte", "point"), meas),
            "censored": (("sample", "subject", "analyte", "point"), cens),
            "lloq": (("subject", "analyte"), lo),
            "uloq": (("subject", "analyte"), hi),
        },
        coords={
            "subject": subjects,
            "analyte": list(analytes),
            "point": np.arange(points),
            "time": (("subject", "point"), np.stack(grids)),
            **sample_coords,
        },
        attrs={"group": group, "units": str({a: units[a] for a in analytes}), "time_unit": model.time_unit},
    )
    return Predictive(group, observed, curves, failures + failed_dense, seed)


# --------------------------------------------------------------------------------------------
# Posterior and prior
# --------------------------------------------------------------------------------------------
def posterior_predictive(
    idata: az.InferenceData, *, draws: int | None = DEFAULT_DRAWS, points: int = DEFAULT_POINTS, seed: int = 0
) -> Predictive:
    """Posterior predictive of a fit, at the observed samples and on dense curves.

    Parameters
    ----------
    idata
        A fit result (:func:`inference.fit.fit` or :func:`inference.fit.load_result`).
    draws
        Posterior draws to use (seeded random subset; None for all).
    points
        Points per dense curve (0 h to each subject's last sample).
    seed
        Seed of the draw selection and the simulated noise.

    Returns
    -------
    Predictive
    """
    from .record import read_record

    for group, var in (("posterior", "theta"), ("posterior", "sigma")):
        if group not in idata.groups() or var not in idata[group]:
            raise ValueError(f"the result has no {group}.{var}; is it a fit written by inference.fit.fit?")
    record = read_record(idata)
    return predict(record.ode_model, record.dataset, record.options,
                   idata.posterior["theta"], idata.posterior["sigma"], group="posterior",
                   draws=draws, points=points, seed=seed)


def sample_prior(
    model: str | OdeModel, dataset: Dataset, options: ModelOptions | None = None, *,
    draws: int = DEFAULT_DRAWS, seed: int = 0, var_names: list[str] | None = None,
) -> az.InferenceData:
    """Draw from the prior (and prior predictive) of the model :func:`build_model` builds.

    Parameters
    ----------
    model, dataset, options
        As for :func:`inference.build.build_model`.
    draws
        Number of prior draws.
    seed
        Random seed.
    var_names
        Variables to draw (default: every free parameter, ``theta``, ``sigma`` and ``log_y``).

    Returns
    -------
    arviz.InferenceData
        Groups ``prior`` and, when ``log_y`` is drawn, ``prior_predictive`` (log concentration),
        plus ``observed_data`` and ``constant_data``.
    """
    pm_model = build_model(model, dataset, options)
    if pm_model.fold is not None and var_names is not None:
        # Resolving the flip-flop pair recomputes deterministics from every free parameter.
        var_names = list(dict.fromkeys([*var_names, *(v.name for v in pm_model.free_RVs)]))
    with pm_model:
        idata = pm.sample_prior_predictive(draws=draws, random_seed=seed, var_names=var_names)
    if pm_model.fold is not None:
        idata.prior = resolve(idata.prior, pm_model, np.random.default_rng(seed))
    return idata


def prior_predictive(
    model: str | OdeModel, dataset: Dataset, options: ModelOptions | None = None, *,
    draws: int = DEFAULT_DRAWS, points: int = DEFAULT_POINTS, seed: int = 0,
) -> Predictive:
    """Prior predictive: what the priors alone say the data could look like (check before fitting).

    Parameter draws come from :func:`sample_prior` (the same PyMC builder the fit uses, so
    hierarchical structure, group effects and fixed values are as in the fit); measurements are then
    simulated exactly as for the posterior predictive.

    Returns
    -------
    Predictive
        With ``group == "prior"``.
    """
    model = get_model(model)
    options = options or ModelOptions()
    prior = sample_prior(model, dataset, options, draws=draws, seed=seed, var_names=["theta", "sigma"])
    return predict(model, dataset, options, prior.prior["theta"], prior.prior["sigma"], group="prior",
                   draws=None, points=points, seed=seed)

