"""Can the posterior be trusted? Simulation-based calibration and coverage on simulated subjects.

Both checks simulate subjects from a *design* (one subject of a real or shipped dataset: its
sample times per analyte, assay limits and inputs), fit each simulated subject with
:func:`inference.batch.fit_many`, and compare the posteriors with the truth:

``sbc`` (Talts et al. 2018, arXiv:1804.06788; Modrak et al. 2023, Bayesian Analysis,
doi:10.1214/23-BA1404)
    Every free parameter and every analyte's noise ``sigma`` is drawn from its prior, a dataset is
    simulated by :func:`inference.synthetic.simulate_dataset` (log-normal noise, left-censoring
    at the design's LLOQ: a simulator independent of the PyMC likelihood, so a wrong likelihood
    shows up), and the model is fitted. The rank of the true value among thinned posterior draws
    is uniform when the fitting is calibrated; the log-likelihood of the simulated data is ranked
    as a data-dependent test quantity (Modrak et al.), sensitive to errors that parameter ranks
    miss. Uniformity is tested per quantity with the simultaneous 95% band of the rank ECDF
    (Säilynoja, Bürkner and Vehtari 2022, Stat. Comput. 32:32), computed by ArviZ.
``coverage``
    The same simulated subjects: how often the central 50% and 90% posterior intervals contain
    the truth, the bias of the posterior median and the interval widths.

Why not ``simuk`` (the ArviZ ecosystem's SBC package): its current release 0.3.0 needs Python
>= 3.12 (this project runs on 3.11); 0.2.0 runs its own sequential loop of ``pm.sample`` on the
PyMC model's prior predictive (no nutpie, no Dask, no resuming), takes its data from the same
PyMC graph it tests (so it cannot catch a wrong likelihood), and plots with ``arviz_plots`` of
the ArviZ 1.0 stack, which does not sit beside ArviZ 0.23. Its rank statistic is the one-line
count used here; the band and its test come from ArviZ 0.23 (``ecdf_confidence_band``).
"""

from __future__ import annotations

import functools
import json
import math
import os
from dataclasses import dataclass

import numpy as np
import pandas as pd
import scipy.stats
from arviz.stats.ecdf_utils import ecdf_confidence_band

from models import ModelError, OdeModel, SolverError, get_model, solve

from .batch import BatchResult, FitTask, fit_many
from .build import SIGMA_PRIOR_DEFAULT, SIGMA_PRIOR_SCALE, ModelOptions, layout, subject_inputs
from .data import DataError, Dataset
from .sampler import SamplerSettings
from .synthetic import simulate_dataset

BAND_PROBABILITY = 0.95
LOG_LIKELIHOOD = "log_likelihood"
INTERVALS = (0.5, 0.9)
# Draws kept for ranking: ranks take L + 1 = 100 values (Talts et al. thin to about the ESS so
# that ranks are not inflated by autocorrelation; 99 of 4,000 draws are far apart).
RANK_DRAWS = 99
MAX_REDRAWS = 20  # per replicate: prior draws whose simulation fails before giving up


# --------------------------------------------------------------------------------------------
# Design and simulation
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Design:
    """What a simulated subject looks like: sample times per analyte, LLOQ per analyte, inputs."""

    times: dict[str, tuple[float, ...]]
    lloq: dict[str, float]
    inputs: dict[str, float]
    source: str


