"""Fitting: sample a built model with nutpie (default) or PyMC's NUTS and keep everything.

The result is one ArviZ ``InferenceData`` with posterior, sample_stats, log_likelihood,
posterior_predictive, observed_data and constant_data. Its ``attrs`` hold what is needed to
reproduce and rebuild the fit: model name, options (priors, structure, solver settings), the
dataset itself, seed, sampler settings, solver failures and package versions.
"""

from __future__ import annotations

import io
import json
import os
import sys
import time
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path

import arviz as az
import pandas as pd
import pymc as pm

from models import OdeModel, get_model

from .build import ModelOptions, build_model, default_options
from .data import Dataset
from .files import write_atomically

SAMPLERS = ("nutpie", "pymc")
RESULT_ATTRS = ("model", "options", "dataset_observations")


class ResultError(ValueError):
    """A file or InferenceData is not a fit result written by :func:`fit`."""
PACKAGES = ("cytokine-balance", "pymc", "pytensor", "arviz", "nutpie", "numba", "numpy", "scipy")


def _versions() -> dict[str, str]:
    return {name: version(name) for name in PACKAGES}


def _frame_json(frame: pd.DataFrame) -> str:
    return frame.to_json(orient="split", index=False)


def fit(
    model: str | OdeModel,
    dataset: Dataset,
    options: ModelOptions | None = None,
    *,
    sampler: str = "nutpie",
    draws: int = 1000,
    tune: int = 1000,
    chains: int = 4,
    target_accept: float = 0.95,
    seed: int = 0,
    progress: bool = True,
) -> az.InferenceData:
    """Fit ``model`` to ``dataset`` by NUTS and return the full InferenceData.

    Parameters
    ----------
    model
        Library name or model object.
    dataset
        A validated dataset.
    options
        Model options (priors, fixed parameters, cohort structure, likelihood, solver); by
        default :func:`~inference.build.default_options` (hierarchical for a cohort).
    sampler
        ``"nutpie"`` (numba backend; the solver compiled into the log density) or ``"pymc"``.
    draws, tune, chains, target_accept
        NUTS settings.
    seed
        Seeds sampling and posterior-predictive draws: the same seed gives the same result.
    progress
        Show progress bars (terminal or notebook).

    Returns
    -------
    arviz.InferenceData
        With ``attrs["solver_failures"]``: the number of failed solves during sampling (each
        rejected a proposal).
    """
    if sampler not in SAMPLERS:
        raise ValueError(f"sampler must be one of {SAMPLERS}, got {sampler!r}")
    model = get_model(model)
    options = options or default_options(model, dataset)
    pm_model = build_model(model, dataset, options)
    op = pm_model.ode_op
    op.failures.reset()
    start = time.perf_counter()
    if sampler == "nutpie":
        import nutpie

        compiled = nutpie.compile_pymc_model(pm_model, backend="numba")
        compile_seconds = time.perf_counter() - start
        idata = nutpie.sample(
            compiled, draws=draws, tune=tune, chains=chains, seed=seed,
            target_accept=target_accept, progress_bar=progress, save_warmup=False,
            low_rank_modified_mass_matrix=True,
        )
        # nutpie also stores the sampler's unconstrained coordinates (``k_T_log__``); keep the
        # model's own variables, as PyMC does.
        idata.posterior = idata.posterior.drop_vars(
            [v for v in idata.posterior.data_vars if v.endswith("__")]
        )
    else:
        compile_seconds = 0.0
        with pm_model:
            idata = pm.sample(
                draws=draws, tune=tune, chains=chains, cores=min(chains, os.cpu_count() or 1),
                target_accept=target_accept, random_seed=seed, progressbar=progress,
                compute_convergence_checks=False,
            )
    sampling_seconds = time.perf_counter() - start - compile_seconds
    failures = op.failures.reset()
    with pm_model:
        pm.compute_log_likelihood(idata, var_names=["log_y"], progressbar=False)
        idata.extend(pm.sample_posterior_predictive(
            idata, var_names=["log_y"], random_seed=seed + 1, progressbar=False,
        ), join="right")
    idata.attrs.update({
        "model": model.name,
        "options": options.to_json(),
        "dataset_source": dataset.source,
        "dataset_observations": _frame_json(dataset.observations),
        "dataset_subjects": _frame_json(dataset.subjects.reset_index()),
        "dataset_events": _frame_json(dataset.events),
        "sampler": sampler,
        "draws": draws,
        "tune": tune,
        "chains": chains,
        "target_accept": target_accept,
        "seed": seed,
        "solver_method": options.solver.method,
        "solver_rtol": options.solver.rtol,
        "solver_atol": options.solver.atol,
        "solver_max_steps": options.solver.max_steps,
        "solver_failures": failures,
        "compile_seconds": round(compile_seconds, 3),
        "sampling_seconds": round(sampling_seconds, 3),
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "python": sys.version.split()[0],
        "versions": json.dumps(_versions(), sort_keys=True),
    })
    return idata


