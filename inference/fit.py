"""Fitting: sample a built model with nutpie (default) or PyMC's NUTS and keep everything.

The result is one ArviZ ``InferenceData`` with posterior, sample_stats, log_likelihood,
posterior_predictive, observed_data and constant_data. Its ``attrs`` hold what is needed to
reproduce and rebuild the fit: model name, options (priors, structure, solver settings), the
dataset itself, seed, sampler settings, solver failures and package versions.
"""

from __future__ import annotations

import multiprocessing
import os
import sys
import time
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path
from typing import Any

import arviz as az
import numpy as np
import pymc as pm

from models import ModelError, OdeModel, get_model

from .build import ModelOptions, build_model, default_options
from .data import Dataset
from .files import write_atomically
from .fold import resolve
from .record import RESULT_ATTRS, ResultError, RunRecord, write_record
from .sampler import SamplerSettings

PACKAGES = ("cytokine-balance", "pymc", "pytensor", "arviz", "nutpie", "numba", "numpy", "scipy")


def _versions() -> dict[str, str]:
    return {name: version(name) for name in PACKAGES}


def sampler_settings(settings: SamplerSettings | None = None, **changes) -> SamplerSettings:
    """Return ``settings`` (default :class:`SamplerSettings`) with ``changes`` applied, validated.

    Raises
    ------
    ModelError
        An unknown setting (naming the known ones) or a value out of range.
    """
    unknown = sorted(set(changes) - set(SamplerSettings.field_names()))
    if unknown:
        raise ModelError(f"unknown sampler setting(s) {unknown}; "
                         f"expected {list(SamplerSettings.field_names())}")
    return replace(settings or SamplerSettings(), **changes)


def _compile_nutpie(pm_model: pm.Model):
    import nutpie

    return nutpie.compile_pymc_model(pm_model, backend="numba")


def fit(
    model: str | OdeModel,
    dataset: Dataset,
    options: ModelOptions | None = None,
    settings: SamplerSettings | None = None,
    *,
    progress: bool = True,
    compile_model: Callable[[pm.Model], Any] | None = None,
    **sampler: str | int | float,
) -> az.InferenceData:
    """Fit ``model`` to ``dataset`` by NUTS and return the full InferenceData.

    Parameters
    ----------
    model
        Library name, ``path/to/file.py:NAME`` (a user's model, stored with the result) or model
        object.
    dataset
        A validated dataset.
    options
        Model options (priors, fixed parameters, cohort structure, likelihood, solver); by
        default :func:`~inference.build.default_options` (hierarchical for a cohort).
    settings
        Sampler settings (:class:`~inference.sampler.SamplerSettings`; its defaults if None).
    progress
        Show progress bars (terminal or notebook).
    compile_model
        nutpie only: turns the built PyMC model into nutpie's compiled model, in place of
        ``nutpie.compile_pymc_model(pm_model, backend="numba")``. :func:`inference.batch.fit_many`
        passes one that reuses a compiled model for datasets of the same layout.
    **sampler
        Single sampler settings replacing those of ``settings`` (``sampler``, ``draws``, ``tune``,
        ``chains``, ``target_accept``, ``seed``), e.g. ``fit(model, data, draws=500, seed=1)``.

    Returns
    -------
    arviz.InferenceData
        With its run record (:func:`inference.record.read_record`) in ``attrs``, including the
        number of failed solves during sampling (each rejected a proposal).
    """
    settings = sampler_settings(settings, **sampler)
    model = get_model(model)
    options = options or default_options(model, dataset)
    pm_model = build_model(model, dataset, options)
    op = pm_model.ode_op
    op.failures.reset()
    start = time.perf_counter()
    draws, tune, chains, seed = settings.draws, settings.tune, settings.chains, settings.seed
    if settings.sampler == "nutpie":
        import nutpie

        compiled = (compile_model or _compile_nutpie)(pm_model)
        compile_seconds = time.perf_counter() - start
        idata = nutpie.sample(
            compiled, draws=draws, tune=tune, chains=chains, seed=seed,
            target_accept=settings.target_accept, progress_bar=progress, save_warmup=False,
            low_rank_modified_mass_matrix=True,
        )
        # nutpie also stores the sampler's unconstrained coordinates (``k_T_log__``); keep the
        # model's own variables, as PyMC does.
        idata.posterior = idata.posterior.drop_vars(
            [v for v in idata.posterior.data_vars if v.endswith("__")]
        )
    else:
        compile_seconds = 0.0
        # A Dask worker is a daemon process, which may not start the processes of parallel chains.
        cores = 1 if multiprocessing.current_process().daemon else min(chains, os.cpu_count() or 1)
        with pm_model:
            idata = pm.sample(
                draws=draws, tune=tune, chains=chains, cores=cores,
                target_accept=settings.target_accept, random_seed=seed, progressbar=progress,
                compute_convergence_checks=False,
            )
    sampling_seconds = time.perf_counter() - start - compile_seconds
    failures = op.failures.reset()
    if pm_model.fold is not None:
        idata.posterior = resolve(idata.posterior, pm_model, np.random.default_rng(seed))
    with pm_model:
        pm.compute_log_likelihood(idata, var_names=["log_y"], progressbar=False)
        idata.extend(pm.sample_posterior_predictive(
            idata, var_names=["log_y"], random_seed=seed + 1, progressbar=False,
        ), join="right")
    write_record(idata, RunRecord(
        model=model.name, model_source=model.source, options=options, dataset=dataset, sampler=settings,
        solver_failures=failures,
        timings={"compile_seconds": compile_seconds, "sampling_seconds": sampling_seconds},
        created=datetime.now(UTC).isoformat(timespec="seconds"), python=sys.version.split()[0],
        versions=_versions(),
    ))
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
    """Raise ResultError unless ``idata`` is a fit result (posterior plus the fit's run record)."""
    missing = [k for k in RESULT_ATTRS if k not in idata.attrs]
    if missing or "posterior" not in idata.groups():
        raise ResultError(
            f"{name}: not a fit result written by cytokine-balance (missing {missing or ['posterior']})"
        )


__all__ = [
    "ResultError",
    "check_result",
    "fit",
    "load_result",
    "sampler_settings",
    "save_result",
]
