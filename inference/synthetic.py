"""Simulated datasets with known truth: for testing the inference end to end.

:func:`simulate_dataset` turns a table of subjects (true parameter values and inputs) into a
validated :class:`~inference.data.Dataset`: the model's observables at the sample times with
log-normal measurement noise, left-censoring below a lower limit of quantification and missing
samples, every random draw from one seeded generator.

``python -m inference.synthetic [--output FOLDER]`` regenerates every dataset shipped under
``data/`` (deterministically, from fixed seeds), each with its ``truth.csv`` and a README.md that
says how it was made.
"""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.special

from models import OdeModel, SolverError, SolverSettings, get_model, solve

from .data import CANONICAL_UNITS, Dataset, load_dataset, save_dataset
from .files import write_atomically

__all__ = ["main", "simulate_cohort", "simulate_dataset"]


def simulate_dataset(
    model: str | OdeModel,
    subjects: pd.DataFrame,
    times: Mapping[str, Sequence[float]] | Sequence[float],
    *,
    sigma: Mapping[str, float],
    lloq: Mapping[str, float] | None = None,
    seed: int,
    time_jitter: float = 0.0,
    missing_fraction: float = 0.0,
    method: str = "explicit",
) -> Dataset:
    """Simulate noisy, censored, incomplete measurements of a cohort.

    Parameters
    ----------
    model
        Library model name (e.g. ``"acute_inflammation"``) or an :class:`~models.spec.OdeModel`.
    subjects
        One row per subject: ``subject``, optionally ``group``, true parameter values in columns
        named after the model's parameters (missing ones take the model's defaults), inputs
        named after the model's inputs (e.g. ``dose`` in ng/kg; missing ones take their
        defaults) and any further numeric covariates (e.g. ``stress_score``), which are carried
        into the dataset's subject table unchanged.
    times
        Nominal sample times in hours: one sequence for every analyte the model observes, or a
        mapping ``analyte -> times`` (then only those analytes are measured, at their times).
    sigma
        Standard deviation of the measurement noise on the log scale, per measured analyte:
        ``value = exp(log(model value) + sigma * N(0, 1))``.
    lloq
        Lower limits of quantification in the analyte's canonical unit; a value below one is
        left-censored (its value becomes the limit). Analytes not listed have no limit.
    seed
        Seed of ``numpy.random.default_rng``. Draws, in order: per subject, the time jitter of
        every nominal time; then the noise of every sample (rows in dataset order); then which
        samples are missing.
    time_jitter
        Each subject's sample times deviate from the nominal ones by a uniform draw in
        ``[-time_jitter, time_jitter]`` h (the same for every analyte of a blood draw); a
        sample at 0 h is never moved. Must be below half the smallest gap between nominal times.
    missing_fraction
        Fraction of the samples after 0 h that are dropped (``round(fraction * count)`` samples
        chosen at random); baseline samples are always kept.
    method
        Solver method, a name in ``models.solvers.registry.METHODS`` (the simulation runs at
        rtol 1e-6); the default, explicit, is the one the shipped simulated datasets were made with.

    Returns
    -------
    Dataset
        Validated by :func:`~inference.data.load_dataset`; its source names model and seed.

    Raises
    ------
    ValueError
        Inconsistent arguments (unknown analyte, missing sigma, bad jitter or fraction).
    models.SolverError
        The model could not be solved for a subject.
    """
    model = get_model(model)
    schedule = _schedule(model, times)
    lloq = dict(lloq or {})
    _check_arguments(model, schedule, sigma, lloq, time_jitter, missing_fraction)
    truth = _complete_truth(model, subjects)
    rng = np.random.default_rng(seed)

    nominal = np.unique(np.concatenate(list(schedule.values())))
    jitter = rng.uniform(-time_jitter, time_jitter, size=(len(truth), nominal.size))
    sample_times = nominal + np.where(nominal == 0, 0.0, jitter)
    inputs = [name for name in model.input_names if name in truth]
    theta = np.array(
        [
            model.theta({n: row[n] for n in model.parameter_names}, {n: row[n] for n in inputs})
            for _, row in truth.iterrows()
        ]
    )
    solution = solve(model, theta, list(sample_times), None, SolverSettings(method))
    if not solution.success:
        failed = [
            f"{s}: {m}" for s, m in zip(truth["subject"], solution.messages, strict=True) if m != "success"
        ]
        raise SolverError(f"model {model.name}, method {method}: {'; '.join(failed)}")

    # One row per (subject, nominal time, analyte), analytes in the model's order: dataset order.
    units = {o.analyte: o.unit for o in model.observables}
    state = {o.analyte: model.state_names.index(o.state) for o in model.observables}
    rows = []
    for s, subject in enumerate(truth["subject"]):
        states = solution.states[s * nominal.size : (s + 1) * nominal.size]
        for k, t in enumerate(nominal):
            for analyte in (a for a in model.analytes if a in schedule and t in schedule[a]):
                rows.append((subject, t, sample_times[s, k], analyte, states[k, state[analyte]]))
    table = pd.DataFrame(rows, columns=["subject", "nominal_time", "time", "analyte", "mean"])
    if (table["mean"] <= 0).any():
        raise ValueError(f"model {model.name} gives non-positive observables; log-normal noise needs > 0")

    noise = table["analyte"].map(sigma).to_numpy() * rng.standard_normal(len(table))
    value = np.exp(np.log(table["mean"].to_numpy()) + noise)
    limit = table["analyte"].map(lloq).to_numpy(dtype=float)
    below = value < limit  # False where there is no limit (NaN)
    after_baseline = np.flatnonzero(table["nominal_time"].to_numpy() > 0)
    n_missing = round(missing_fraction * after_baseline.size)
    missing = rng.choice(after_baseline, size=n_missing, replace=False)

    observations = pd.DataFrame(
        {
            "subject": table["subject"],
            "time": table["time"],
            "analyte": table["analyte"],
            "value": np.where(below, limit, value),
            "unit": table["analyte"].map(units),
            "censored": np.where(below, "left", "none"),
            "lloq": limit,
        }
    ).drop(index=missing)
    carried = [c for c in truth.columns if c not in model.parameter_names and c != "subject"]
    tidy = observations.merge(truth[["subject", *carried]], on="subject", how="left")
    extra_units = {a: u for a, u in units.items() if a not in CANONICAL_UNITS}
    dataset = load_dataset(tidy, analytes=extra_units)
    return dataclasses.replace(dataset, source=f"<simulated: {model.name}, seed {seed}>")


