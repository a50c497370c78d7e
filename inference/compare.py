"""Hypothesis comparison: which hypothesis about cytokine balance the data support.

Given fitted results (or a dataset and :class:`~inference.hypotheses.Hypothesis` objects, which
are fitted first, one after another), :func:`compare` reports

- **prediction**, with ArviZ: PSIS-LOO per observation (elpd, its SE, differences to the best
  hypothesis with the SE of the difference, Pareto k), stacking weights and, for cohorts,
  leave-one-subject-out (PSIS on the pointwise log-likelihood summed per subject: how well a
  hypothesis predicts a new subject's whole time course). Where Pareto k is too high for the
  importance-sampling estimate, the data are refitted exactly, as in ``az.reloo``: every flagged
  subject (``exact_lso``: by default when a Dask cluster or :data:`EXACT_LSO_CORES` cores are at
  hand) and up to ``refit_bad_k`` flagged observations per hypothesis. All refits run as one
  batch on :func:`inference.batch.fit_many`;
- **evidence**: each hypothesis' log marginal likelihood with its error (bridge sampling on the
  NUTS draws, or SMC), log Bayes factors against the best, and the Savage-Dickey density ratio
  for nested pairs (a parameter held at a value against the same parameter free) as a
  cross-check (:mod:`inference.evidence`);
- **a verdict** in plain language: a ranking (hypotheses whose sampling diagnostics failed are
  marked and ranked after the sound ones), what the data separate and what they do not (two
  hypotheses within 2 SE of each other are not separated), and warnings.

:func:`compare` returns the :class:`Comparison` (data); :func:`inference.report.write_comparison`
saves it as ``comparison.json`` (machine-readable) and ``comparison.html`` (the page,
:mod:`inference.report.comparison`). The parts live in their own modules: PSIS helpers in
:mod:`inference.loo`, exact refits in :mod:`inference.refit` (scored by :mod:`inference.heldout`),
the ranking and the verdict in :mod:`inference.verdict`.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path
from typing import Any

import arviz as az
import numpy as np
import pandas as pd

from models import ModelError

from . import loo as psis
from .batch import fit_many
from .data import DataError, Dataset
from .diagnostics import Thresholds
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
from .files import check_free
from .fit import fit, load_result, sampler_settings, save_result
from .hypotheses import Hypothesis, check_hypotheses
from .record import read_record, write_record
from .refit import LeaveObservationOut, LeaveSubjectOut, refit_task, score
from .sampler import SamplerSettings
from .verdict import SEPARATION_SE, check_diagnostics, rank_hypotheses, write_verdict

__all__ = ["EXACT_LSO_CORES", "EXACT_LSO_MODES", "Comparison", "compare", "exact_lso_decision",
           "fit_hypotheses"]


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
                name = read_record(item).hypothesis
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
    records = {name: read_record(idata) for name, idata in named.items()}
    reference_name = next(iter(records))
    reference = records[reference_name].dataset
    for name, record in records.items():
        if not record.dataset.observations.equals(reference.observations):
            raise DataError(f"results {reference_name!r} and {name!r} were fitted to different data "
                            f"({reference.source} vs {record.dataset.source}); "
                            "their elpd and evidence are not comparable")
    return named


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
    exact_lso : dict
        Whether every flagged subject was refitted exactly (``mode``, ``on``, ``reason``) and, if
        so, how many were flagged, refitted, skipped or failed, on how many Dask workers, in how
        many seconds (``seconds``: wall time of the whole refit batch).
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
    exact_lso: dict[str, Any]
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
            "exact_lso": dict(self.exact_lso),
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


# --------------------------------------------------------------------------------------------
# Fitting hypotheses
# --------------------------------------------------------------------------------------------
def fit_hypotheses(
    dataset: Dataset,
    hypotheses: Sequence[Hypothesis],
    *,
    out_dir: str | Path | None = None,
    force: bool = False,
    settings: SamplerSettings | None = None,
    progress: bool = False,
    **sampler: str | int | float,
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
    settings, progress, **sampler
        As in :func:`inference.fit.fit`.

    Returns
    -------
    dict of str to InferenceData
        In the order of ``hypotheses``; each with the hypothesis name and declaration in its run
        record (:func:`inference.record.read_record`).
    """
    check_hypotheses(hypotheses, dataset)
    settings = sampler_settings(settings, **sampler)
    if out_dir is not None:
        check_free([Path(out_dir) / f"{h.name}.nc" for h in hypotheses], force)
    order = sorted(hypotheses, key=lambda h: [x.model for x in hypotheses].index(h.model))
    fitted = {}
    for h in order:
        idata = fit(h.model, dataset, h.options, settings, progress=progress)
        write_record(idata, replace(read_record(idata), hypothesis=h.name, declaration=h.to_dict()))
        if out_dir is not None:
            save_result(idata, Path(out_dir) / f"{h.name}.nc", overwrite=force)
        fitted[h.name] = idata
    return {h.name: fitted[h.name] for h in hypotheses}