def design_from_dataset(model: str | OdeModel, dataset: Dataset, subject: str | None = None) -> Design:
    """Take the design of one subject of ``dataset`` (the only one unless ``subject`` is given).

    Raises
    ------
    DataError
        Several subjects and none chosen; an analyte with several LLOQs or an upper limit (the
        simulator censors at one lower limit per analyte).
    """
    model = get_model(model)
    if subject is None:
        if len(dataset.subject_ids) != 1:
            raise DataError(f"{dataset.source}: {len(dataset.subject_ids)} subjects; choose the design's "
                            f"subject (--subject), one of {list(dataset.subject_ids)}")
        subject = dataset.subject_ids[0]
    if subject not in dataset.subject_ids:
        raise DataError(f"{dataset.source}: no subject {subject!r}; subjects: {list(dataset.subject_ids)}")
    obs = dataset.observations[dataset.observations["subject"] == subject]
    times, lloq = {}, {}
    for analyte, rows in obs.groupby("analyte", sort=False):
        times[analyte] = tuple(float(t) for t in rows["time"])
        limits = rows["lloq"].dropna().unique()
        if len(limits) > 1:
            raise DataError(f"{dataset.source}, subject {subject}, analyte {analyte}: several LLOQs "
                            f"{sorted(limits)}; the simulation needs one per analyte")
        if len(limits):
            lloq[analyte] = float(limits[0])
        if "uloq" in rows and rows["uloq"].notna().any():
            raise DataError(f"{dataset.source}, analyte {analyte}: upper limits (uloq) are not simulated")
    row = dataset.subjects.loc[subject]
    inputs = {i.name: float(row[i.name]) if i.name in row.index else i.default for i in model.inputs}
    return Design(times, lloq, inputs, f"{dataset.source}, subject {subject}")


def quantities(model: OdeModel, options: ModelOptions, design: Design) -> list[str]:
    """Return the quantities checked: free parameters, ``sigma[analyte]`` per measured analyte."""
    return [p.name for p in model.parameters if p.name not in options.fixed] + \
        [f"sigma[{a}]" for a in model.analytes if a in design.times]


def draw_prior(model: OdeModel, options: ModelOptions, design: Design, rng: np.random.Generator) -> dict:
    """One draw of every free parameter and noise sd from the priors :func:`build_model` uses."""
    values = {p.name: float(options.priors.get(p.name, p.prior).sample(rng))
              for p in model.parameters if p.name not in options.fixed}
    for analyte in (a for a in model.analytes if a in design.times):
        scale = SIGMA_PRIOR_SCALE.get(analyte, SIGMA_PRIOR_DEFAULT)  # HalfNormal(scale)
        values[f"sigma[{analyte}]"] = float(abs(rng.standard_normal()) * scale)
    return values


def _check_options(model: OdeModel, options: ModelOptions) -> None:
    if options.random_effects or options.group_effects or options.covariates:
        raise ModelError("validation fits one simulated subject at a time: options must not have random, "
                         "group or covariate effects")
    if options.likelihood != "lognormal":
        raise ModelError("validation simulates log-normal noise; options.likelihood must be 'lognormal'")
    options.check(model)


@dataclass(frozen=True)
class Replicate:
    """One simulated subject: its true values and dataset, and how many prior draws were redrawn."""

    truth: dict[str, float]
    dataset: Dataset
    redraws: int


def simulate_replicates(model: str | OdeModel, design: Design, options: ModelOptions, n: int,
                        seed: int) -> list[Replicate]:
    """Draw ``n`` truths from the prior and simulate a dataset from each (deterministic in ``seed``).

    A prior draw whose simulation fails (the solver fails, or an observable is not positive) is
    redrawn and counted: SBC then checks the prior restricted to simulable draws.
    """
    model = get_model(model)
    _check_options(model, options)
    replicates = []
    for child in np.random.SeedSequence(seed).spawn(n):
        rng = np.random.default_rng(child)
        for redraws in range(MAX_REDRAWS):
            truth = draw_prior(model, options, design, rng)
            params = {**{k: v for k, v in truth.items() if not k.startswith("sigma[")}, **options.fixed}
            subjects = pd.DataFrame([{"subject": "sim", **params, **design.inputs}])
            sigma = {a: truth[f"sigma[{a}]"] for a in design.times}
            try:
                dataset = simulate_dataset(model, subjects, design.times, sigma=sigma, lloq=design.lloq,
                                           seed=int(rng.integers(2**31)), method=options.solver.method)
            except (SolverError, ValueError):
                continue
            replicates.append(Replicate(truth, dataset, redraws))
            break
        else:
            raise ModelError(f"model {model.name}: {MAX_REDRAWS} prior draws in a row could not be simulated")
    return replicates


