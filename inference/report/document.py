"""Assemble and render the report: a fit result in, one self-contained HTML document out.

:func:`build_report` computes everything (verdict, predictive draws, prior draws, tables, figures)
and renders each section from the Jinja2 macros in ``templates/report_sections.html``;
:class:`Report` holds the sections and the full document (``templates/report.html``, which extends
the shared ``base.html``), writes it, and displays itself, or any one section, inline in a notebook.
Everything is seeded from the result's own seed, so the same result file gives the same document
apart from the generation date in its footer.
"""

from __future__ import annotations

import base64
import math
import os
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import arviz as az
import numpy as np
from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

from .. import loo as psis
from ..diagnostics import Verdict, diagnose, monitored_variables
from ..files import write_atomically
from ..predictive import Predictive, posterior_predictive, sample_prior
from ..record import read_record
from . import figures
from .content import (
    INTERVAL,
    correlated_quantities,
    parameter_roles,
    population_quantities,
    resistance_contrast,
    structured,
    subject_rows,
    summary_rows,
)

DEFAULT_DRAWS = 500  # posterior draws for the predictive plots
PRIOR_DRAWS = 1000  # prior draws for the prior-against-posterior plots
RANK_ROWS_PER_FIGURE = 6


# --------------------------------------------------------------------------------------------
# Rendering
# --------------------------------------------------------------------------------------------
def _num(value, digits: int = 3) -> str:
    """Format a number to ``digits`` significant digits without exponent where reasonable."""
    if value is None:
        return "–"
    value = float(value)
    if not math.isfinite(value):
        return "–" if math.isnan(value) else ("∞" if value > 0 else "−∞")
    if value == 0:
        return "0"
    magnitude = math.floor(math.log10(abs(value)))
    if magnitude >= 6 or magnitude < -3:
        return f"{value:.{digits - 1}e}"
    if magnitude >= digits - 1:
        return f"{round(value, digits - 1 - magnitude):,.0f}"
    return f"{value:.{digits - 1 - magnitude}f}"


def _fixed(value, digits: int = 1) -> str:
    """Format a number with a fixed count of decimals (``n/a`` for missing or non-finite)."""
    try:
        value = float(value)
    except (TypeError, ValueError):
        return "n/a"
    return f"{value:.{digits}f}" if math.isfinite(value) else "n/a"