def save_result(idata: az.InferenceData, path: str | Path, *, overwrite: bool = False) -> Path:
    """Write ``idata`` to netCDF atomically (temporary file in the same folder, then rename).

    Raises
    ------
    FileExistsError
        ``path`` exists and ``overwrite`` is false.
    """
    return write_atomically(path, lambda tmp: idata.to_netcdf(str(tmp), engine="h5netcdf"),
                            overwrite=overwrite)


def load_result(path: str | Path) -> az.InferenceData:
    """Read a result written by :func:`save_result` (fully loaded, file closed).

    Raises
    ------
    ResultError
        The file cannot be read as InferenceData or is not a fit result.
    """
    try:
        idata = az.from_netcdf(str(path), engine="h5netcdf")
    except (OSError, ValueError) as error:
        raise ResultError(f"{path}: not a readable InferenceData netCDF file ({error})") from None
    idata.load()
    check_result(idata, str(path))
    return idata


def check_result(idata: az.InferenceData, name: str = "InferenceData") -> None:
    """Raise ResultError unless ``idata`` is a fit result (posterior plus the fit's attrs)."""
    missing = [k for k in RESULT_ATTRS if k not in idata.attrs]
    if missing or "posterior" not in idata.groups():
        raise ResultError(
            f"{name}: not a fit result written by cytokine-balance (missing {missing or ['posterior']})"
        )


def result_model(idata: az.InferenceData) -> OdeModel:
    """Return the library model a result was fitted with."""
    return get_model(idata.attrs["model"])


def result_options(idata: az.InferenceData) -> ModelOptions:
    """Return the model options a result was fitted with."""
    return ModelOptions.from_json(idata.attrs["options"])


def result_dataset(idata: az.InferenceData) -> Dataset:
    """Return the dataset a result was fitted to, exactly as it was used."""
    def frame(key):
        return pd.read_json(io.StringIO(idata.attrs[key]), orient="split")

    subjects = frame("dataset_subjects")
    subjects["subject"] = subjects["subject"].astype(str)
    observations = frame("dataset_observations")
    observations["subject"] = observations["subject"].astype(str)
    events = frame("dataset_events")
    if len(events):
        events["subject"] = events["subject"].astype(str)
    return Dataset(
        observations=observations,
        subjects=subjects.set_index("subject"),
        events=events,
        source=idata.attrs["dataset_source"],
    )


def solver_failures(idata: az.InferenceData) -> int:
    """Return the number of failed solves (rejected proposals) during sampling."""
    return int(idata.attrs.get("solver_failures", 0))


__all__ = [
    "SAMPLERS",
    "ResultError",
    "check_result",
    "fit",
    "load_result",
    "result_dataset",
    "result_model",
    "result_options",
    "save_result",
    "solver_failures",
]
