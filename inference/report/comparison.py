"""The comparison page: ``comparison.html`` beside ``comparison.json``, from a ``Comparison``.

The page holds the ranking table, ArviZ's compare plot, pointwise elpd differences per subject and
analyte, and posterior-predictive plots of the top two hypotheses side by side; it uses the fit
report's Jinja environment, style and deterministic PNG encoding.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from pathlib import Path

import arviz as az
import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

from ..compare import Comparison
from ..files import check_free, write_atomically
from .document import _ENV
from .figures import styled, to_png

__all__ = ["HTML_NAME", "JSON_NAME", "render_comparison", "write_comparison"]

JSON_NAME = "comparison.json"
HTML_NAME = "comparison.html"
_MAX_PPC_SUBJECTS = 4
_MAX_DIFF_PANELS = 4


@styled
def _compare_plot(comparison: Comparison) -> str:
    n = len(comparison.arviz_table)
    fig = Figure(figsize=(7.5, 1.0 + 0.6 * n))
    ax = fig.subplots()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        az.plot_compare(comparison.arviz_table, ax=ax, insample_dev=False, plot_ic_diff=True, title=False,
                        legend=True)
    ax.set_xlabel("elpd_loo (log score; higher predicts better)")
    return to_png(fig)


@styled
def _difference_plot(comparison: Comparison, best: str, others: Sequence[str]) -> str:
    tables = [comparison.differences(best, other) for other in others]
    limit = max(float(np.nanmax(np.abs(t.to_numpy()))) for t in tables) or 1.0
    n_subjects = len(comparison.dataset.subject_ids)
    fig = Figure(figsize=(2.6 * len(others) + 1.2, 0.9 + 0.32 * n_subjects))
    axes = np.atleast_1d(fig.subplots(1, len(others), sharey=True, squeeze=False)[0])
    image = None
    for ax, other, tab in zip(axes, others, tables, strict=True):
        values = tab.to_numpy(float)
        image = ax.imshow(values, cmap="RdBu", vmin=-limit, vmax=limit, aspect="auto")
        ax.set_xticks(range(tab.shape[1]), tab.columns)
        ax.set_yticks(range(tab.shape[0]), tab.index)
        ax.set_title(f"{best} − {other}", fontsize=10)
        for (r, c), v in np.ndenumerate(values):
            if np.isfinite(v):
                ax.text(c, r, f"{v:.1f}", ha="center", va="center", fontsize=7,
                        color="white" if abs(v) > 0.6 * limit else "black")
    fig.colorbar(image, ax=list(axes), shrink=0.8, label=f"elpd difference ({best} better > 0)")
    return to_png(fig)


def _ppc_data(idata: az.InferenceData) -> pd.DataFrame:
    pp = np.exp(np.asarray(idata.posterior_predictive["log_y"].values, float))
    pp = pp.reshape(-1, pp.shape[-1])
    q = np.quantile(pp, [0.05, 0.5, 0.95], axis=0)
    return pd.DataFrame({"low": q[0], "median": q[1], "high": q[2]})


@styled
def _ppc_plots(comparison: Comparison, names: Sequence[str]) -> tuple[list[dict], list[str]]:
    obs = comparison.dataset.observations
    diff = comparison.differences(names[0], names[1]).abs().sum(axis=1) if len(names) > 1 else None
    subjects = (list(diff.sort_values(ascending=False).index[:_MAX_PPC_SUBJECTS]) if diff is not None
                else list(comparison.dataset.subject_ids[:_MAX_PPC_SUBJECTS]))
    analytes = list(comparison.dataset.analytes)
    bands = {n: _ppc_data(comparison.results[n]) for n in names
             if "posterior_predictive" in comparison.results[n].groups()}
    limits = {}
    for a in analytes:
        rows = obs.index[obs["analyte"] == a]
        values = [obs.loc[rows, "value"].to_numpy(float)]
        values += [b.loc[rows, ["low", "high"]].to_numpy(float).ravel() for b in bands.values()]
        v = np.concatenate(values)
        v = v[np.isfinite(v) & (v > 0)]
        limits[a] = (v.min() / 1.5, v.max() * 1.5) if v.size else (0.1, 10)
    figures = []
    for name in names:
        if name not in bands:
            continue
        band = bands[name]
        fig = Figure(figsize=(2.3 * len(analytes), 1.7 * len(subjects) + 0.4))
        axes = fig.subplots(len(subjects), len(analytes), squeeze=False, sharex=True)
        for r, s in enumerate(subjects):
            for c, a in enumerate(analytes):
                ax = axes[r, c]
                rows = obs.index[(obs["subject"] == s) & (obs["analyte"] == a)]
                t = obs.loc[rows, "time"].to_numpy(float)
                ax.fill_between(t, band.loc[rows, "low"], band.loc[rows, "high"], color="#9ecae1", alpha=0.7,
                                lw=0, label="90% predictive")
                ax.plot(t, band.loc[rows, "median"], color="#08519c", lw=1)
                cens = obs.loc[rows, "censored"].to_numpy() != "none"
                ax.plot(t[~cens], obs.loc[rows, "value"].to_numpy(float)[~cens], "o", ms=3, color="black")
                ax.plot(t[cens], obs.loc[rows, "value"].to_numpy(float)[cens], "v", ms=4, mfc="none",
                        color="black")
                ax.set_yscale("log")
                ax.set_ylim(*limits[a])
                ax.yaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
                ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
                ax.yaxis.set_minor_formatter(NullFormatter())
                ax.tick_params(labelsize=7)
                if r == 0:
                    ax.set_title(a, fontsize=9)
                if c == 0:
                    ax.set_ylabel(s, fontsize=8)
                if r == len(subjects) - 1:
                    ax.set_xlabel("time (h)", fontsize=8)
        fig.suptitle(name, fontsize=11)
        figures.append({"name": name, "png": to_png(fig)})
    return figures, subjects


def _analyte_totals(comparison: Comparison, best: str, others: Sequence[str]) -> list[dict]:
    frame = comparison.pointwise()
    out = []
    for other in others:
        d = frame[best] - frame[other]
        for a in comparison.dataset.analytes:
            part = d[frame["analyte"] == a].to_numpy(float)
            out.append({"other": other, "analyte": a, "diff": float(part.sum()),
                        "se": float(math.sqrt(len(part) * np.var(part))) if len(part) else float("nan")})
    return out


def render_comparison(comparison: Comparison) -> str:
    """Render the comparison page (HTML, figures embedded) from the comparison.html template."""
    data = comparison.to_dict()
    best = comparison.ranking[0]
    others = comparison.ranking[1:1 + _MAX_DIFF_PANELS]
    ppc, subjects = _ppc_plots(comparison, comparison.ranking[:2])
    return _ENV.get_template("comparison.html").render(
        c=data, best=best, others=others,
        compare_png=_compare_plot(comparison),
        difference_png=_difference_plot(comparison, best, others),
        analyte_totals=_analyte_totals(comparison, best, others),
        ppc=ppc, ppc_subjects=subjects,
        version=data["version"], created=data["created"],
    )


def write_comparison(comparison: Comparison, out_dir: str | Path, *,
                     force: bool = False) -> tuple[Path, Path]:
    """Write ``comparison.json`` and ``comparison.html`` into ``out_dir`` (atomically).

    Raises
    ------
    FileExistsError
        One of them exists and ``force`` is false.
    """
    out = Path(out_dir)
    paths = (out / JSON_NAME, out / HTML_NAME)
    check_free(paths, force)
    out.mkdir(parents=True, exist_ok=True)
    json_text, html = comparison.to_json() + "\n", render_comparison(comparison)
    write_atomically(paths[0], lambda tmp: tmp.write_text(json_text, encoding="utf-8"), overwrite=True)
    write_atomically(paths[1], lambda tmp: tmp.write_text(html, encoding="utf-8"), overwrite=True)
    return paths