def _complete_truth(model: str | OdeModel, subjects: pd.DataFrame) -> pd.DataFrame:
    """Return the subject table with every model parameter (defaults filled in) after ``group``.

    Columns: ``subject``, ``group`` (if given), the model's parameters in order, then the
    remaining columns (inputs and covariates) as given.
    """
    model = get_model(model)
    if "subject" not in subjects or subjects["subject"].duplicated().any():
        raise ValueError("subjects needs a 'subject' column with one row per subject")
    truth = subjects.reset_index(drop=True).copy()
    truth["subject"] = truth["subject"].astype("str")
    for name, value in model.defaults().items():
        if name not in truth:
            truth[name] = value
    first = ["subject", *(["group"] if "group" in truth else []), *model.parameter_names]
    return truth[first + [c for c in truth.columns if c not in first]]


def _schedule(model: OdeModel, times) -> dict[str, np.ndarray]:
    """Sample times per measured analyte (sorted, unique)."""
    if not isinstance(times, Mapping):
        times = {analyte: times for analyte in model.analytes}
    unknown = sorted(set(times) - set(model.analytes))
    if unknown:
        raise ValueError(f"model {model.name} does not observe {unknown}; analytes: {list(model.analytes)}")
    schedule = {a: np.unique(np.asarray(t, dtype=float)) for a, t in times.items()}
    for analyte, t in schedule.items():
        if t.size == 0 or not np.all(np.isfinite(t)) or t[0] < 0:
            raise ValueError(f"times of {analyte}: expected finite times >= 0 h, got {list(t)}")
    return schedule