def replicate_tasks(model: str | OdeModel, replicates: list[Replicate], options: ModelOptions,
                    sampler: SamplerSettings, seed: int) -> list[FitTask]:
    """One fit per replicate, the truth stored in the result's attrs (``truth``)."""
    return [FitTask(f"replicate-{i:04d}", model, r.dataset, options, seed + i, sampler,
                    attrs={"truth": json.dumps(r.truth, sort_keys=True), "redraws": str(r.redraws)})
            for i, r in enumerate(replicates)]


# --------------------------------------------------------------------------------------------
# Ranks and their uniformity
# --------------------------------------------------------------------------------------------
def rank(draws: np.ndarray, truth: float, n_rank_draws: int, rng: np.random.Generator) -> int:
    """Rank of ``truth`` among ``n_rank_draws`` evenly thinned ``draws``: an integer in [0, L].

    Ties (a discrete or stuck quantity) are broken at random, as Talts et al. prescribe.
    """
    draws = np.asarray(draws, dtype=float).ravel()
    if draws.size < n_rank_draws:
        raise ValueError(f"{draws.size} posterior draws; ranks need at least {n_rank_draws}")
    kept = draws[np.round(np.linspace(0, draws.size - 1, n_rank_draws)).astype(int)]
    below, ties = int(np.sum(kept < truth)), int(np.sum(kept == truth))
    return below + int(rng.integers(0, ties + 1))


@dataclass(frozen=True)
class Uniformity:
    """The rank ECDF of one quantity against its simultaneous band under uniform ranks."""

    points: np.ndarray  # evaluation points z_j = j / (L + 1)
    ecdf: np.ndarray  # fraction of ranks <= j - 1, i.e. of normalised ranks (rank + 1) / (L + 1) <= z_j
    lower: np.ndarray  # simultaneous band at z_j
    upper: np.ndarray

    @property
    def passed(self) -> bool:
        """True when the ECDF stays inside the band (uniformity not rejected at 5%)."""
        return bool(np.all((self.ecdf >= self.lower) & (self.ecdf <= self.upper)))

    @property
    def max_deviation(self) -> float:
        """Largest |ECDF - z| (the uniform CDF)."""
        return float(np.max(np.abs(self.ecdf - self.points)))


def rank_uniformity(ranks: np.ndarray, n_rank_draws: int, prob: float = BAND_PROBABILITY) -> Uniformity:
    """Test that ``ranks`` (integers in [0, L]) are uniform: the ECDF inside the simultaneous band.

    Under uniformity P(rank <= j - 1) = j / (L + 1) exactly, so the ECDF is evaluated at those
    points; ArviZ's optimised band holds all of them with probability ``prob`` at once.
    """
    ranks = np.asarray(ranks)
    if ranks.size < 2 or ranks.min() < 0 or ranks.max() > n_rank_draws:
        raise ValueError(f"ranks must be at least two integers in [0, {n_rank_draws}]")
    points = np.arange(1, n_rank_draws + 1) / (n_rank_draws + 1)
    ecdf = np.searchsorted(np.sort(ranks), np.arange(n_rank_draws), side="right") / ranks.size
    lower, upper = _band(ranks.size, n_rank_draws, prob)
    return Uniformity(points, ecdf, lower, upper)


@functools.lru_cache
def _band(n_replicates: int, n_rank_draws: int, prob: float) -> tuple[np.ndarray, np.ndarray]:
    # The band depends only on the number of replicates and rank values: computed once for
    # every quantity of a study.
    points = np.arange(1, n_rank_draws + 1) / (n_rank_draws + 1)
    return ecdf_confidence_band(n_replicates, points, points, prob=prob, method="optimized")