def _environment() -> Environment:
    env = Environment(
        loader=PackageLoader("inference.report", "templates"),
        autoescape=select_autoescape(["html"]),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["num"] = _num
    env.filters["rhat"] = lambda x: "–" if x is None or not math.isfinite(x) else f"{x:.3f}"
    env.filters["ess"] = lambda x: "–" if x is None or not math.isfinite(x) else f"{x:.0f}"
    env.filters["unit"] = lambda u: "dimensionless" if u in ("1", "") else u
    env.filters["pct"] = lambda x: "–" if x is None or not math.isfinite(x) else f"{x:.0%}"
    env.filters["fixed"] = _fixed
    return env


_ENV = _environment()


def _inline(body: str) -> str:
    """Wrap an HTML fragment with the report's (scoped) style, for notebook display."""
    style = _ENV.get_template("styles.html").render()
    return f'{style}<div class="cb-report">{body}</div>'


@dataclass(frozen=True)
class Section:
    """One section of a report: an anchor id, a title and its rendered HTML fragment."""

    id: str
    title: str
    html: str

    def _repr_html_(self) -> str:
        return _inline(self.html)

    def __html__(self) -> str:
        return self.html


@dataclass(frozen=True)
class Report:
    """A rendered fit report.

    Attributes
    ----------
    title : str
        Page title.
    sections : tuple of Section
        In page order; ``report["diagnostics"]`` picks one. Ids: ``overview``, ``diagnostics``,
        ``parameters``, ``subjects`` (cohorts), ``predictive``, ``sampling``, ``prior-posterior``,
        ``calibration``, ``resistance`` (cohorts).
    html : str
        The complete, self-contained HTML document (plots embedded as PNG, no external resources).
    verdict : Verdict
        The diagnostics verdict shown in the report.
    predictive : Predictive
        The posterior predictive draws behind the plots.
    path : Path or None
        Where the document was written, if it was.
    """

    title: str
    sections: tuple[Section, ...]
    html: str
    verdict: Verdict
    predictive: Predictive
    path: Path | None = None

    def __getitem__(self, section_id: str) -> Section:
        for section in self.sections:
            if section.id == section_id:
                return section
        raise KeyError(f"no section {section_id!r}; sections: {[s.id for s in self.sections]}")

    def __iter__(self) -> Iterator[Section]:
        return iter(self.sections)

    def _repr_html_(self) -> str:
        return _inline("".join(s.html for s in self.sections))

    def write(self, path: str | os.PathLike, *, overwrite: bool = False) -> Path:
        """Write the document atomically (temporary file in the same folder, then rename).

        Raises
        ------
        FileExistsError
            ``path`` exists and ``overwrite`` is false.
        """
        return write_atomically(path, lambda tmp: tmp.write_text(self.html, encoding="utf-8"),
                                overwrite=overwrite)


def _figure(fig, alt: str, caption: str = "") -> dict:
    png = figures.to_png(fig)
    raw = base64.b64decode(png[:44])
    width, height = struct.unpack(">II", raw[16:24])  # PNG IHDR
    return {"png": png, "alt": alt, "caption": caption, "width": width, "height": height}


# --------------------------------------------------------------------------------------------
# Section contexts
# --------------------------------------------------------------------------------------------
def _overview(idata, model, options, dataset, verdict, seed) -> dict:
    record = read_record(idata)
    s, t = record.sampler, record.timings
    roles = parameter_roles(model, options)
    inputs = []
    for i in model.inputs:
        if i.name in dataset.subjects.columns:
            values = np.unique(dataset.subjects[i.name].to_numpy(float))
            text = (f"{values[0]:g} in every subject" if values.size == 1
                    else f"{values.min():g} to {values.max():g} across subjects")
        else:
            text = f"{i.default:g} (default) in every subject"
        inputs.append({"name": i.name, "unit": i.unit, "description": i.description, "value_text": text})
    obs = dataset.observations
    units = {o.analyte: o.unit for o in model.observables}
    analytes = []
    for name in dataset.analytes:
        rows = obs[obs["analyte"] == name]
        limits = np.unique(rows["lloq"].dropna().to_numpy(float)) if "lloq" in rows else np.array([])
        analytes.append({"name": name, "unit": units.get(name, str(rows["unit"].iloc[0])), "n": len(rows),
                         "censored": int((rows["censored"] != "none").sum()),
                         "lloq": ", ".join(f"{v:g}" for v in limits) if limits.size else "–"})
    summary = dataset.summary()
    return {
        "title": f"Posterior report: {model.name}",
        "verdict": verdict,
        "model": {
            "name": model.name, "title": model.title, "equations": model.equations,
            "parameters": [{"name": p.name, "unit": p.unit, "description": p.description,
                            "prior": options.priors.get(p.name, p.prior).describe(), "role": roles[p.name]}
                           for p in model.parameters],
            "inputs": inputs,
        },
        "dataset": {
            "source": dataset.source, "n_subjects": summary["n_subjects"], "groups": summary["groups"],
            "n_samples": summary["n_samples"], "n_censored": summary["n_censored"], "analytes": analytes,
            "window": f"{_num(obs['time'].min())} to {_num(obs['time'].max())} h after the endotoxin dose",
            "n_events": len(dataset.events),
        },
        "fit": {
            "sampler": s.sampler if s else "?", "chains": s.chains if s else idata.posterior.sizes["chain"],
            "draws": s.draws if s else idata.posterior.sizes["draw"], "tune": s.tune if s else "?",
            "target_accept": s.target_accept if s else "?", "seed": s.seed if s else "?",
            "likelihood": options.measurement.describe(),
            "solver": (f"{options.solver.method}, rtol {options.solver.rtol:g}, "
                       f"atol {options.solver.atol:g}, max_steps {options.solver.max_steps}"),
            "solver_failures": "unknown" if record.solver_failures is None else record.solver_failures,
            "timing": (f"compile {t['compile_seconds']:.0f} s, sampling {t['sampling_seconds']:.0f} s"
                       if {"compile_seconds", "sampling_seconds"} <= set(t) else "not recorded"),
            "created": record.created or "unknown date", "python": record.python or "?",
            "versions": dict(sorted(record.versions.items())),
        },
        "report_seed": seed,
        "toc": [],
    }


def _loo(idata):
    return psis.loo(idata, var_name=None)


def _diagnostics(idata, dataset, verdict) -> dict:
    context = {"verdict": verdict, "n_monitored": 0, "pareto_figure": None}
    posterior = idata.posterior
    context["n_monitored"] = sum(
        int(np.prod([posterior[v].sizes[d] for d in posterior[v].dims if d not in ("chain", "draw")]))
        for v in monitored_variables(posterior)
    )
    if "log_likelihood" in idata.groups():
        loo = _loo(idata)
        k = np.asarray(loo.pareto_k.values, dtype=float).ravel()
        good = min(0.7, float(getattr(loo, "good_k", 0.7)))
        obs = dataset.observations
        labels = np.array([f"{s} {a} {t:.3g} h"
                           for s, a, t in zip(obs["subject"], obs["analyte"], obs["time"], strict=True)])
        context["pareto_figure"] = _figure(
            figures.plot_pareto_k(k, good, obs["analyte"].to_numpy(str), labels),
            "Pareto k per observation",
            "Observations above the threshold are labelled (subject, analyte, time); find them in the "
            "predictive plots.",
        )
    return context


def _predictive(predictive: Predictive, dataset, model) -> dict:
    units = {o.analyte: o.unit for o in model.observables}
    log_scale = {str(a): figures.use_log_scale(dataset, str(a)) for a in predictive.curves["analyte"].values}
    groups = []
    for g in dataset.groups:
        members = [s for s in dataset.subject_ids if dataset.subjects.loc[s, "group"] == g]
        groups.append({"name": g, "figures": [
            _figure(figures.plot_subject_predictive(predictive, dataset, s, units, log_scale),
                    f"Posterior predictive of subject {s}")
            for s in members
        ]})
    coverage = predictive.coverage(dataset)
    text = (f"Across all quantified samples, {coverage[0.5]:.0%} lie inside their 50% interval and "
            f"{coverage[0.9]:.0%} inside their 90% interval (about 50% and 90% expected).")
    return {"groups": groups, "n_draws": predictive.n_samples, "seed": predictive.seed,
            "failures": predictive.failures, "coverage_text": text}


def _sampling(idata, quantities, model) -> dict:
    rank_figures = []
    n_figures = math.ceil(len(quantities) / RANK_ROWS_PER_FIGURE)
    for indices in np.array_split(np.arange(len(quantities)), max(n_figures, 1)):
        chunk = [quantities[k] for k in indices]
        rank_figures.append(_figure(figures.plot_rank(idata, chunk),
                                    "Rank plots of " + ", ".join(q.label for q in chunk)))
    chosen, corr = correlated_quantities(idata.posterior, quantities, ridges=model.ridges)
    pair_figure, pair_text = None, "Fewer than two free quantities: nothing to correlate."
    if len(chosen) >= 2:
        divergent = (idata.sample_stats["diverging"].values if "sample_stats" in idata.groups()
                     and "diverging" in idata.sample_stats else None)
        pair_figure = _figure(figures.plot_pair(idata.posterior, chosen, corr, divergent),
                              "Pair plot of the most correlated quantities")
        i, j = np.unravel_index(np.argmax(np.abs(corr - np.eye(len(chosen)))), corr.shape)
        pair_text = (f"Strongest: {chosen[i].label} against {chosen[j].label}, correlation {corr[i, j]:+.2f} "
                     "on the log/logit scale. Divergent draws, if any, are red crosses.")
    return {"rank_figures": rank_figures, "pair_figure": pair_figure, "pair_text": pair_text}


def _calibration(idata, predictive, dataset) -> dict:
    obs = dataset.observations
    keep = (obs["censored"] == "none").to_numpy()
    analytes = obs["analyte"].to_numpy(str)
    context = {"n_censored": int((~keep).sum()), "figure": None, "missing": "", "coverage": []}
    if {"posterior_predictive", "log_likelihood", "observed_data"} <= set(idata.groups()) and keep.sum() > 1:
        context["figure"] = _figure(figures.plot_loo_pit(idata, analytes, keep, dataset.analytes),
                                    "LOO-PIT calibration")
    else:
        context["missing"] = ("LOO-PIT needs the posterior_predictive, log_likelihood and observed_data "
                              "groups (written by inference.fit.fit) and at least two quantified samples.")
    q = predictive.quantiles((0.05, 0.25, 0.75, 0.95), where="observed").values
    values = obs["value"].to_numpy(float)
    for name in dataset.analytes:
        select = keep & (analytes == name)
        if not select.any():
            continue
        inside50 = (values[select] >= q[1, select]) & (values[select] <= q[2, select])
        inside90 = (values[select] >= q[0, select]) & (values[select] <= q[3, select])
        context["coverage"].append({"analyte": name, "n": int(select.sum()),
                                    "c50": float(inside50.mean()), "c90": float(inside90.mean())})
    return context


def _resistance(idata, model, options, dataset) -> dict:
    resistance = model.resistance
    name = resistance.parameter if resistance is not None else None
    context = {"name": name or "r", "figure": None, "missing": "", "probabilities": {}, "basis": "",
               "groups": [], "identifiability": ""}
    if name is None:
        develops = (f" as {resistance.describe()}" if resistance is not None else "")
        context["missing"] = (f"Model {model.name} has no static GC-resistance parameter; its "
                              f"resistance develops over time{develops} (see the equations).")
        return context
    if name in options.fixed:
        context["missing"] = f"{name} is fixed at {options.fixed[name]:g} in this fit: it was not estimated."
        return context
    contrast = resistance_contrast(idata.posterior, dataset, options, name)
    if contrast is None:
        context["missing"] = (f"{name} is shared by all subjects in this fit (no random or group effect), "
                              f"so it cannot differ between subjects or groups; fit with --random-effects "
                              f"{name} --group-effects {name} to compare them.")
        if len(dataset.groups) < 2 and name in structured(options):
            context["missing"] = (f"The data have one group only ({dataset.groups[0]}): there is nothing to "
                                  "compare.")
        return context
    context["figure"] = _figure(figures.plot_resistance(idata.posterior, dataset, contrast, name, INTERVAL),
                                f"Forest plot of {name} by subject and group")
    context["probabilities"] = contrast.probabilities
    context["basis"] = contrast.basis
    source = contrast.typical or contrast.subject_means
    counts = dataset.subjects["group"].value_counts()
    lo_q, hi_q = (1 - INTERVAL) / 2, (1 + INTERVAL) / 2
    context["groups"] = [{"name": g, "n": int(counts[g]), "median": float(np.median(source[g])),
                          "low": float(np.quantile(source[g], lo_q)),
                          "high": float(np.quantile(source[g], hi_q))}
                         for g in dataset.groups]
    notes = [ridge.note for ridge in model.ridges
             if name in ridge.parameters and not set(ridge.parameters) & set(options.fixed)]
    context["identifiability"] = " ".join(f"Caution: {note}" for note in notes)
    return context


# --------------------------------------------------------------------------------------------
# Entry points
# --------------------------------------------------------------------------------------------
def build_report(
    idata: az.InferenceData | str | os.PathLike,
    *,
    draws: int = DEFAULT_DRAWS,
    seed: int | None = None,
    created: str | None = None,
) -> Report:
    """Build the report of a fit (nothing is written; see :func:`render_report`).

    Parameters
    ----------
    idata
        A fit result, or the path of one written by :func:`inference.fit.save_result`.
    draws
        Posterior draws used for the predictive plots and coverage.
    seed
        Seed of every random draw in the report; default the fit's own seed, so a result file always
        gives the same report.
    created
        Generation date shown in the footer; default now (UTC).

    Returns
    -------
    Report
        Sections (always ``overview``, ``diagnostics``, ``parameters``, ``predictive``, ``sampling``,
        ``prior-posterior``, ``calibration``; for more than one subject also ``subjects`` and
        ``resistance``) and the complete HTML document.
    """
    from ..fit import check_result, load_result

    if not isinstance(idata, az.InferenceData):
        idata = load_result(idata)
    check_result(idata)
    record = read_record(idata)
    model, options, dataset = record.ode_model, record.options, record.dataset
    seed = (record.sampler.seed if record.sampler else 0) if seed is None else int(seed)
    created = created or datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")

    verdict = diagnose(idata)
    predictive = posterior_predictive(idata, draws=draws, seed=seed)
    quantities = population_quantities(idata, model, options, dataset)
    prior_vars = list(dict.fromkeys(q.var for q in quantities))
    prior = sample_prior(model, dataset, options, draws=PRIOR_DRAWS, seed=seed, var_names=prior_vars).prior
    rows = summary_rows(idata.posterior, quantities, prior)

    macros = _ENV.get_template("report_sections.html").module
    overview = _overview(idata, model, options, dataset, verdict, seed)
    cohort = len(dataset.subject_ids) > 1
    per_subject = [p for p in model.parameters if p.name in structured(options)]
    parts = [
        ("diagnostics", "Diagnostics", lambda: macros.diagnostics(_diagnostics(idata, dataset, verdict))),
        ("parameters", "Posterior summary", lambda: macros.parameters(
            {"rows": rows, "hierarchical": bool(per_subject)})),
    ]
    if cohort:
        parts.append(("subjects", "Per-subject parameters", lambda: macros.subjects({"tables": [
            {"name": p.name, "unit": p.unit, "description": p.description,
             "rows": subject_rows(idata.posterior, p.name, dataset)} for p in per_subject]})))
    parts += [
        ("predictive", "Posterior predictive checks", lambda: macros.predictive(
            _predictive(predictive, dataset, model))),
        ("sampling", "Sampling: rank plots and correlations", lambda: macros.sampling(
            _sampling(idata, quantities, model))),
        ("prior-posterior", "Prior against posterior", lambda: macros.prior_posterior({
            "figure": _figure(figures.plot_prior_posterior(idata.posterior, prior, quantities),
                              "Prior against posterior of each population quantity"),
            "n_prior": PRIOR_DRAWS, "seed": seed,
            "unlearnt": [r["label"] for r in rows if math.isfinite(r["learning"]) and r["learning"] > 0.7]})),
        ("calibration", "Calibration (LOO-PIT)", lambda: macros.calibration(
            _calibration(idata, predictive, dataset))),
    ]
    if cohort:
        parts.append(("resistance", "GC resistance by subject and group", lambda: macros.resistance(
            _resistance(idata, model, options, dataset))))
    overview["toc"] = [{"id": i, "title": t} for i, t, _ in parts]
    sections = [Section("overview", "Overview", str(macros.overview(overview)))]
    sections += [Section(i, t, str(render())) for i, t, render in parts]
    try:
        package_version = version("cytokine-balance")
    except PackageNotFoundError:  # pragma: no cover - running from a source tree
        package_version = "unknown"
    html = _ENV.get_template("report.html").render(
        title=f"{overview['title']} ({dataset.source})",
        sections=sections,
        version=package_version,
        created=created,
    )
    return Report(overview["title"], tuple(sections), html, verdict, predictive)


def render_report(
    idata: az.InferenceData | str | os.PathLike,
    out_path: str | os.PathLike,
    overwrite: bool = False,
    **kwargs,
) -> Report:
    """Build the report of a fit and write it as one self-contained HTML file.

    Parameters
    ----------
    idata
        A fit result, or the path of one.
    out_path
        The HTML file to write.
    overwrite
        Replace an existing file.
    **kwargs
        Passed to :func:`build_report` (``draws``, ``seed``, ``created``).

    Returns
    -------
    Report
        With ``path`` set to the file written.

    Raises
    ------
    FileExistsError
        ``out_path`` exists and ``overwrite`` is false (checked before any work is done).
    """
    out_path = Path(out_path)
    if out_path.exists() and not overwrite:
        raise FileExistsError(f"{out_path} exists; pass overwrite=True (CLI: --force) to replace it")
    report = build_report(idata, **kwargs)
    path = report.write(out_path, overwrite=overwrite)
    return Report(report.title, report.sections, report.html, report.verdict, report.predictive, path)
