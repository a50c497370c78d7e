"""Pages of the validation checks (``cytokine-balance validate sbc|coverage``), in the report's style.

Self-contained HTML (figures embedded as PNG) from the templates ``sbc.html`` and
``coverage.html``, which extend the fit report's ``base.html``.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from importlib.metadata import version

import numpy as np
import pandas as pd
from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape
from matplotlib.figure import Figure

from . import figures

PASS_COLOUR = "#2f855a"
FAIL_COLOUR = figures.CENSORED_COLOUR
PANELS_PER_ROW = 4


def _num(value, digits: int = 3) -> str:
    value = float(value)
    return "–" if not math.isfinite(value) else f"{value:.{digits}g}"


_ENV = Environment(loader=PackageLoader("inference.report", "templates"),
                   autoescape=select_autoescape(["html"]), undefined=StrictUndefined,
                   trim_blocks=True, lstrip_blocks=True)
_ENV.filters["num"] = _num
_ENV.filters["pct"] = lambda x: "–" if not math.isfinite(x) else f"{x:.0%}"


@figures.styled
def plot_rank_ecdf(tests: dict, n_replicates: int) -> Figure:
    """Plot the rank ECDF minus the uniform CDF per quantity, with the simultaneous 95% band.

    A panel whose ECDF leaves the band (red title) rejects uniformity.
    """
    names = list(tests)
    ncols = min(PANELS_PER_ROW, len(names))
    nrows = math.ceil(len(names) / ncols)
    fig, axes = figures._figure(figures.WIDTH, 2.3 * nrows + 0.4, nrows, ncols, sharex=True, sharey=True)
    for ax, name in zip(axes.flat, names, strict=False):
        test = tests[name]
        z = test.points
        ax.fill_between(z, test.lower - z, test.upper - z, step="post", color=figures.BAND_COLOUR, alpha=0.2,
                        linewidth=0)
        ax.step(z, test.ecdf - z, where="post", color=figures.DATA_COLOUR, linewidth=1.2)
        ax.axhline(0, color=figures.PRIOR_COLOUR, linewidth=0.8)
        ax.set_title(name, color=PASS_COLOUR if test.passed else FAIL_COLOUR)
    for ax in list(axes.flat)[len(names):]:
        ax.set_visible(False)
    for ax in axes[-1]:
        ax.set_xlabel("normalised rank")
    for ax in axes[:, 0]:
        ax.set_ylabel("ECDF − uniform")
    fig.suptitle(f"Rank ECDF differences, {n_replicates} replicates; "
                 "band: simultaneous 95% under uniform ranks", fontsize=11)
    fig.tight_layout()
    return fig


@figures.styled
def plot_coverage(table: pd.DataFrame) -> Figure:
    """Coverage of the central 50% and 90% intervals per quantity with 95% binomial intervals."""
    fig, axes = figures._figure(figures.WIDTH, 0.32 * len(table) + 1.6, 1, 2, sharey=True)
    y = np.arange(len(table))
    for ax, tag, nominal in ((axes[0, 0], "50", 0.5), (axes[0, 1], "90", 0.9)):
        ok = (table[f"coverage_{tag}_low"] <= nominal) & (nominal <= table[f"coverage_{tag}_high"])
        colours = np.where(ok, PASS_COLOUR, FAIL_COLOUR)
        ax.hlines(y, table[f"coverage_{tag}_low"], table[f"coverage_{tag}_high"], colors=colours, linewidth=2)
        ax.scatter(table[f"coverage_{tag}"], y, color=colours, zorder=3, s=18)
        ax.axvline(nominal, color=figures.PRIOR_COLOUR, linestyle="--", linewidth=1)
        ax.set_xlim(0, 1)
        ax.set_xlabel(f"coverage of the central {tag}% interval")
    axes[0, 0].set_yticks(y, table["quantity"])
    axes[0, 0].invert_yaxis()
    fig.suptitle(f"Coverage over {int(table['replicates'].max())} simulated subjects (dashed: nominal; "
                 "bars: 95% Clopper-Pearson)", fontsize=11)
    fig.tight_layout()
    return fig


def _context(study) -> dict:
    fits = study.fits
    return {
        "model": study.model.name, "design": study.design, "n": len(study.ranks), "failed": study.failed,
        "fixed": dict(study.options.fixed), "sampler": study.sampler, "seed": study.seed,
        "rank_draws": study.n_rank_draws, "workers": study.workers, "seconds": study.seconds,
        "seconds_per_fit": float(fits["seconds"].mean()),
        "divergent_fits": int((fits["divergences"] > 0).sum()),
        "rhat_fits": int((fits["max_rhat"] > 1.01).sum()), "redraws": int(fits["redraws"].sum()),
    }


def _page(template: str, study, **context) -> str:
    return _ENV.get_template(template).render(s=_context(study), version=version("cytokine-balance"),
                                              created=datetime.now(UTC).isoformat(timespec="seconds"),
                                              **context)


def render_sbc(study, table: pd.DataFrame, tests: dict) -> str:
    """Render the SBC page: settings, the table of rank tests and the ECDF-difference plots."""
    png = figures.to_png(plot_rank_ecdf(tests, len(study.ranks)))
    return _page("sbc.html", study, rows=table.to_dict("records"), ecdf_png=png,
                 n_failed=int((~table["passed"]).sum()))


def render_coverage(study, table: pd.DataFrame) -> str:
    """Render the coverage page: settings, the coverage table and plot."""
    png = figures.to_png(plot_coverage(table))
    return _page("coverage.html", study, rows=table.to_dict("records"), coverage_png=png,
                 n_failed=int((~table["passed"]).sum()))