def _check_arguments(model, schedule, sigma, lloq, time_jitter, missing_fraction) -> None:
    missing = [a for a in schedule if not (a in sigma and sigma[a] > 0)]
    if missing:
        raise ValueError(
            f"sigma: expected a value > 0 for every measured analyte; missing or <= 0: {missing}"
        )
    unknown = sorted(set(lloq) - set(model.analytes))
    if unknown:
        raise ValueError(f"lloq: model {model.name} does not observe {unknown}")
    nominal = np.unique(np.concatenate([[0.0], *schedule.values()]))
    smallest_gap = np.diff(nominal).min() if nominal.size > 1 else np.inf
    if not 0 <= time_jitter < smallest_gap / 2:
        raise ValueError(
            f"time_jitter must be >= 0 and below half the smallest gap between sample "
            f"times ({smallest_gap / 2:g} h) so that samples stay in order, got {time_jitter}"
        )
    if not 0 <= missing_fraction < 1:
        raise ValueError(f"missing_fraction must be in [0, 1), got {missing_fraction}")


# --------------------------------------------------------------------------------------------
# The datasets shipped under data/
# --------------------------------------------------------------------------------------------
DATA_FOLDER = Path(__file__).resolve().parents[1] / "data"
MODEL = "acute_inflammation"
DOSE = 2.0  # ng/kg
SIGMA = {"TNF": 0.15, "IL6": 0.15, "cortisol": 0.10}
LLOQ = {"TNF": 2.0, "IL6": 2.0}  # pg/mL
SINGLE_SUBJECT_TIMES = (0, 0.5, 1, 1.5, 2, 2.5, 3, 4, 5, 6, 8, 10, 12, 24)
COHORT_TIMES = (0, 0.5, 1, 1.5, 2, 3, 4, 6, 8, 12, 24)
VARYING = ("k_T", "k_IT", "k_C", "d_T", "C_b")  # log-normal between-subject variation
VARYING_SD = 0.25  # on the log scale
R_LOGIT_SD = 0.3
STRESS_SCORE = {"control": (0.0, 1.0), "chronic_stress": (1.5, 0.7)}  # mean, sd


@dataclasses.dataclass(frozen=True)
class _Cohort:
    """Design of a shipped cohort: two alternating groups, r per group, cortisol in some subjects."""

    folder: str
    title: str
    n_subjects: int
    r_centre: Mapping[str, float]  # 0 means exactly 0 for every subject of the group
    seed: int
    cortisol_subjects: int | None = None  # cortisol measured in the first n subjects only


COHORTS = (
    _Cohort(
        "cohort",
        "Cohort: controls and chronic stress, different glucocorticoid resistance",
        20,
        {"control": 0.1, "chronic_stress": 0.5},
        20261127,
        cortisol_subjects=14,
    ),
    _Cohort(
        "cohort_no_resistance",
        "Cohort without glucocorticoid resistance (r = 0 in everyone)",
        12,
        {"control": 0.0, "chronic_stress": 0.0},
        20261128,
    ),
    _Cohort(
        "cohort_stress_resistance",
        "Cohort with resistance under chronic stress only",
        12,
        {"control": 0.0, "chronic_stress": 0.6},
        20261129,
    ),
)
SINGLE_SUBJECT_SEED = 20261126


def _cohort_truth(design: _Cohort, rng: np.random.Generator) -> pd.DataFrame:
    """Draw the true parameters of a cohort: defaults with between-subject variation."""
    model = get_model(MODEL)
    n = design.n_subjects
    groups = np.array(list(STRESS_SCORE))[np.arange(n) % 2]  # control, chronic_stress, ...
    eta = rng.standard_normal((n, len(VARYING)))
    eta_r = rng.standard_normal(n)
    eta_score = rng.standard_normal(n)
    truth = pd.DataFrame({"subject": [f"S{i + 1:02d}" for i in range(n)], "group": groups})
    defaults = model.defaults()
    for j, name in enumerate(VARYING):
        truth[name] = defaults[name] * np.exp(VARYING_SD * eta[:, j])
    centre = np.array([design.r_centre[g] for g in groups])
    with np.errstate(divide="ignore"):  # logit(0) = -inf gives r = 0 exactly
        truth["r"] = scipy.special.expit(scipy.special.logit(centre) + R_LOGIT_SD * eta_r)
    truth["dose"] = DOSE
    mean, sd = (np.array([STRESS_SCORE[g][i] for g in groups]) for i in (0, 1))
    truth["stress_score"] = mean + sd * eta_score
    return _complete_truth(model, truth)