def _declaration(name: str, idata: az.InferenceData) -> dict:
    """Return what a result's hypothesis declared (stored by :func:`fit_hypotheses`, else its options)."""
    record = read_record(idata)
    if record.declaration is not None:
        return dict(record.declaration) | {"name": name}
    options = json.loads(record.options.to_json())
    return {"name": name, "model": record.model, "description": ""} | options


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
    settings: SamplerSettings | None = None,
    progress: bool = False,
    refit_bad_k: int = 0,
    exact_lso: str = "auto",
    client=None,
    workers: int | None = None,
    evidence: str | None = "bridge",
    thresholds: Thresholds | None = None,
    effect_draws: int = 10,
    **sampler: str | int | float,
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
        If given, fits made here are saved there as ``<name>.nc``, each as soon as it is done;
        existing files are an error (found before any work) unless ``force``. Exact refits go
        to ``out_dir/refits/`` (keyed by content, so a rerun reuses them; without ``out_dir``, a
        temporary folder). The comparison itself is written by
        :func:`inference.report.write_comparison`.
    force
        Replace existing result files.
    settings, progress, **sampler
        Sampler settings for fits made here, as in :func:`inference.fit.fit` (refits reuse each
        result's own settings). Their seed also seeds the evidence and the leave-subject-out
        effect draws; their draws and chains size SMC runs.
    refit_bad_k
        At most this many exact refits per hypothesis for observations whose Pareto k is above
        the threshold (worst first). 0: only warn.
    exact_lso
        Refit every subject whose leave-subject-out Pareto k is above the threshold exactly:
        ``"always"``, ``"never"`` or ``"auto"`` (default: when ``client`` is given or the machine
        has at least :data:`EXACT_LSO_CORES` cores; see :func:`exact_lso_decision`).
    client, workers
        Where the refits run: a ``distributed.Client`` of an existing cluster, or (``None``) an
        embedded local cluster of ``workers`` workers (default
        :func:`inference.batch.default_workers`), as in :func:`inference.batch.fit_many`.
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
    lso_on, lso_reason = exact_lso_decision(exact_lso, client)
    if (results is None) == (dataset is None or hypotheses is None):
        raise ModelError("pass either results, or dataset and hypotheses")
    settings = sampler_settings(settings, **sampler)
    seed = settings.seed
    if results is None:
        if len(hypotheses) < 2:
            raise ModelError(f"compare needs at least two hypotheses, got {len(hypotheses)}")
        results = fit_hypotheses(dataset, hypotheses, out_dir=out_dir, force=force, settings=settings,
                                 progress=progress)
    named = _named_results(results)
    data = read_record(next(iter(named.values()))).dataset
    declarations = {n: _declaration(n, idata) for n, idata in named.items()}
    diagnostics = {n: check_diagnostics(idata, thresholds) for n, idata in named.items()}
    refit_dir = None if out_dir is None else Path(out_dir) / "refits"
    loo, lso, refits, lso_summary = _predictive(
        named, data, refit_bad_k, lso_on, effect_draws, seed,
        runner=dict(client=client, workers=workers, out_dir=refit_dir, progress=progress))
    lso_summary = {"mode": exact_lso, "on": lso_on, "reason": lso_reason} | lso_summary
    ranking = rank_hypotheses({n: loo[n].elpd_loo for n in named},
                              {n: diagnostics[n]["status"] for n in named})
    with psis.quiet_psis():
        az_table = az.compare({n: loo[n] for n in ranking}, ic="loo", method="stacking", scale="log")
        lso_weights = (az.compare({n: lso[n] for n in ranking}, ic="loo", method="stacking",
                                  scale="log")["weight"] if lso else None)
    ev, densities, notes = _evidence(named, evidence, seed, smc_particles=max(settings.draws, 500),
                                     smc_runs=max(settings.chains, 2))
    sd_rows = _savage_dickey(named, declarations, densities, ev)
    table = _table(ranking, loo, lso, az_table["weight"], lso_weights, ev, diagnostics)
    verdict, warns = write_verdict(table, sd_rows, refits, lso_summary)
    fits = {}
    for n, idata in named.items():
        recorded = read_record(idata).sampler
        fits[n] = {k: recorded.to_dict()[k] if recorded else None
                   for k in ("sampler", "draws", "tune", "chains", "seed")}
    settings = {"evidence": evidence, "refit_bad_k": refit_bad_k, "exact_lso": exact_lso,
                "pareto_k_threshold": psis.PARETO_K_THRESHOLD,
                "separation_se": SEPARATION_SE,
                "diagnostic_thresholds": dict(vars(thresholds or Thresholds())),
                "effect_draws": effect_draws, "seed": seed, "fits": fits}
    comparison = Comparison(
        results=dict(named), table=table, ranking=ranking, verdict=verdict, warnings=warns + notes,
        loo=loo, lso=lso, evidence=ev, savage_dickey=sd_rows, refits=refits, exact_lso=lso_summary,
        hypotheses=declarations,
        settings=settings, dataset=data, arviz_table=az_table,
    )
    return comparison


#: Cores from which exact leave-subject-out refits are on by default (``exact_lso="auto"``).
EXACT_LSO_CORES = 4
EXACT_LSO_MODES = ("auto", "always", "never")


def exact_lso_decision(mode: str, client=None, cores: int | None = None) -> tuple[bool, str]:
    """Decide whether flagged subjects are refitted exactly; return (on, the reason in words).

    ``"auto"`` turns the refits on when a Dask cluster is given (``client``) or the machine has
    at least :data:`EXACT_LSO_CORES` cores: a refit costs a fit of the cohort, and a
    hierarchical fit typically flags most subjects, so on a small machine (a 2-core CI runner)
    they are an explicit choice (``"always"``).
    """
    if mode not in EXACT_LSO_MODES:
        raise ModelError(f"exact_lso must be one of {list(EXACT_LSO_MODES)}, got {mode!r}")
    if mode != "auto":
        return mode == "always", f"exact_lso={mode!r}"
    if client is not None:
        return True, "auto: a Dask cluster was given"
    cores = cores or os.cpu_count() or 1
    if cores >= EXACT_LSO_CORES:
        return True, f"auto: {cores} cores"
    return False, f"auto: only {cores} cores (fewer than {EXACT_LSO_CORES}) and no Dask cluster"


def _task_name(*parts: str) -> str:
    """Return a fit-task name made of free text (hypothesis and subject names may hold any characters)."""
    return "-".join(re.sub(r"[^A-Za-z0-9_.]+", "_", str(p)) for p in parts)


def _predictive(named, data: Dataset, refit_bad_k: int, exact_lso: bool, effect_draws: int, seed: int,
                runner: dict):
    """PSIS-LOO per observation and per subject, with exact refits where Pareto k is high.

    The refits of all hypotheses are one :func:`~inference.batch.fit_many` batch; each is scored
    by its :class:`~inference.refit.LeaveOut` in this process.
    """
    loo, lso, refits, jobs = {}, {}, {}, []
    n_flagged = 0
    for name, idata in named.items():
        refits[name] = {"loo": [], "lso": []}
        loo[name] = psis.loo(idata)
        for i in psis.flagged(loo[name], refit_bad_k):
            jobs.append((name, "loo", i, LeaveObservationOut(i), float(loo[name].pareto_k.values[i])))
        if len(data.subject_ids) < 2:
            continue
        lso[name] = psis.loo(psis.per_subject(idata))
        flagged = psis.flagged(lso[name], len(data.subject_ids))
        n_flagged += len(flagged)
        for i in flagged if exact_lso else ():
            leave_out = LeaveSubjectOut(data.subject_ids[i], effect_draws, seed)
            jobs.append((name, "lso", i, leave_out, float(lso[name].pareto_k.values[i])))
    summary = {"subjects_flagged": n_flagged, "subjects_refitted": 0, "subjects_skipped": 0,
               "subjects_failed": 0, "seconds": 0.0, "workers": 0}
    tasks, exact = {}, {(name, level): {} for name in named for level in ("loo", "lso")}
    for job in jobs:
        name, level, _, leave_out, k = job
        label = leave_out.label(data)
        task_name = _task_name(name, level, *label.values())
        try:
            tasks[task_name] = job, refit_task(named[name], leave_out, task_name)
        except DataError as error:  # the only subject of its group, under a group effect
            refits[name][level].append(label | {"pareto_k": k, "skipped": str(error)})
            summary["subjects_skipped"] += level == "lso"
    if tasks:
        if runner["progress"]:
            counts = {n: sum(job[0] == n and job[1] == "lso" for job, _ in tasks.values()) for n in named}
            print(f"exact refits: {sum(counts.values())} subjects ("
                  + ", ".join(f"{n}: {c}" for n, c in counts.items() if c)
                  + f") and {len(tasks) - sum(counts.values())} observations", flush=True)
        with _refit_folder(runner["out_dir"]) as folder:
            batch = fit_many([task for _, task in tasks.values()], runner["client"], folder,
                             workers=runner["workers"], progress=runner["progress"])
            outcomes = {o.name: o for o in batch.outcomes}
            for task_name, ((name, level, i, leave_out, k), _) in tasks.items():
                outcome = outcomes[task_name]
                if outcome.status == "failed":
                    failure = {"pareto_k": k, "failed": outcome.error}
                    refits[name][level].append(leave_out.label(data) | failure)
                    summary["subjects_failed"] += level == "lso"
                    continue
                row = score(named[name], leave_out, load_result(outcome.path))
                refits[name][level].append(row | {"pareto_k": k, "seconds": outcome.seconds})
                exact[name, level][i] = row["elpd"]
                summary["subjects_refitted"] += level == "lso"
        summary |= {"seconds": batch.seconds, "workers": batch.workers}
    for name in named:
        loo[name] = psis.replace_pointwise(loo[name], exact[name, "loo"])
        if name in lso:
            lso[name] = psis.replace_pointwise(lso[name], exact[name, "lso"])
    return loo, lso, refits, summary


@contextlib.contextmanager
def _refit_folder(out_dir: Path | None):
    """Yield the refits' folder: ``out_dir`` (kept, so a rerun reuses them) or a temporary one."""
    if out_dir is not None:
        yield out_dir
        return
    with tempfile.TemporaryDirectory(prefix="cytokine-refits-") as folder:
        yield folder


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
        record = read_record(named[alt])
        prior = record.options.priors.get(parameter, record.ode_model.parameter(parameter).prior)
        row = {"null": null, "alternative": alt}
        reason = savage_dickey_undefined(parameter, value, prior)
        if reason is None and parameter not in {rv.name for rv in densities[alt].model.free_RVs}:
            reason = (f"{parameter} is sampled jointly with its flip-flop partner (inference.fold), not "
                      "on a coordinate of its own; the bridge-sampling Bayes factor stands alone")
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
        diff, dse = psis.difference(loo[best], elpd) if name != best else (0.0, 0.0)
        row = {"name": name, "rank": rank, "elpd_loo": elpd.elpd_loo, "se": elpd.se, "p_loo": elpd.p_loo,
               "elpd_diff": diff, "dse": dse, "weight": float(weights[name]),
               "max_pareto_k": float(np.max(k)), "k_threshold": psis.threshold(elpd),
               "n_high_k": int(np.sum(k > psis.threshold(elpd))), "n_observations": len(k)}
        row |= dict.fromkeys(("elpd_lso", "elpd_lso_se", "p_lso", "elpd_lso_diff", "elpd_lso_dse",
                              "lso_weight", "max_pareto_k_lso"), np.nan) | {"n_high_k_lso": 0}
        if name in lso:
            subjects = lso[name]
            ks = np.asarray(subjects.pareto_k.values, float)
            diff, dse = psis.difference(lso[best], subjects) if name != best else (0.0, 0.0)
            row |= {"elpd_lso": subjects.elpd_loo, "elpd_lso_se": subjects.se, "p_lso": subjects.p_loo,
                    "elpd_lso_diff": diff, "elpd_lso_dse": dse, "lso_weight": float(lso_weights[name]),
                    "max_pareto_k_lso": float(np.max(ks)),
                    "n_high_k_lso": int(np.sum(ks > psis.threshold(subjects)))}
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