def log_likelihood(model: OdeModel, dataset: Dataset, options: ModelOptions, values: dict) -> float:
    """Log-likelihood of ``dataset`` at parameter and noise values, as the PyMC model defines it.

    Log-normal measurements (normal on the log scale, sd ``sigma[analyte]``); a left-censored
    sample contributes log P(below its limit), a right-censored one log P(above) (M3), exactly
    the ``log_likelihood`` group that :func:`inference.fit.fit` stores (a test checks this).
    """
    lay = layout(model, dataset)
    params = {**{k: v for k, v in values.items() if not k.startswith("sigma[")}, **options.fixed}
    theta = np.concatenate([[params[n] for n in model.parameter_names], subject_inputs(model, dataset)[0]])
    solution = solve(model, theta[None, :], lay.times, None, options.solver)
    obs = dataset.observations
    mu = np.log(solution.states[lay.obs_row, model.observable_states()[lay.obs_observable]])
    sd = obs["analyte"].map(lambda a: values[f"sigma[{a}]"]).to_numpy(float)
    x = np.log(obs["value"].to_numpy(float))
    censored = obs["censored"].to_numpy()
    terms = np.where(censored == "left", scipy.stats.norm.logcdf(x, mu, sd),
                     np.where(censored == "right", scipy.stats.norm.logsf(x, mu, sd),
                              scipy.stats.norm.logpdf(x, mu, sd)))
    return float(terms.sum())


def _posterior_values(idata, name: str) -> np.ndarray:
    """All posterior draws of a quantity (``sigma[TNF]`` selects the analyte), chains stacked."""
    if name.startswith("sigma["):
        return idata.posterior["sigma"].sel(analyte=name[6:-1]).values.ravel()
    values = idata.posterior[name]
    return values.values.ravel()


# --------------------------------------------------------------------------------------------
# Running a study
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Study:
    """Fitted replicates: per replicate the truth and the posterior summaries the checks need."""

    model: OdeModel
    options: ModelOptions
    design: Design
    quantities: list[str]
    ranks: pd.DataFrame  # replicate x (quantities + log_likelihood), integers in [0, n_rank_draws]
    intervals: pd.DataFrame  # replicate, quantity, truth, median, q05, q25, q75, q95
    fits: pd.DataFrame  # replicate, path, seconds, sampling_seconds, divergences, max_rhat, redraws
    failed: list[str]  # "name: error" of failed fits (left out of every statistic)
    n_rank_draws: int
    sampler: SamplerSettings
    seed: int
    seconds: float
    workers: int