def _single_subject() -> tuple[pd.DataFrame, Dataset, str]:
    """Simulate the one-subject dataset: model defaults except r = 0.3."""
    truth = _complete_truth(MODEL, pd.DataFrame({"subject": ["S01"], "r": [0.3], "dose": [DOSE]}))
    dataset = simulate_dataset(
        MODEL, truth, SINGLE_SUBJECT_TIMES, sigma=SIGMA, lloq=LLOQ, seed=SINGLE_SUBJECT_SEED
    )
    notes = [
        f"- Seed: `{SINGLE_SUBJECT_SEED}`, passed to `simulate_dataset(seed=...)`.",
        "- Subject: one (`S01`), no group; true parameters: the model's defaults (prior medians) "
        "except `r = 0.3`.",
        f"- Sampling times (h), every analyte: {_list(SINGLE_SUBJECT_TIMES)}; no jitter, no missing samples.",
    ]
    return truth, dataset, _readme("Single subject", truth, dataset, notes, varying=("r",))


def _cohort(design: _Cohort) -> tuple[pd.DataFrame, Dataset, str]:
    """Simulate a shipped cohort (see :data:`COHORTS`)."""
    rng = np.random.default_rng(design.seed)
    truth = _cohort_truth(design, rng)
    noise_seed = int(rng.integers(2**32))
    dataset = simulate_dataset(
        MODEL,
        truth,
        COHORT_TIMES,
        sigma=SIGMA,
        lloq=LLOQ,
        seed=noise_seed,
        time_jitter=0.1,
        missing_fraction=0.05,
    )
    if design.cortisol_subjects is not None:
        obs = dataset.observations
        measured = list(truth["subject"][: design.cortisol_subjects])
        keep = (obs["analyte"] != "cortisol") | obs["subject"].isin(measured)
        dataset = dataclasses.replace(dataset, observations=obs[keep].reset_index(drop=True))
    r_lines = [
        f"  - {group}: "
        + (
            "r = 0 exactly for every subject"
            if centre == 0
            else f"logit(r) ~ Normal(logit({centre:g}), {R_LOGIT_SD:g})"
        )
        for group, centre in design.r_centre.items()
    ]
    notes = [
        f"- Seed: `{design.seed}`. From `numpy.random.default_rng({design.seed})`, in order: standard "
        f"normal draws for the between-subject variation ({design.n_subjects} x {len(VARYING)}), for "
        f"r ({design.n_subjects}) and for the stress score ({design.n_subjects}); then the seed of "
        f"`simulate_dataset` (`integers(2**32)` = {noise_seed}).",
        f"- Subjects: {design.n_subjects}, `S01`..`S{design.n_subjects:02d}`, groups alternating "
        f"`control`, `chronic_stress` ({design.n_subjects // 2} each); dose {DOSE:g} ng/kg for all.",
        f"- Between-subject variation: {', '.join(f'`{v}`' for v in VARYING)} log-normal around "
        f"the model defaults, sd {VARYING_SD:g} on the log scale; all other parameters at their defaults.",
        "- Glucocorticoid resistance r:",
        *r_lines,
        "- Covariate `stress_score` (not used by the model): "
        + "; ".join(f"{g} ~ Normal({m:g}, {s:g})" for g, (m, s) in STRESS_SCORE.items())
        + ".",
        f"- Sampling times (h): {_list(COHORT_TIMES)}, each moved by a uniform jitter in "
        "[-0.1, 0.1] h per subject (not at 0 h); 5% of the samples after 0 h missing at random.",
    ]
    if design.cortisol_subjects is not None:
        notes.append(
            f"- Cortisol measured only in the first {design.cortisol_subjects} subjects "
            f"(`S01`..`S{design.cortisol_subjects:02d}`); its samples in the others were "
            "removed after simulation (the others have TNF and IL6 only)."
        )
    return truth, dataset, _readme(design.title, truth, dataset, notes, varying=(*VARYING, "r"))


def simulate_cohort(n_subjects: int, seed: int = COHORTS[0].seed) -> tuple[pd.DataFrame, Dataset]:
    """Simulate a cohort of any size with the design of the shipped ``data/cohort``.

    Same model, groups, between-subject variation, sample times, noise, limits, jitter and
    missingness as ``data/cohort``; cortisol is measured in the same share of subjects (14 of 20,
    the first ``round(0.7 n)``). Used by the scaling benchmark. Returns ``(truth, dataset)``.
    """
    if n_subjects < 1:
        raise ValueError(f"n_subjects must be at least 1, got {n_subjects}")
    shipped = COHORTS[0]
    cortisol = max(1, round(n_subjects * shipped.cortisol_subjects / shipped.n_subjects))
    design = dataclasses.replace(shipped, n_subjects=n_subjects, seed=seed, cortisol_subjects=cortisol)
    truth, dataset, _ = _cohort(design)
    return truth, dataset


def _list(values) -> str:
    return ", ".join(f"{v:g}" for v in values)


def _readme(title: str, truth: pd.DataFrame, dataset: Dataset, notes: list[str], varying) -> str:
    model = get_model(MODEL)
    defaults = model.defaults()
    summary = dataset.summary()
    fixed = [p for p in model.parameters if p.name not in varying]
    lines = [
        f"# {title}",
        "",
        "Simulated data (do not edit: regenerate with the command below). Generated by",
        "",
        "```",
        "python -m inference.synthetic",
        "```",
        "",
        "(`inference/synthetic.py`, function `main`; it rewrites every dataset under `data/`).",
        "",
        f"- Model: `{MODEL}`, endotoxin dose {DOSE:g} ng/kg at 0 h.",
        *notes,
        "- Measurement noise: log-normal, value = exp(log(model value) + sigma N(0, 1)) with sigma "
        + ", ".join(f"{a} {s:g}" for a, s in SIGMA.items())
        + " (log scale).",
        "- LLOQ: "
        + ", ".join(f"{a} {v:g} {CANONICAL_UNITS[a]}" for a, v in LLOQ.items())
        + "; values below it are left-censored (`censored` = left, value = the LLOQ). Cortisol has "
        "no limit.",
        f"- Result: {summary['n_subjects']} subject{'s' * (summary['n_subjects'] != 1)}, "
        f"{summary['n_samples']} samples ("
        + ", ".join(f"{a} {n}" for a, n in summary["analytes"].items())
        + f"), {summary['n_censored']} censored.",
        "",
        "Files: `observations.csv` (the tidy format of `data/README.md`, units TNF/IL6 pg/mL, cortisol",
        "nmol/L, time h) and `truth.csv` (every true parameter value of every subject, full precision).",
        "",
        "## True parameter values",
        "",
        "Parameters the same for every subject:",
        "",
        "| parameter | unit | value |",
        "|---|---|---|",
        *(f"| `{p.name}` | {p.unit} | {defaults[p.name]:.4g} |" for p in fixed),
        "",
        "Per subject:",
        "",
    ]
    first = ["subject", *(["group"] if "group" in truth else [])]
    columns = [*first, *varying, *(c for c in truth.columns if c not in (*model.parameter_names, *first))]
    lines.append("| " + " | ".join(columns) + " |")
    lines.append("|" + "---|" * len(columns))
    for _, row in truth[columns].iterrows():
        cells = [v if isinstance(v, str) else f"{v:.4g}" for v in row]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _write_text(path: Path, text: str) -> None:
    """Write ``text`` atomically (regeneration replaces its own outputs)."""
    write_atomically(path, lambda tmp: tmp.write_text(text, newline=""), overwrite=True)


def _write_shipped(output: Path) -> list[Path]:
    """Regenerate every shipped dataset under ``output``; return the files written."""
    written = []
    recipes = [("single_subject", _single_subject)] + [(c.folder, lambda c=c: _cohort(c)) for c in COHORTS]
    for folder, recipe in recipes:
        truth, dataset, readme = recipe()
        target = output / folder
        target.mkdir(parents=True, exist_ok=True)
        save_dataset(dataset, target / "observations.csv", overwrite=True)  # our own output
        _write_text(target / "truth.csv", truth.to_csv(index=False, lineterminator="\n"))
        _write_text(target / "README.md", readme)
        written += [target / "observations.csv", target / "truth.csv", target / "README.md"]
    return written


def main(argv: Sequence[str] | None = None) -> None:
    """Command line: ``python -m inference.synthetic [--output FOLDER]``."""
    parser = argparse.ArgumentParser(
        prog="python -m inference.synthetic",
        description="Regenerate the simulated datasets shipped under data/ (deterministic).",
    )
    parser.add_argument(
        "--output",
        type=Path,
        default=DATA_FOLDER,
        help=f"folder to write the datasets to (default: {DATA_FOLDER})",
    )
    args = parser.parse_args(argv)
    for path in _write_shipped(args.output):
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