def run_study(model: str | OdeModel, design: Design, n: int, out_dir: str | os.PathLike, *,
              options: ModelOptions | None = None, sampler: SamplerSettings | None = None, seed: int = 0,
              n_rank_draws: int = RANK_DRAWS, client=None, workers: int | None = None,
              progress: bool = True) -> Study:
    """Simulate ``n`` subjects from the prior and the design, fit them on Dask, summarise.

    Fits go to ``out_dir`` (one netCDF per replicate); a rerun with the same arguments reuses
    them. SBC (:func:`sbc_table`) and coverage (:func:`coverage_table`) read the same study.
    """
    import arviz as az

    from .fit import load_result

    model = get_model(model)
    options = options or ModelOptions()
    sampler = sampler or SamplerSettings()
    if sampler.draws * sampler.chains < n_rank_draws:
        raise ValueError(f"{sampler.chains} chains x {sampler.draws} draws: fewer than the "
                         f"{n_rank_draws} draws kept for ranks")
    replicates = simulate_replicates(model, design, options, n, seed)
    tasks = replicate_tasks(model, replicates, options, sampler, seed)
    batch: BatchResult = fit_many(tasks, client, out_dir, workers=workers, progress=progress)
    names = quantities(model, options, design)
    rng = np.random.default_rng(seed)
    rank_rows, interval_rows, fit_rows = [], [], []
    for task, outcome, replicate in zip(tasks, batch.outcomes, replicates, strict=True):
        if outcome.status == "failed":
            continue
        idata = load_result(outcome.path)
        truth = json.loads(idata.attrs["truth"])
        row = {"replicate": task.name}
        for name in names:
            draws = _posterior_values(idata, name)
            row[name] = rank(draws, truth[name], n_rank_draws, rng)
            q05, q25, q50, q75, q95 = np.quantile(draws, [0.05, 0.25, 0.5, 0.75, 0.95])
            interval_rows.append({"replicate": task.name, "quantity": name, "truth": truth[name],
                                  "median": q50, "q05": q05, "q25": q25, "q75": q75, "q95": q95})
        draws = idata.log_likelihood["log_y"].sum("obs").values.ravel()
        row[LOG_LIKELIHOOD] = rank(draws, log_likelihood(model, replicate.dataset, options, truth),
                                   n_rank_draws, rng)
        rank_rows.append(row)
        rhat = az.rhat(idata, var_names=[n for n in idata.posterior.data_vars if n != "theta"])
        # A skipped (earlier) result's time is the one stored with it; NaN in files without it.
        seconds = float(idata.attrs.get("task_seconds", "nan")) if outcome.status == "skipped" \
            else outcome.seconds
        fit_rows.append({"replicate": task.name, "path": str(outcome.path), "seconds": seconds,
                         "sampling_seconds": float(idata.attrs["sampling_seconds"]),
                         "divergences": int(idata.sample_stats["diverging"].sum()),
                         "max_rhat": float(max(float(rhat[v].max()) for v in rhat.data_vars)),
                         "redraws": replicate.redraws})
    failed = [f"{o.name}: {o.error}" for o in batch.failed]
    if not rank_rows:
        raise ModelError(f"every fit failed; first error: {failed[0]}")
    return Study(model, options, design, names, pd.DataFrame(rank_rows), pd.DataFrame(interval_rows),
                 pd.DataFrame(fit_rows), failed, n_rank_draws, sampler, seed, batch.seconds, batch.workers)


def sbc_table(study: Study) -> tuple[pd.DataFrame, dict[str, Uniformity]]:
    """Per quantity: replicates, mean normalised rank, largest ECDF deviation, band test result."""
    rows, tests = [], {}
    for name in [*study.quantities, LOG_LIKELIHOOD]:
        ranks = study.ranks[name].to_numpy()
        test = rank_uniformity(ranks, study.n_rank_draws)
        tests[name] = test
        rows.append({"quantity": name, "replicates": ranks.size,
                     "mean_rank": float(np.mean(ranks) / study.n_rank_draws),
                     "max_ecdf_deviation": test.max_deviation, "passed": test.passed})
    return pd.DataFrame(rows), tests


def coverage_table(study: Study) -> pd.DataFrame:
    """Tabulate coverage of the central 50% and 90% intervals, bias and widths per quantity.

    Coverage comes with 95% Clopper-Pearson intervals; bias is that of the posterior median.
    """
    rows = []
    for name, part in study.intervals.groupby("quantity", sort=False):
        row = {"quantity": name, "replicates": len(part)}
        for level, (lo, hi) in ((0.5, ("q25", "q75")), (0.9, ("q05", "q95"))):
            inside = int(((part[lo] <= part["truth"]) & (part["truth"] <= part[hi])).sum())
            ci = scipy.stats.binomtest(inside, len(part)).proportion_ci(0.95)
            tag = f"{round(level * 100)}"
            row.update({f"coverage_{tag}": inside / len(part), f"coverage_{tag}_low": ci.low,
                        f"coverage_{tag}_high": ci.high, f"width_{tag}": float((part[hi] - part[lo]).mean())})
        row["bias"] = float((part["median"] - part["truth"]).mean())
        row["bias_se"] = float((part["median"] - part["truth"]).std(ddof=1) / math.sqrt(len(part))) \
            if len(part) > 1 else float("nan")
        row["passed"] = all(row[f"coverage_{t}_low"] <= level <= row[f"coverage_{t}_high"]
                            for t, level in (("50", 0.5), ("90", 0.9)))
        rows.append(row)
    return pd.DataFrame(rows)
